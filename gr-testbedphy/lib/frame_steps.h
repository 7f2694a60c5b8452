/* The receiver's per-frame steps after the FFT, shared by the message blocks (header_decoder,
 * payload_equalizer) and the stream demodulator (ofdm_demodulator): GNU Radio's preamble channel
 * estimate (ofdm_chanest_vcvc, two sync symbols), header decoding into the frame's metadata, and
 * payload equalisation into the published PDU. */
#ifndef INCLUDED_TESTBEDPHY_FRAME_STEPS_H
#define INCLUDED_TESTBEDPHY_FRAME_STEPS_H

#include "ofdm_math.h"
#include <pmt/pmt.h>
#include <cstdint>
#include <string>
#include <vector>

namespace gr {
namespace testbedphy {

/* ofdm_chanest_vcvc with two sync words (Schmidl & Cox's integer offset search, taps from the
 * second word, carrier-aligned), for rows in shifted order */
class preamble_estimator
{
public:
    preamble_estimator(const std::vector<gr_complex>& sync_word1, const std::vector<gr_complex>& sync_word2,
                       int max_carr_offset);
    int carrier_offset(const gr_complex* sym1, const gr_complex* sym2) const;
    void taps(const gr_complex* sym2, int carr_offset, std::vector<gr_complex>& out) const;

private:
    int d_n, d_neg = 0, d_pos = 0;
    std::vector<gr_complex> d_ref, d_corr;
};

struct header_outcome {
    bool ok = false;            // a valid header (the detector skips the frame)
    bool too_long = false;      // valid, but longer than this receiver buffers
    int frame_len = 0;          // payload OFDM symbols
    int64_t frame_samples = 0;  // sync + header + payload, with prefixes
    pmt::pmt_t meta = pmt::PMT_F;   // header_data for the demux (PMT_F unless ok and not too long)
    frame_header header;
    std::string why;
};
/* Y: n_rows header rows after the FFT, not yet carrier-aligned (aligned in place) */
header_outcome decode_header_rows(std::vector<gr_complex>& Y, int n_rows, int carr_offset, double sc_cfo,
                                  const gr_complex* taps, const phy_layout& L);
pmt::pmt_t verdict_message(bool ok, int64_t frame_samples);
/* the warning for a valid header whose frame is longer than this receiver buffers */
std::string too_long_message(const header_outcome& o, const phy_layout& L);

/* payload rows (not aligned; aligned in place) + the header's metadata -> the frame's PDU;
 * throws std::invalid_argument on inconsistent metadata */
pmt::pmt_t equalize_rows(const pmt::pmt_t& meta, std::vector<gr_complex>& Y, int n_rows, const phy_layout& L,
                         const std::vector<float>& signs, despreader& dsp);

} // namespace testbedphy
} // namespace gr

#endif
