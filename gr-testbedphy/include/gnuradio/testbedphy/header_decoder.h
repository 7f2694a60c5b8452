/* Header decoder (reference: testbed/gr/header_decoder.py, same ports and messages). Input "in":
 * PDU of the header OFDM symbols after the FFT and GNU Radio's channel estimator. Outputs
 * "header_data" (to the header/payload demux) and "verdict" (to the frame detector). */
#ifndef INCLUDED_TESTBEDPHY_HEADER_DECODER_H
#define INCLUDED_TESTBEDPHY_HEADER_DECODER_H

#include <gnuradio/block.h>
#include <gnuradio/testbedphy/api.h>
#include <gnuradio/testbedphy/phy_layout.h>

namespace gr {
namespace testbedphy {

class TESTBEDPHY_API header_decoder : virtual public gr::block
{
public:
    typedef std::shared_ptr<header_decoder> sptr;
    static sptr make(const phy_layout& layout);
    virtual uint64_t ok() const = 0;
    virtual uint64_t failed() const = 0;
    virtual uint64_t too_long() const = 0;
};

} // namespace testbedphy
} // namespace gr

#endif
