#include <gnuradio/io_signature.h>
#include <gnuradio/testbedphy/rx_monitor.h>
#include <time.h>
#include <cmath>
#include <mutex>
#include <stdexcept>

namespace gr {
namespace testbedphy {

static double monotonic_s()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

class rx_monitor_impl : public rx_monitor
{
    const double d_rate;
    const uint64_t d_slack;
    const size_t d_max_events;
    const pmt::pmt_t d_rx_time = pmt::mp("rx_time");
    bool d_have_ref = false;
    uint64_t d_ref_offset = 0;
    double d_ref_time = 0;       // radio time at d_ref_offset, seconds
    double d_t_first = -1;
    uint64_t d_base = 0;         // samples received when the clock started
    uint64_t d_samples = 0, d_lost_exact = 0, d_lost_estimate = 0, d_time_tags = 0;
    std::vector<tag_t> d_tags;
    std::vector<rx_gap> d_gaps;
    mutable std::mutex d_mutex;

    void add_gap(uint64_t offset, uint64_t n, bool exact)
    {
        std::lock_guard<std::mutex> lock(d_mutex);
        (exact ? d_lost_exact : d_lost_estimate) += n;
        if (d_gaps.size() < d_max_events)
            d_gaps.push_back({ offset, n, monotonic_s(), exact });
    }

public:
    rx_monitor_impl(double samp_rate, uint64_t slack, int max_events)
        : gr::sync_block("rx_monitor", gr::io_signature::make(1, 1, sizeof(gr_complex)),
                         gr::io_signature::make(0, 0, 0)),
          d_rate(samp_rate), d_slack(slack), d_max_events(max_events)
    {
        if (!(samp_rate > 0) || !std::isfinite(samp_rate) || max_events < 0)
            throw std::invalid_argument("rx_monitor: need samp_rate > 0 and max_events >= 0");
    }

    uint64_t samples() const override { return d_samples; }
    uint64_t lost_exact() const override { return d_lost_exact; }
    uint64_t lost_estimate() const override { return d_lost_estimate; }
    uint64_t time_tags() const override { return d_time_tags; }
    std::vector<rx_gap> gaps() const override
    {
        std::lock_guard<std::mutex> lock(d_mutex);
        return d_gaps;
    }

    int work(int noutput_items, gr_vector_const_void_star&, gr_vector_void_star&) override
    {
        const uint64_t r0 = nitems_read(0);
        get_tags_in_range(d_tags, 0, r0, r0 + noutput_items, d_rx_time);
        for (const auto& t : d_tags) {
            if (!pmt::is_tuple(t.value) || pmt::length(t.value) != 2)
                continue;
            const double T = (double)pmt::to_uint64(pmt::tuple_ref(t.value, 0)) +
                             pmt::to_double(pmt::tuple_ref(t.value, 1));
            d_time_tags++;
            if (d_have_ref) {
                const double missing = (T - d_ref_time) * d_rate - (double)(t.offset - d_ref_offset);
                if (missing >= 0.5)
                    add_gap(t.offset, (uint64_t)std::llround(missing), true);
            }
            d_have_ref = true;
            d_ref_offset = t.offset;
            d_ref_time = T;
        }
        d_samples = r0 + noutput_items;
        const double now = monotonic_s();
        if (d_t_first < 0) {   // the clock starts with the first samples (the radio's start-up excluded)
            d_t_first = now;
            d_base = d_samples;
        } else if (d_time_tags == 0) {
            const double expected = (now - d_t_first) * d_rate;
            const double got = (double)(d_samples - d_base);
            const double short_by = expected - got - (double)d_slack - 50e-6 * expected;
            if (short_by > (double)d_lost_estimate + 0.5)
                add_gap(d_samples, (uint64_t)std::llround(short_by - (double)d_lost_estimate), false);
        }
        return noutput_items;
    }
};

rx_monitor::sptr rx_monitor::make(double samp_rate, uint64_t slack, int max_events)
{
    return gnuradio::make_block_sptr<rx_monitor_impl>(samp_rate, slack, max_events);
}

} // namespace testbedphy
} // namespace gr
