/* Payload equaliser (reference: testbed/gr/payload_equalizer.py). Input "in": PDU of one frame's
 * payload OFDM symbols after the FFT, metadata from the header decoder. Output "frames": the
 * equalised analog symbols and the frame's metadata; a variable-rate frame's side-information
 * symbols go out as "side_symbols" (decoded by testbed.gr.side_info_decoder). */
#ifndef INCLUDED_TESTBEDPHY_PAYLOAD_EQUALIZER_H
#define INCLUDED_TESTBEDPHY_PAYLOAD_EQUALIZER_H

#include <gnuradio/block.h>
#include <gnuradio/testbedphy/api.h>
#include <gnuradio/testbedphy/phy_layout.h>

namespace gr {
namespace testbedphy {

class TESTBEDPHY_API payload_equalizer : virtual public gr::block
{
public:
    typedef std::shared_ptr<payload_equalizer> sptr;
    /* spread_signs: the random signs of the payload's DFT spreading (n_data values, +-1) */
    static sptr make(const phy_layout& layout, const std::vector<float>& spread_signs);
    virtual uint64_t frames() const = 0;
    virtual uint64_t errors() const = 0;
};

} // namespace testbedphy
} // namespace gr

#endif
