/* The OFDM layout the receiver blocks share, built in Python from testbed.phy.config.OfdmConfig
 * (testbed/gr/cpp_blocks.py): carriers, pilots, the channel-smoothing projector and the header's
 * interleavers and padding (numpy-generated tables, so both implementations use the same ones). */
#ifndef INCLUDED_TESTBEDPHY_PHY_LAYOUT_H
#define INCLUDED_TESTBEDPHY_PHY_LAYOUT_H

#include <gnuradio/gr_complex.h>
#include <gnuradio/testbedphy/api.h>
#include <complex>
#include <vector>

namespace gr {
namespace testbedphy {

struct TESTBEDPHY_API phy_layout {
    int fft_len = 0;
    int cp_len = 0;
    int pilot_spacing = 0;
    int header_repetition = 0;
    int header_ofdm_symbols = 0;       // n_hdr
    int max_payload_ofdm_symbols = 0;  // longer frames are refused (buffers)
    double subcarrier_spacing_hz = 0;
    std::vector<int> used_carriers;    // ascending, DC excluded (relative to DC)
    std::vector<int> pilot_carriers;
    std::vector<int> data_carriers;
    std::vector<gr_complex> pilot_symbols;
    std::vector<std::complex<double>> projector;  // [n_used x n_used] row-major, delays -cp/2..cp
    /* optional: an orthonormal basis Q of the projector's range, [n_used x rank] row-major
     * (projector = Q Q^H); the receiver then smooths with 2 n_used rank products, not n_used^2 */
    std::vector<std::complex<double>> projector_basis;
    int projector_rank = 0;
    int header_bits = 0;                // version 2
    std::vector<int> header_perm;       // interleaver of the coded header (version 2)
    std::vector<float> header_pad;      // BPSK padding after it, to whole OFDM symbols
    int header_bits_v1 = 0;
    std::vector<int> header_perm_v1;
    std::vector<float> header_pad_v1;

    int n_data() const { return (int)data_carriers.size(); }
    int n_used() const { return (int)used_carriers.size(); }
    int bin(int carrier) const { return carrier + fft_len / 2; }
    /* throws std::invalid_argument naming the field that is inconsistent */
    void validate() const;
};

} // namespace testbedphy
} // namespace gr

#endif
