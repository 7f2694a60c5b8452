/* Receiver signal processing after the FFT (reference: testbed/phy/equalizer.py and
 * testbed/phy/framing.despread): channel smoothing, header decoding with the header as training,
 * payload equalisation. Frequency-domain symbols are [n_symbols][fft_len] rows in shifted order. */
#ifndef INCLUDED_TESTBEDPHY_OFDM_MATH_H
#define INCLUDED_TESTBEDPHY_OFDM_MATH_H

#include "frame_header.h"
#include <gnuradio/testbedphy/phy_layout.h>
#include <complex>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace gr {
namespace testbedphy {

using cd = std::complex<double>;

struct channel_state {
    std::vector<gr_complex> taps;  // [fft_len]
    double noise_var = 0, snr_db = 0, snr_eff_db = 0, phase_end = 0, phase_rate = 0;
};

/* carrier k received on bin k + offset -> undone, with the prefix's per-symbol phase */
void align(std::vector<gr_complex>& Y, int n_syms, int carr_offset, const phy_layout& L);
int channel_delay(const std::vector<cd>& H_used, const phy_layout& L);
std::vector<cd> smooth_channel(const std::vector<cd>& H_used, const phy_layout& L);
double polyfit_slope_unwrapped(const std::vector<double>& phase);

struct header_result {
    std::optional<frame_header> header;
    channel_state state;
    std::string why;
};
/* Yh: n_syms x fft_len (carrier-aligned); H0: preamble estimate [fft_len] */
header_result estimate_from_header(const gr_complex* Yh, int n_syms, const gr_complex* H0, const phy_layout& L);

struct payload_result {
    std::vector<gr_complex> symbols;       // n_payload
    std::vector<gr_complex> side_symbols;  // n_side * n_data
    std::map<std::string, double> diag;
};
class despreader;
payload_result equalize_payload(const gr_complex* Yp, int n_rows, const channel_state& st, int n_payload,
                                const phy_layout& L, int n_side, const std::vector<float>& spread_signs,
                                despreader& dsp, int phase_window = 5);

/* atan2 of n complex values (float, within 5e-7 rad of libm's; vectorised) */
void fast_atan2(const gr_complex* p, float* out, int n);

/* inverse of the unitary DFT spreading of each OFDM symbol's n_data symbols */
class despreader
{
public:
    explicit despreader(int n_data);
    ~despreader();
    despreader(const despreader&) = delete;
    despreader& operator=(const despreader&) = delete;
    void run(const gr_complex* in, gr_complex* out, const std::vector<float>& signs);

private:
    int d_n;
    void* d_fft;
};

} // namespace testbedphy
} // namespace gr

#endif
