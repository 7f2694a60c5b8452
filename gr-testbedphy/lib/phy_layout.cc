#include "fec.h"
#include <gnuradio/testbedphy/phy_layout.h>
#include <stdexcept>
#include <string>

namespace gr {
namespace testbedphy {

namespace {
void need(bool ok, const std::string& what)
{
    if (!ok)
        throw std::invalid_argument("phy_layout: " + what);
}
} // namespace

void phy_layout::validate() const
{
    need(fft_len >= 16 && (fft_len & (fft_len - 1)) == 0, "fft_len=" + std::to_string(fft_len) + " is not a power of two >= 16");
    need(cp_len > 0 && cp_len < fft_len, "cp_len=" + std::to_string(cp_len) + " not in 1..fft_len-1");
    need(!used_carriers.empty() && !data_carriers.empty() && !pilot_carriers.empty(), "empty carrier lists");
    for (const auto* v : { &used_carriers, &data_carriers, &pilot_carriers })
        for (int k : *v)
            need(k >= -fft_len / 2 && k < fft_len / 2, "carrier " + std::to_string(k) + " outside the FFT");
    need(pilot_symbols.size() == pilot_carriers.size(), "pilot_symbols and pilot_carriers differ in length");
    need(projector.size() == used_carriers.size() * used_carriers.size(),
         "projector has " + std::to_string(projector.size()) + " entries, expected n_used^2");
    need(projector_rank >= 0 && projector_basis.size() == used_carriers.size() * (size_t)projector_rank,
         "projector_basis has " + std::to_string(projector_basis.size()) + " entries, expected n_used x projector_rank=" +
             std::to_string(projector_rank));
    need(header_repetition >= 1 && header_ofdm_symbols >= 1, "header_repetition and header_ofdm_symbols must be >= 1");
    need((int)header_perm.size() == fec::coded_length(header_bits, header_repetition), "header_perm length");
    need((int)(header_perm.size() + header_pad.size()) == header_ofdm_symbols * n_data(), "header_pad length");
    if (header_bits_v1 > 0) {
        need((int)header_perm_v1.size() == fec::coded_length(header_bits_v1, header_repetition), "header_perm_v1 length");
        need((int)(header_perm_v1.size() + header_pad_v1.size()) == header_ofdm_symbols * n_data(), "header_pad_v1 length");
    }
    need(max_payload_ofdm_symbols >= 1, "max_payload_ofdm_symbols must be >= 1");
    need(pilot_spacing >= 1, "pilot_spacing must be >= 1");
}

} // namespace testbedphy
} // namespace gr
