/* TX back-off, clipping and inter-burst gaps (reference: testbed/gr/burst_shaper.py, same
 * behaviour, tags and "flush" messages). */
#ifndef INCLUDED_TESTBEDPHY_BURST_SHAPER_H
#define INCLUDED_TESTBEDPHY_BURST_SHAPER_H

#include <gnuradio/block.h>
#include <gnuradio/testbedphy/api.h>
#include <string>

namespace gr {
namespace testbedphy {

class TESTBEDPHY_API burst_shaper : virtual public gr::block
{
public:
    typedef std::shared_ptr<burst_shaper> sptr;
    static sptr make(float gain = 1.0, float clip = 1.0, int gap = 600, const std::string& len_tag = "packet_len");
    virtual uint64_t bursts() const = 0;
    virtual uint64_t clipped() const = 0;
    virtual uint64_t bad_flushes() const = 0;
};

} // namespace testbedphy
} // namespace gr

#endif
