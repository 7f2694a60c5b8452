/* Schmidl & Cox timing metric and correlation phase (what GNU Radio's ofdm_sync_sc_cfb computes
 * before its plateau detector), with running sums instead of two FIR filters.
 * Input: complex samples. Outputs: 0 the metric |P|^2 / R^2, 1 arg(P), where
 * P(n) = sum_{j<N/2} x(n-j) conj(x(n-j-N/2)) and R(n) = 0.5 * sum_{j<N} |x(n-j)|^2.
 *
 * angle_threshold > 0: arg(P) only where the metric is at least angle_threshold and for the
 * fft_len samples after each such sample, 0 elsewhere. A detector with that threshold reads the
 * phase inside above-threshold regions, whose gaps are shorter than fft_len, so it sees the same
 * phases; the arctangent of every other sample is skipped. 0: arg(P) everywhere. */
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
    static sptr make(int fft_len, float angle_threshold = 0.0f);
};

} // namespace testbedphy
} // namespace gr

#endif
