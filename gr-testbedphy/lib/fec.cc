#include "fec.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace gr {
namespace testbedphy {
namespace fec {

namespace {
const int POLYS[2] = { 0171, 0133 };

struct trellis {
    int next[N_STATES][2];
    uint8_t out[N_STATES][2][2];
    int prev_s[N_STATES][2];
    int prev_b[N_STATES][2];
    trellis()
    {
        int fill[N_STATES] = { 0 };
        for (int s = 0; s < N_STATES; s++)
            for (int b = 0; b < 2; b++) {
                int reg = (b << (K - 1)) | s;
                for (int j = 0; j < 2; j++)
                    out[s][b][j] = __builtin_parity(reg & POLYS[j]);
                next[s][b] = reg >> 1;
            }
        for (int s = 0; s < N_STATES; s++)
            for (int b = 0; b < 2; b++) {
                int n = next[s][b];
                prev_s[n][fill[n]] = s;
                prev_b[n][fill[n]] = b;
                fill[n]++;
            }
    }
};
const trellis& T()
{
    static const trellis t;
    return t;
}
uint32_t crc_table[256];
bool crc_init()
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
    return true;
}
} // namespace

uint32_t crc32(const uint8_t* data, size_t n)
{
    static const bool ready = crc_init();
    (void)ready;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

std::vector<uint8_t> conv_encode(const std::vector<uint8_t>& bits)
{
    const trellis& t = T();
    std::vector<uint8_t> out;
    out.reserve(2 * (bits.size() + K - 1));
    int s = 0;
    for (size_t i = 0; i < bits.size() + K - 1; i++) {
        int b = i < bits.size() ? (bits[i] & 1) : 0;
        out.push_back(t.out[s][b][0]);
        out.push_back(t.out[s][b][1]);
        s = t.next[s][b];
    }
    return out;
}

std::vector<uint8_t> viterbi_decode(const double* soft, int n_bits)
{
    const trellis& t = T();
    // per state and branch: the previous state and the 2-bit code word into it (a flat table, so
    // that the add-compare-select loop reads contiguous memory)
    struct branch {
        int prev[2];
        int code[2];
    };
    static const std::vector<branch> B = [&t] {
        std::vector<branch> b(N_STATES);
        for (int n = 0; n < N_STATES; n++)
            for (int br = 0; br < 2; br++) {
                const uint8_t* o = t.out[t.prev_s[n][br]][t.prev_b[n][br]];
                b[n].prev[br] = t.prev_s[n][br];
                b[n].code[br] = 2 * o[0] + o[1];
            }
        return b;
    }();
    const int steps = n_bits + K - 1;
    const double NEG = -std::numeric_limits<double>::infinity();
    double metric[N_STATES], next[N_STATES];
    std::fill(metric, metric + N_STATES, NEG);
    metric[0] = 0.0;
    std::vector<uint8_t> choice((size_t)steps * N_STATES);
    for (int k = 0; k < steps; k++) {
        const double s0 = soft[2 * k], s1 = soft[2 * k + 1];
        // branch metric of code word (o0, o1): (1 - 2 o0) s0 + (1 - 2 o1) s1
        const double g[4] = { s0 + s1, s0 - s1, -s0 + s1, -s0 - s1 };
        uint8_t* ch = &choice[(size_t)k * N_STATES];
        for (int n = 0; n < N_STATES; n++) {
            const branch& b = B[n];
            const double b0 = metric[b.prev[0]] + g[b.code[0]], b1 = metric[b.prev[1]] + g[b.code[1]];
            const bool c = b1 > b0;
            ch[n] = c;
            next[n] = c ? b1 : b0;
        }
        std::copy(next, next + N_STATES, metric);
    }
    std::vector<uint8_t> bits(steps);
    int s = 0;
    for (int k = steps - 1; k >= 0; k--) {
        int c = choice[(size_t)k * N_STATES + s];
        bits[k] = t.prev_b[s][c];
        s = t.prev_s[s][c];
    }
    bits.resize(n_bits);
    return bits;
}

int coded_length(int n_bits, int repetition) { return 2 * (n_bits + K - 1) * repetition; }

std::vector<uint8_t> decode_soft(const double* soft, int n_bits, int repetition, const std::vector<int>& perm)
{
    const int n_coded = 2 * (n_bits + K - 1);
    const int n = n_coded * repetition;
    if ((int)perm.size() != n)
        throw std::invalid_argument("interleaver of " + std::to_string(perm.size()) + " positions, expected " +
                                    std::to_string(n));
    std::vector<double> deint(n), combined(n_coded, 0.0);
    for (int i = 0; i < n; i++)
        deint[perm[i]] = soft[i];
    for (int r = 0; r < repetition; r++)
        for (int i = 0; i < n_coded; i++)
            combined[i] += deint[r * n_coded + i];
    return viterbi_decode(combined.data(), n_bits);
}

std::vector<float> encode_bits(const std::vector<uint8_t>& bits, int repetition, const std::vector<int>& perm)
{
    std::vector<uint8_t> coded = conv_encode(bits);
    const size_t n = coded.size() * repetition;
    if (perm.size() != n)
        throw std::invalid_argument("interleaver of " + std::to_string(perm.size()) + " positions, expected " +
                                    std::to_string(n));
    std::vector<float> out(n);
    for (size_t i = 0; i < n; i++)
        out[i] = 1.0f - 2.0f * coded[perm[i] % coded.size()];
    return out;
}

std::vector<uint8_t> bytes_to_bits(const std::vector<uint8_t>& bytes)
{
    std::vector<uint8_t> bits;
    bits.reserve(8 * bytes.size());
    for (uint8_t b : bytes)
        for (int k = 7; k >= 0; k--)
            bits.push_back((b >> k) & 1);
    return bits;
}

std::vector<uint8_t> bits_to_bytes(const std::vector<uint8_t>& bits)
{
    std::vector<uint8_t> out((bits.size() + 7) / 8, 0);
    for (size_t i = 0; i < bits.size(); i++)
        if (bits[i] & 1)
            out[i / 8] |= 0x80 >> (i % 8);
    return out;
}

} // namespace fec
} // namespace testbedphy
} // namespace gr
