#include <gnuradio/io_signature.h>
#include <gnuradio/testbedphy/realtime_pacer.h>
#include <boost/thread/thread.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>
#include <set>
#include <stdexcept>

namespace gr {
namespace testbedphy {

class realtime_pacer_impl : public realtime_pacer
{
    using clock = std::chrono::steady_clock;
    const double d_rate;
    const int d_chunk;
    const size_t d_max_events;
    const pmt::pmt_t d_sob = pmt::mp("tx_sob"), d_eob = pmt::mp("tx_eob"), d_frame = pmt::mp("tx_frame");
    const pmt::pmt_t d_image_id = pmt::mp("image_id"), d_frame_index = pmt::mp("frame_index");
    bool d_started = false;
    clock::time_point d_t0;
    uint64_t d_air = 0, d_dropped = 0, d_dropped_tx = 0, d_underflow = 0, d_idle = 0;
    uint64_t d_n_over = 0, d_n_under = 0;
    bool d_in_burst = false;
    std::pair<int64_t, int64_t> d_current{ -1, -1 };
    std::vector<tag_t> d_tags;
    std::vector<air_event> d_events;
    mutable std::mutex d_mutex;   // the events are read from Python while the flowgraph runs

    double now_s() const { return std::chrono::duration<double>(clock::now() - d_t0).count(); }

    /* walk n input samples from relative index `from`: follow the burst tags; the frames that
     * were on air in them go to `hit` (when given) */
    void walk(int from, int n, std::set<std::pair<int64_t, int64_t>>* hit)
    {
        const uint64_t r0 = nitems_read(0) + from;
        get_tags_in_range(d_tags, 0, r0, r0 + n);
        // at one offset: a burst starts, names its frame, ends
        auto rank = [this](const tag_t& t) { return pmt::eqv(t.key, d_sob) ? 0 : pmt::eqv(t.key, d_frame) ? 1 : 2; };
        std::stable_sort(d_tags.begin(), d_tags.end(), [&](const tag_t& x, const tag_t& y) {
            return x.offset != y.offset ? x.offset < y.offset : rank(x) < rank(y);
        });
        if (hit && d_in_burst && n > 0 && (d_tags.empty() || d_tags.front().offset > r0))
            hit->insert(d_current);
        for (size_t k = 0; k < d_tags.size(); k++) {
            const tag_t& t = d_tags[k];
            if (pmt::eqv(t.key, d_sob)) {
                d_in_burst = true;
                d_current = { -1, -1 };
            } else if (pmt::eqv(t.key, d_frame) && pmt::is_dict(t.value)) {
                d_current = { pmt::to_long(pmt::dict_ref(t.value, d_image_id, pmt::from_long(-1))),
                              pmt::to_long(pmt::dict_ref(t.value, d_frame_index, pmt::from_long(-1))) };
            }
            // once all tags at this offset are read: its sample belongs to the current frame
            const bool last_here = k + 1 == d_tags.size() || d_tags[k + 1].offset != t.offset;
            if (hit && d_in_burst && last_here)
                hit->insert(d_current);
            if (pmt::eqv(t.key, d_eob))
                d_in_burst = false;
        }
    }

    void record(bool overflow, uint64_t at, uint64_t n, const std::set<std::pair<int64_t, int64_t>>& hit)
    {
        std::lock_guard<std::mutex> lock(d_mutex);
        (overflow ? d_n_over : d_n_under)++;
        if (d_events.size() < d_max_events)
            d_events.push_back({ overflow, at, n, now_s(), { hit.begin(), hit.end() } });
    }

public:
    realtime_pacer_impl(double samp_rate, int chunk, int max_events)
        : gr::block("realtime_pacer", gr::io_signature::make(1, 1, sizeof(gr_complex)),
                    gr::io_signature::make(1, 1, sizeof(gr_complex))),
          d_rate(samp_rate), d_chunk(chunk), d_max_events(max_events)
    {
        if (!(samp_rate > 0) || !std::isfinite(samp_rate) || chunk < 1 || max_events < 0)
            throw std::invalid_argument("realtime_pacer: need samp_rate > 0, chunk >= 1, max_events >= 0");
        set_tag_propagation_policy(TPP_DONT);
    }

    uint64_t air_samples() const override { return d_air; }
    uint64_t dropped() const override { return d_dropped; }
    uint64_t dropped_tx() const override { return d_dropped_tx; }
    uint64_t underflow() const override { return d_underflow; }
    uint64_t idle() const override { return d_idle; }
    uint64_t overflow_events() const override { return d_n_over; }
    uint64_t underflow_events() const override { return d_n_under; }
    std::vector<air_event> events() const override
    {
        std::lock_guard<std::mutex> lock(d_mutex);
        return d_events;
    }

    void forecast(int, gr_vector_int& required) override { required[0] = 0; }   // idle air needs no input

    int general_work(int noutput_items, gr_vector_int& ninput_items, gr_vector_const_void_star& input_items,
                     gr_vector_void_star& output_items) override
    {
        if (!d_started) {
            d_started = true;
            d_t0 = clock::now();
        }
        int64_t due;
        while ((due = (int64_t)std::floor(now_s() * d_rate) - (int64_t)d_air) < d_chunk) {
            const double wait = std::min(0.01, (d_chunk - due) / d_rate);
            boost::this_thread::sleep(boost::posix_time::microseconds((int64_t)(wait * 1e6) + 1));   // interruptible: tb.stop()
        }
        const gr_complex* in = static_cast<const gr_complex*>(input_items[0]);
        gr_complex* out = static_cast<gr_complex*>(output_items[0]);
        const int n_out = (int)std::min<int64_t>(due, noutput_items);
        const int n_in = ninput_items[0];
        // the oldest due samples go out: the transmitter's, then zeros
        const int a = std::min(n_out, n_in);
        walk(0, a, nullptr);
        std::copy(in, in + a, out);
        if (n_out > a) {
            std::fill(out + a, out + n_out, gr_complex(0));
            if (d_in_burst) {
                d_underflow += n_out - a;
                record(false, d_air + a, n_out - a, { d_current });
            } else {
                d_idle += n_out - a;
            }
        }
        // the rest is what the receiver had no room for: dropped
        const int64_t lost = due - n_out;
        int consumed = a;
        if (lost > 0) {
            const int b = (int)std::min<int64_t>(lost, n_in - a);
            std::set<std::pair<int64_t, int64_t>> hit;
            walk(a, b, &hit);
            consumed += b;
            d_dropped += lost;
            d_dropped_tx += b;
            record(true, d_air + n_out, lost, hit);
        }
        d_air += due;
        consume(0, consumed);
        return n_out;
    }
};

realtime_pacer::sptr realtime_pacer::make(double samp_rate, int chunk, int max_events)
{
    return gnuradio::make_block_sptr<realtime_pacer_impl>(samp_rate, chunk, max_events);
}

} // namespace testbedphy
} // namespace gr
