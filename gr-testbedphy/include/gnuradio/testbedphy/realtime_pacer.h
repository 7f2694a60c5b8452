/* A radio's sample clock for loopback runs (`testbed loopback --realtime`).
 *
 * Input: the transmitter's bursts (tx_sob / tx_eob / tx_frame tags, see ofdm_modulator.h).
 * Output: exactly `samp_rate` samples per second of wall time, as the air between a radio's DAC
 * and ADC carries them: the transmitter's samples when it has them, zeros when it has none
 * (between bursts: idle air; inside a burst: a TX underflow), and when the output buffer (the
 * receiving radio's buffer) has no room for what is due, the newest samples are dropped, as a
 * radio overflows. Every drop and underflow is counted and recorded with the frames it hit. */
#ifndef INCLUDED_TESTBEDPHY_REALTIME_PACER_H
#define INCLUDED_TESTBEDPHY_REALTIME_PACER_H

#include <gnuradio/block.h>
#include <gnuradio/testbedphy/api.h>
#include <utility>
#include <vector>

namespace gr {
namespace testbedphy {

struct TESTBEDPHY_API air_event {
    bool overflow;               // true: samples dropped (RX overflow); false: TX underflow (zeros)
    uint64_t air_offset;         // air sample index where it starts
    uint64_t samples;
    double time_s;               // wall time since the first sample
    std::vector<std::pair<int64_t, int64_t>> frames;   // (image_id, frame_index) it hit
};

class TESTBEDPHY_API realtime_pacer : virtual public gr::block
{
public:
    typedef std::shared_ptr<realtime_pacer> sptr;
    /* chunk: samples per call at least (finer pacing costs more calls) */
    static sptr make(double samp_rate, int chunk = 1024, int max_events = 10000);
    virtual uint64_t air_samples() const = 0;       // due so far: sent + dropped
    virtual uint64_t dropped() const = 0;           // samples lost because the receiver was full
    virtual uint64_t dropped_tx() const = 0;        // of them, transmitter samples (not idle air)
    virtual uint64_t underflow() const = 0;         // zeros sent inside a burst
    virtual uint64_t idle() const = 0;              // zeros sent between bursts
    virtual uint64_t overflow_events() const = 0;
    virtual uint64_t underflow_events() const = 0;
    virtual std::vector<air_event> events() const = 0;   // the first max_events
};

} // namespace testbedphy
} // namespace gr

#endif
