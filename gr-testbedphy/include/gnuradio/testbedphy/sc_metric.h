/* Schmidl & Cox timing metric and correlation phase (what GNU Radio's ofdm_sync_sc_cfb computes
 * before its plateau detector), with running sums instead of two FIR filters.
 * Input: complex samples. Outputs: 0 the metric |P|^2 / R^2, 1 arg(P), where
 * P(n) = sum_{j<N/2} x(n-j) conj(x(n-j-N/2)) and R(n) = 0.5 * sum_{j<N} |x(n-j)|^2. */
#ifndef INCLUDED_TESTBEDPHY_SC_METRIC_H
#define INCLUDED_TESTBEDPHY_SC_METRIC_H

#include <gnuradio/sync_block.h>
#include <gnuradio/testbedphy/api.h>

namespace gr {
namespace testbedphy {

class TESTBEDPHY_API sc_metric : virtual public gr::sync_block
{
public:
    typedef std::shared_ptr<sc_metric> sptr;
    static sptr make(int fft_len);
};

} // namespace testbedphy
} // namespace gr

#endif
