#include "frame_header.h"
#include "fec.h"

#include <stdexcept>

namespace gr {
namespace testbedphy {

namespace {
void put(std::vector<uint8_t>& v, uint64_t x, int bytes)
{
    for (int k = bytes - 1; k >= 0; k--)
        v.push_back((x >> (8 * k)) & 0xFF);
}
uint64_t get(const std::vector<uint8_t>& v, size_t& p, int bytes)
{
    uint64_t x = 0;
    for (int k = 0; k < bytes; k++)
        x = (x << 8) | v[p++];
    return x;
}
constexpr size_t BODY_V2 = 25, BODY_V1 = 24;
} // namespace

std::vector<uint8_t> frame_header::to_bytes() const
{
    std::vector<uint8_t> v;
    const bool v1 = version == 1;
    put(v, v1 ? 1 : 2, 1);
    put(v, image_id, 2);
    put(v, frame_index, 2);
    put(v, frame_count, 2);
    put(v, height, 2);
    put(v, width, 2);
    put(v, symbols_per_location, 1);
    put(v, n_payload, 2);
    put(v, payload_offset, 4);
    put(v, model_hash, 4);
    put(v, side_info_len, 2);
    if (!v1)
        put(v, mode, 1);
    put(v, fec::crc32(v.data(), v.size()), 4);
    return v;
}

std::optional<frame_header> frame_header::from_bytes(const std::vector<uint8_t>& d, std::string* why)
{
    int version;
    if (d.size() == BODY_V2 + 4)
        version = 2;
    else if (d.size() == BODY_V1 + 4)
        version = 1;
    else {
        if (why)
            *why = "header has " + std::to_string(d.size()) + " bytes";
        return std::nullopt;
    }
    size_t p = d.size() - 4;
    uint32_t crc = (uint32_t)get(d, p, 4);
    if (fec::crc32(d.data(), d.size() - 4) != crc) {
        if (why)
            *why = "header CRC mismatch";
        return std::nullopt;
    }
    p = 0;
    frame_header h;
    h.version = (int)get(d, p, 1);
    if (h.version != version) {
        if (why)
            *why = "header version " + std::to_string(h.version) + " in a " + std::to_string(d.size()) +
                   "-byte header";
        return std::nullopt;
    }
    h.image_id = (int)get(d, p, 2);
    h.frame_index = (int)get(d, p, 2);
    h.frame_count = (int)get(d, p, 2);
    h.height = (int)get(d, p, 2);
    h.width = (int)get(d, p, 2);
    h.symbols_per_location = (int)get(d, p, 1);
    h.n_payload = (int)get(d, p, 2);
    h.payload_offset = (uint32_t)get(d, p, 4);
    h.model_hash = (uint32_t)get(d, p, 4);
    h.side_info_len = (int)get(d, p, 2);
    h.mode = version >= 2 ? (int)get(d, p, 1) : 0;
    if (h.frame_count == 0 || h.frame_index >= h.frame_count || h.height == 0 || h.width == 0 ||
        (h.symbols_per_location == 0) == (h.side_info_len == 0) || h.n_payload == 0) {
        if (why)
            *why = "inconsistent header";
        return std::nullopt;
    }
    return h;
}

std::optional<frame_header> demodulate_header(const double* soft, int n_soft, const phy_layout& L, std::string* why)
{
    const int rep = L.header_repetition;
    const int n2 = fec::coded_length(L.header_bits, rep);
    if (n_soft < n2) {
        if (why)
            *why = std::to_string(n_soft) + " header symbols received, expected at least " + std::to_string(n2);
        return std::nullopt;
    }
    auto h = frame_header::from_bytes(
        fec::bits_to_bytes(fec::decode_soft(soft, L.header_bits, rep, L.header_perm)), why);
    if (h || L.header_bits_v1 <= 0)
        return h;
    std::string why1;
    auto h1 = frame_header::from_bytes(
        fec::bits_to_bytes(fec::decode_soft(soft, L.header_bits_v1, rep, L.header_perm_v1)), &why1);
    return h1;   // on failure, `why` keeps the version-2 reason (as the Python reference raises)
}

std::vector<float> modulate_header(const frame_header& h, const phy_layout& L)
{
    const bool v1 = h.version == 1;
    std::vector<float> out =
        fec::encode_bits(fec::bytes_to_bits(h.to_bytes()), L.header_repetition, v1 ? L.header_perm_v1 : L.header_perm);
    const std::vector<float>& pad = v1 ? L.header_pad_v1 : L.header_pad;
    out.insert(out.end(), pad.begin(), pad.end());
    if ((int)out.size() != L.header_ofdm_symbols * L.n_data())
        throw std::invalid_argument("header modulation fills " + std::to_string(out.size()) + " symbols, expected " +
                                    std::to_string(L.header_ofdm_symbols * L.n_data()));
    return out;
}

int side_info_ofdm_symbols(int side_info_len, int n_data)
{
    if (!side_info_len)
        return 0;
    const int n = fec::coded_length(8 * (side_info_len + 4), 1);
    return (n + n_data - 1) / n_data;
}

} // namespace testbedphy
} // namespace gr
