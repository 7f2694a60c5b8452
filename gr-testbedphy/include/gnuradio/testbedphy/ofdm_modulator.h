/* The whole OFDM transmitter in one block: frame PDUs in, bursts of samples out.
 *
 * Reference (same samples and tags): testbed/gr/ofdm_tx.py with the in-tree chain
 * pdu_to_tagged_stream -> ofdm_carrier_allocator_cvc (sync words, pilots, shifted output) ->
 * fft_vcc (inverse, shift) -> ofdm_cyclic_prefixer -> burst_shaper. One block instead of five
 * because the tagged-stream chain is latency-bound: each frame waits on the scheduler at every
 * hop (about 37 ms per frame with idle cores), which caps the TX far below the radio's rate.
 *
 * Message input "frames": PDUs of complex symbols, whole OFDM symbols of data carriers (a
 * shorter last symbol is zero-padded, as the allocator does). "flush": a dict {"after": N,
 * "samples": M} asks for M more zeros once N bursts have started (after an image's last frame,
 * to push it through the receiver's look-ahead); they extend that burst's gap, or form a burst
 * of their own when the transmitter is idle.
 * Output: each frame as sync word 1, sync word 2 and its data symbols (pilots inserted), inverse
 * FFT, cyclic prefix, scaled by `gain` and clipped to `clip`, then `gap` zeros; tx_sob on a
 * burst's first sample and tx_eob on the last of its trailing zeros; tx_frame on the first
 * sample carries the frame PDU's metadata (image_id, frame_index, ...) when it has any. */
#ifndef INCLUDED_TESTBEDPHY_OFDM_MODULATOR_H
#define INCLUDED_TESTBEDPHY_OFDM_MODULATOR_H

#include <gnuradio/block.h>
#include <gnuradio/gr_complex.h>
#include <gnuradio/testbedphy/api.h>
#include <vector>

namespace gr {
namespace testbedphy {

class TESTBEDPHY_API ofdm_modulator : virtual public gr::block
{
public:
    typedef std::shared_ptr<ofdm_modulator> sptr;
    /* carriers are relative to DC; sync words are fft_len vectors in shifted order (index
     * fft_len/2 + k holds carrier k); frames longer than max_symbols data symbols are dropped */
    static sptr make(int fft_len, int cp_len, const std::vector<int>& data_carriers,
                     const std::vector<int>& pilot_carriers, const std::vector<gr_complex>& pilot_symbols,
                     const std::vector<gr_complex>& sync_word1, const std::vector<gr_complex>& sync_word2,
                     float gain, float clip, int gap, int max_symbols);
    virtual uint64_t bursts() const = 0;       // bursts (frames) started
    virtual uint64_t clipped() const = 0;      // samples clipped
    virtual uint64_t bad_frames() const = 0;   // frame messages dropped (not a complex PDU, too long)
    virtual uint64_t bad_flushes() const = 0;
    virtual uint64_t queued() const = 0;       // frames waiting to be sent
};

} // namespace testbedphy
} // namespace gr

#endif
