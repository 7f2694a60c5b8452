/* The receiver after the frame detector, in one block: it does for each detected frame what the
 * reference chain (testbed/gr/ofdm_rx.py with the Python blocks) does with delay ->
 * frequency_modulator + multiply -> header_payload_demux -> fft_vcc -> ofdm_chanest_vcvc ->
 * header_decoder, and fft_vcc -> payload_equalizer, without streaming every sample through them.
 *
 * Inputs: the received samples, the detector's CFO output (S&C phase, held per frame) and its
 * trigger output (1 at a frame's trigger, one OFDM symbol after the frame start). Message
 * outputs: "frames" (as payload_equalizer's) and "verdict" (to the detector's "verdict"). */
#ifndef INCLUDED_TESTBEDPHY_OFDM_DEMODULATOR_H
#define INCLUDED_TESTBEDPHY_OFDM_DEMODULATOR_H

#include <gnuradio/sync_block.h>
#include <gnuradio/testbedphy/api.h>
#include <gnuradio/testbedphy/phy_layout.h>

namespace gr {
namespace testbedphy {

class TESTBEDPHY_API ofdm_demodulator : virtual public gr::sync_block
{
public:
    typedef std::shared_ptr<ofdm_demodulator> sptr;
    /* sync words in shifted order (fft_len bins); max_carr_offset as ofdm_chanest_vcvc's;
     * spread_signs as payload_equalizer's */
    static sptr make(const phy_layout& layout, const std::vector<gr_complex>& sync_word1,
                     const std::vector<gr_complex>& sync_word2, int max_carr_offset,
                     const std::vector<float>& spread_signs);
    virtual uint64_t headers_ok() const = 0;
    virtual uint64_t headers_failed() const = 0;
    virtual uint64_t headers_too_long() const = 0;
    virtual uint64_t frames() const = 0;
    virtual uint64_t payload_errors() const = 0;
    /* triggers that came while a frame was still being collected (ignored, as the demux does) */
    virtual uint64_t triggers_ignored() const = 0;
};

} // namespace testbedphy
} // namespace gr

#endif
