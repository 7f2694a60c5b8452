/* Counts the samples a radio source lost (connected beside the receiver, to the radio source).
 *
 * Two ways, as the radio allows:
 *  - rx_time tags (gr-uhd: on the first sample and after every overflow): a tag whose time is
 *    later than the samples counted since the previous one says exactly how many were lost;
 *  - otherwise (gr-iio exposes no overflow count) the samples received against the sample rate
 *    over wall time: a shortfall beyond `slack` samples (the radio's and the kernel's buffers,
 *    plus 50 ppm of clock error) cannot be buffering and is counted as lost, an estimate.
 * Each loss is recorded with its sample offset and the monotonic time (Python's time.monotonic)
 * at which it was seen, so that a run can mark the images on air at that moment. */
#ifndef INCLUDED_TESTBEDPHY_RX_MONITOR_H
#define INCLUDED_TESTBEDPHY_RX_MONITOR_H

#include <gnuradio/sync_block.h>
#include <gnuradio/testbedphy/api.h>
#include <vector>

namespace gr {
namespace testbedphy {

struct TESTBEDPHY_API rx_gap {
    uint64_t offset;      // sample offset (received samples) where it was seen
    uint64_t samples;     // samples lost
    double monotonic_s;   // when it was seen (CLOCK_MONOTONIC seconds)
    bool exact;           // true: from rx_time tags; false: wall-clock estimate
};

class TESTBEDPHY_API rx_monitor : virtual public gr::sync_block
{
public:
    typedef std::shared_ptr<rx_monitor> sptr;
    static sptr make(double samp_rate, uint64_t slack, int max_events = 10000);
    virtual uint64_t samples() const = 0;          // received
    virtual uint64_t lost_exact() const = 0;       // from rx_time tags
    virtual uint64_t lost_estimate() const = 0;    // wall-clock shortfall beyond the slack
    virtual uint64_t time_tags() const = 0;        // rx_time tags seen
    virtual std::vector<rx_gap> gaps() const = 0;
};

} // namespace testbedphy
} // namespace gr

#endif
