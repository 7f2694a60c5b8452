/* Frame detection and gating on the Schmidl & Cox metric (reference: testbed/phy/syncgate.py and
 * testbed/gr/sc_detector.py, same ports). Inputs: 0 metric, 1 phase, 2 raw samples. Outputs: 0 the
 * CFO estimate held per frame (an sc_cfo tag on each trigger, in sub-carrier spacings), 1 the frame
 * trigger. Message input "verdict" from the header decoder; a timer releases the gate when no
 * verdict arrives. */
#ifndef INCLUDED_TESTBEDPHY_SC_DETECTOR_H
#define INCLUDED_TESTBEDPHY_SC_DETECTOR_H

#include <gnuradio/block.h>
#include <gnuradio/testbedphy/api.h>
#include <gnuradio/testbedphy/phy_layout.h>

namespace gr {
namespace testbedphy {

class TESTBEDPHY_API sc_detector : virtual public gr::block
{
public:
    typedef std::shared_ptr<sc_detector> sptr;
    /* preamble: time-domain sync symbols with prefixes (fine timing reference); carrier_shifts:
     * the even integer CFOs searched; the rest as in ScDetector */
    static sptr make(float threshold, int min_len, int gap, int max_region, int header_samples, int margin,
                     const std::vector<gr_complex>& preamble, int fft_len, int search,
                     const std::vector<int>& carrier_shifts, int coarse_offset, int start_offset,
                     double timeout_s = 2.0);
    virtual uint64_t accepted() const = 0;
    virtual uint64_t rejected() const = 0;
    virtual uint64_t suppressed() const = 0;
    virtual uint64_t timeouts() const = 0;
    virtual int lookahead() const = 0;
};

} // namespace testbedphy
} // namespace gr

#endif
