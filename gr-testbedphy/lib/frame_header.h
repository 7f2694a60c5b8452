/* The frame header's fields, byte layout and BPSK modulation (reference: testbed/phy/header.py). */
#ifndef INCLUDED_TESTBEDPHY_FRAME_HEADER_H
#define INCLUDED_TESTBEDPHY_FRAME_HEADER_H

#include <gnuradio/testbedphy/phy_layout.h>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gr {
namespace testbedphy {

struct frame_header {
    int version = 2;
    int image_id = 0, frame_index = 0, frame_count = 0, height = 0, width = 0;
    int symbols_per_location = 0, n_payload = 0;
    uint32_t payload_offset = 0, model_hash = 0;
    int side_info_len = 0, mode = 0;

    std::vector<uint8_t> to_bytes() const;
    /* nullopt (and why) unless the CRC passes and the fields are consistent */
    static std::optional<frame_header> from_bytes(const std::vector<uint8_t>& data, std::string* why);
};

/* soft header values (real, maximum-ratio weighted) -> header, trying version 2 then 1 */
std::optional<frame_header> demodulate_header(const double* soft, int n_soft, const phy_layout& L, std::string* why);
/* header -> BPSK values filling whole OFDM symbols (n_hdr * n_data) */
std::vector<float> modulate_header(const frame_header& h, const phy_layout& L);
/* OFDM symbols of the side-information block (reference: testbed/phy/sideinfo.py) */
int side_info_ofdm_symbols(int side_info_len, int n_data);

} // namespace testbedphy
} // namespace gr

#endif
