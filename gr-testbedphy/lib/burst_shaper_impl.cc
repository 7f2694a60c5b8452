#include <gnuradio/io_signature.h>
#include <gnuradio/logger.h>
#include <gnuradio/testbedphy/burst_shaper.h>
#include <algorithm>
#include <cmath>
#include <deque>

namespace gr {
namespace testbedphy {

class burst_shaper_impl : public burst_shaper
{
    const float d_gain, d_clip;
    const int d_gap;
    const pmt::pmt_t d_len_key, d_sob = pmt::mp("tx_sob"), d_eob = pmt::mp("tx_eob");
    int64_t d_remaining = 0, d_pad_left = 0;
    bool d_in_burst = false;
    uint64_t d_bursts = 0, d_clipped = 0, d_bad_flushes = 0;
    std::deque<std::pair<int64_t, int64_t>> d_flushes;   // (after bursts, zeros)
    std::vector<tag_t> d_tags;

public:
    burst_shaper_impl(float gain, float clip, int gap, const std::string& len_tag)
        : gr::block("burst_shaper", gr::io_signature::make(1, 1, sizeof(gr_complex)),
                    gr::io_signature::make(1, 1, sizeof(gr_complex))),
          d_gain(gain), d_clip(clip), d_gap(gap), d_len_key(pmt::mp(len_tag))
    {
        if (gap < 0 || !(clip > 0))
            throw std::invalid_argument("burst_shaper: gap must be >= 0 and clip > 0");
        set_tag_propagation_policy(TPP_DONT);
        message_port_register_in(pmt::mp("flush"));
        set_msg_handler(pmt::mp("flush"), [this](const pmt::pmt_t& m) { on_flush(m); });
    }

    uint64_t bursts() const override { return d_bursts; }
    uint64_t clipped() const override { return d_clipped; }
    uint64_t bad_flushes() const override { return d_bad_flushes; }

    void on_flush(const pmt::pmt_t& msg)
    {
        // an exception here would stop the TX stream for good: bad messages are logged and ignored
        try {
            if (!pmt::is_dict(msg))
                throw std::invalid_argument("not a dict");
            const int64_t after = pmt::to_long(pmt::dict_ref(msg, pmt::mp("after"), pmt::from_long(0)));
            const int64_t samples = pmt::to_long(pmt::dict_ref(msg, pmt::mp("samples"), pmt::from_long(d_gap)));
            if (samples < 0)
                throw std::invalid_argument("samples=" + std::to_string(samples));
            d_flushes.emplace_back(after, samples);
        } catch (const std::exception& e) {
            d_bad_flushes++;
            d_logger->warn("bad flush message ignored ({})", e.what());
        }
    }

    void due_flush()
    {
        if (d_remaining == 0 && d_pad_left == 0)
            while (!d_flushes.empty() && d_flushes.front().first <= (int64_t)d_bursts) {
                d_pad_left += d_flushes.front().second;
                d_flushes.pop_front();
            }
    }

    void forecast(int noutput_items, gr_vector_int& required) override
    {
        due_flush();
        required[0] = d_pad_left ? 0 : std::min(noutput_items, 4096);
    }

    void scale(const gr_complex* in, gr_complex* out, int n)
    {
        const float c2 = d_clip * d_clip;
        for (int i = 0; i < n; i++) {
            gr_complex y = in[i] * d_gain;
            const float m2 = std::norm(y);
            if (m2 > c2) {
                y *= d_clip / std::sqrt(m2);
                d_clipped++;
            }
            out[i] = y;
        }
    }

    int general_work(int noutput_items, gr_vector_int& ninput_items, gr_vector_const_void_star& input_items,
                     gr_vector_void_star& output_items) override
    {
        const gr_complex* in = static_cast<const gr_complex*>(input_items[0]);
        gr_complex* out = static_cast<gr_complex*>(output_items[0]);
        due_flush();
        if (d_pad_left) {
            const int n = (int)std::min<int64_t>(d_pad_left, noutput_items);
            std::fill(out, out + n, gr_complex(0));
            if (!d_in_burst) {   // flush zeros after a finished burst: a burst of their own
                add_item_tag(0, nitems_written(0), d_sob, pmt::PMT_T);
                d_in_burst = true;
            }
            d_pad_left -= n;
            if (d_pad_left == 0) {
                due_flush();
                if (d_pad_left == 0) {
                    add_item_tag(0, nitems_written(0) + n - 1, d_eob, pmt::PMT_T);
                    d_in_burst = false;
                }
            }
            return n;   // produce() of n, nothing consumed
        }
        const int n_in = ninput_items[0];
        if (d_remaining == 0) {
            if (n_in == 0)
                return 0;
            const uint64_t r0 = nitems_read(0);
            get_tags_in_window(d_tags, 0, 0, n_in, d_len_key);
            const tag_t* at_start = nullptr;
            int n = std::min(n_in, noutput_items);
            for (const auto& t : d_tags) {
                if (t.offset == r0 && !at_start)
                    at_start = &t;
                else if (t.offset > r0)
                    n = std::min<int>(n, (int)(t.offset - r0));
            }
            if (!at_start) {   // untagged samples: pass through (scaled), up to the next burst
                scale(in, out, n);
                consume(0, n);
                return n;
            }
            d_remaining = pmt::to_long(at_start->value);
            add_item_tag(0, nitems_written(0), d_sob, pmt::PMT_T);
            d_in_burst = true;
            d_bursts++;
        }
        const int n = (int)std::min<int64_t>({ d_remaining, (int64_t)n_in, (int64_t)noutput_items });
        scale(in, out, n);
        consume(0, n);
        d_remaining -= n;
        if (d_remaining == 0) {
            d_pad_left = d_gap;
            if (d_gap == 0) {
                add_item_tag(0, nitems_written(0) + n - 1, d_eob, pmt::PMT_T);
                d_in_burst = false;
            }
        }
        return n;
    }
};

burst_shaper::sptr burst_shaper::make(float gain, float clip, int gap, const std::string& len_tag)
{
    return gnuradio::make_block_sptr<burst_shaper_impl>(gain, clip, gap, len_tag);
}

} // namespace testbedphy
} // namespace gr
