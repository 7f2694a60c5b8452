#include <gnuradio/io_signature.h>
#include <gnuradio/testbedphy/sc_detector.h>
#include <gnuradio/fft/fft.h>
#include <chrono>
#include <cmath>
#include <complex>
#include <condition_variable>
#include <mutex>
#include <memory>
#include <optional>
#include <thread>

namespace gr {
namespace testbedphy {

namespace {
enum class st { SEARCH, HEADER, WAIT, HOLD };
const double PI = 3.14159265358979323846;
} // namespace

class sc_detector_impl : public sc_detector
{
    // detector (testbed.phy.syncgate.ScDetector)
    const float d_threshold;
    const int d_min_len, d_gap, d_max_region, d_header_samples, d_margin;
    const int d_fft_len, d_search, d_coarse_offset, d_start_offset;
    std::vector<gr_complex> d_ref;
    // correlation with conj(ref * exp(2 pi i k n / N)) for each shift k, by FFT: the spectra of
    // the time-reversed references, zero-padded to d_nfft >= 2 * search + len(ref)
    std::vector<std::vector<gr_complex>> d_ref_spectra;
    int d_nfft = 0;
    std::unique_ptr<gr::fft::fft_complex_fwd> d_fwd;
    std::unique_ptr<gr::fft::fft_complex_rev> d_rev;
    std::vector<gr_complex> d_seg_spec;
    double d_energy = 0;
    std::vector<gr_complex> d_history;
    bool d_has_pending = false;
    int64_t d_pending_pos = 0;
    float d_pending_phase = 0;
    st d_state = st::SEARCH;
    float d_freq = 0;
    int64_t d_trigger_at = -1, d_release_at = -1;
    uint64_t d_accepted = 0, d_rejected = 0, d_suppressed = 0, d_timeouts = 0;
    std::vector<uint8_t> d_above;   // metric >= threshold, filled as far as looked at (d_above_n)
    const float* d_metric = nullptr;
    int d_above_n = 0;
    std::vector<gr_complex> d_seg, d_buf;
    const pmt::pmt_t d_verdict_port = pmt::mp("verdict"), d_timeout_port = pmt::mp("timeout");
    // timeout timer
    const double d_timeout_s;
    std::thread d_timer;
    std::mutex d_mx;
    std::condition_variable d_cv;
    bool d_stop = false, d_armed = false;
    int64_t d_armed_for = -1;
    std::chrono::steady_clock::time_point d_deadline;

public:
    sc_detector_impl(float threshold, int min_len, int gap, int max_region, int header_samples, int margin,
                     const std::vector<gr_complex>& preamble, int fft_len, int search,
                     const std::vector<int>& shifts, int coarse_offset, int start_offset, double timeout_s)
        : gr::block("sc_detector",
                    gr::io_signature::makev(3, 3, { sizeof(float), sizeof(float), sizeof(gr_complex) }),
                    gr::io_signature::makev(2, 2, { sizeof(float), sizeof(int8_t) })),
          d_threshold(threshold), d_min_len(min_len), d_gap(gap), d_max_region(max_region),
          d_header_samples(header_samples), d_margin(margin), d_fft_len(fft_len), d_search(search),
          d_coarse_offset(coarse_offset), d_start_offset(start_offset), d_ref(preamble), d_timeout_s(timeout_s)
    {
        if (gap < 1 || min_len < 1 || max_region < 1 || fft_len < 1 || search < 0)
            throw std::invalid_argument("sc_detector: gap, min_len, max_region, fft_len must be >= 1, search >= 0");
        if (preamble.empty() || shifts.empty())
            throw std::invalid_argument("sc_detector: empty preamble or carrier_shifts");
        const int R = (int)d_ref.size();
        d_nfft = 1;
        while (d_nfft < 2 * search + R)
            d_nfft *= 2;
        d_fwd = std::make_unique<gr::fft::fft_complex_fwd>(d_nfft);
        d_rev = std::make_unique<gr::fft::fft_complex_rev>(d_nfft);
        for (int k : shifts) {
            gr_complex* in = d_fwd->get_inbuf();
            std::fill(in, in + d_nfft, gr_complex(0));
            for (int n = 0; n < R; n++)   // reversed, so that a convolution correlates
                in[R - 1 - n] = gr_complex(
                    std::conj(std::complex<double>(d_ref[n]) * std::polar(1.0, 2 * PI * k * (double)n / fft_len)));
            d_fwd->execute();
            d_ref_spectra.emplace_back(d_fwd->get_outbuf(), d_fwd->get_outbuf() + d_nfft);
        }
        for (auto v : d_ref)
            d_energy += std::norm(std::complex<double>(v));
        message_port_register_in(pmt::mp("verdict"));
        set_msg_handler(pmt::mp("verdict"), [this](const pmt::pmt_t& m) { on_verdict(m); });
        message_port_register_in(pmt::mp("timeout"));
        set_msg_handler(pmt::mp("timeout"), [this](const pmt::pmt_t& m) { on_timeout(m); });
        set_tag_propagation_policy(TPP_DONT);
    }

    ~sc_detector_impl() override { stop(); }

    uint64_t accepted() const override { return d_accepted; }
    uint64_t rejected() const override { return d_rejected; }
    uint64_t suppressed() const override { return d_suppressed; }
    uint64_t timeouts() const override { return d_timeouts; }
    int lookahead() const override { return d_max_region + d_gap + 1 + d_search + (int)d_ref.size(); }

    bool start() override
    {
        std::lock_guard<std::mutex> g(d_mx);
        d_stop = false;
        if (!d_timer.joinable())
            d_timer = std::thread([this] { timer_loop(); });
        return true;
    }

    bool stop() override
    {
        {
            std::lock_guard<std::mutex> g(d_mx);
            d_stop = true;
        }
        d_cv.notify_all();
        if (d_timer.joinable() && d_timer.get_id() != std::this_thread::get_id())
            d_timer.join();
        return true;
    }

    void forecast(int noutput_items, gr_vector_int& required) override
    {
        for (auto& r : required)
            r = noutput_items;
    }

    // -- ScDetector ------------------------------------------------------------------------------
    void on_header(bool ok, int64_t frame_samples)
    {
        if (d_state != st::HEADER && d_state != st::WAIT)
            return;
        if (ok) {
            d_state = st::HOLD;
            d_release_at = d_trigger_at + frame_samples;
        } else
            d_state = st::SEARCH;
    }

    void on_verdict(const pmt::pmt_t& msg)
    {
        disarm();
        bool ok = false;
        int64_t fs = 0;
        if (pmt::is_dict(msg)) {
            ok = pmt::is_true(pmt::dict_ref(msg, pmt::mp("ok"), pmt::PMT_F));
            pmt::pmt_t v = pmt::dict_ref(msg, pmt::mp("frame_samples"), pmt::from_long(0));
            fs = pmt::is_integer(v) ? pmt::to_long(v) : (int64_t)pmt::to_double(v);
        }
        on_header(ok, fs);
    }

    void on_timeout(const pmt::pmt_t& msg)
    {
        if ((d_state == st::HEADER || d_state == st::WAIT) && pmt::to_long(msg) == d_trigger_at) {
            d_timeouts++;
            d_state = st::SEARCH;
        }
    }

    /* the threshold comparison up to index `upto` (exclusive, at most the input) */
    void see(int upto)
    {
        upto = std::min(upto, (int)d_above.size());
        for (int k = d_above_n; k < upto; k++)
            d_above[k] = d_metric[k] >= d_threshold;
        d_above_n = std::max(d_above_n, upto);
    }

    /* last above-threshold index of the region starting at s0, or -1 if undecided */
    int64_t region_end(int s0, int n_in)
    {
        int run = 0;
        see(n_in);
        for (int j = s0; j < n_in; j++) {
            run = d_above[j] ? 0 : run + 1;
            if (run == d_gap)
                return j - d_gap;   // window j-gap+1..j all below: the region ends at j-gap
        }
        return -1;
    }

    std::pair<int64_t, double> locate(const gr_complex* buf, int buf_n, int64_t buf_start, int64_t guess, double phase)
    {
        const int64_t lo = guess - d_search;
        const int64_t a = lo - buf_start;
        const int R = (int)d_ref.size(), L = 2 * d_search + R;
        if (a < 0 || a + L > buf_n)
            return { guess, 0.0 };
        d_seg.resize(L);
        for (int i = 0; i < L; i++) {
            const double n = (double)(i + lo);
            d_seg[i] = gr_complex(std::complex<double>(buf[a + i]) * std::polar(1.0, -2.0 * phase * n / d_fft_len));
        }
        std::vector<double> win(2 * d_search + 1);
        double e = 0;
        for (int i = 0; i < R; i++)
            e += std::norm(std::complex<double>(d_seg[i]));
        win[0] = e;
        for (int j = 1; j <= 2 * d_search; j++) {
            e += std::norm(std::complex<double>(d_seg[j + R - 1])) - std::norm(std::complex<double>(d_seg[j - 1]));
            win[j] = e;
        }
        double best = -1.0;
        int best_lag = 0;
        gr_complex* fin = d_fwd->get_inbuf();
        std::copy(d_seg.begin(), d_seg.end(), fin);
        std::fill(fin + L, fin + d_nfft, gr_complex(0));
        d_fwd->execute();
        d_seg_spec.assign(d_fwd->get_outbuf(), d_fwd->get_outbuf() + d_nfft);
        const float scale = 1.0f / d_nfft;
        for (const auto& spec : d_ref_spectra) {
            gr_complex* rin = d_rev->get_inbuf();
            for (int f = 0; f < d_nfft; f++)
                rin[f] = d_seg_spec[f] * spec[f];
            d_rev->execute();
            const gr_complex* conv = d_rev->get_outbuf();   // conv[j + R - 1]: correlation at lag j
            for (int j = 0; j <= 2 * d_search; j++) {
                const std::complex<double> acc(conv[j + R - 1] * scale);
                const double c = std::norm(acc) / (d_energy * std::max(win[j], 1e-30));
                if (c > best) {
                    best = c;
                    best_lag = j;
                }
            }
        }
        return { lo + best_lag, best };
    }

    void trigger(int64_t start, int t, float phase, float* f_out, int8_t* t_out)
    {
        d_freq = phase;
        f_out[t] = phase;
        t_out[t] = 1;
        d_trigger_at = start + t;
        d_release_at = d_trigger_at + d_header_samples + d_margin;
        d_state = st::HEADER;
        d_accepted++;
    }

    /* ScDetector.process with final=False: returns how many outputs are decided */
    int process(const float* metric, const float* angle, const gr_complex* raw, int n_in, int64_t start, int max_out,
                float* f_out, int8_t* t_out)
    {
        const int n = std::min(n_in, max_out);
        std::fill(t_out, t_out + n, 0);
        d_metric = metric;
        d_above.resize(n_in);
        d_above_n = 0;
        auto fill = [&](int a, int b) { std::fill(f_out + a, f_out + b, d_freq); };
        int i = 0;
        while (i < n) {
            const int64_t pos = start + i;
            if (d_has_pending) {
                const int64_t tpos = d_pending_pos - start;
                if (tpos >= n) {
                    fill(i, n);
                    i = n;
                    break;
                }
                fill(i, (int)tpos);
                trigger(start, (int)tpos, d_pending_phase, f_out, t_out);
                d_has_pending = false;
                i = (int)tpos + 1;
                continue;
            }
            if (d_state == st::WAIT)
                break;
            if (d_state == st::HEADER || d_state == st::HOLD) {
                if (d_state == st::HOLD && pos >= d_release_at) {
                    d_state = st::SEARCH;
                    continue;
                }
                const int64_t end = std::min<int64_t>(n, d_release_at - start);
                if (end <= i) {
                    d_state = st::WAIT;
                    break;
                }
                see((int)end);
                for (int k = i + 1; k < end; k++)
                    d_suppressed += d_above[k] && !d_above[k - 1];
                fill(i, (int)end);
                i = (int)end;
                continue;
            }
            int s0 = i;
            see(n_in);
            while (s0 < n_in && !d_above[s0])
                s0++;
            if (s0 >= n_in || s0 >= n) {
                fill(i, n);
                i = n;
                break;
            }
            fill(i, s0);
            i = s0;
            int64_t end = region_end(s0, n_in);
            if (end < 0 || end - s0 + 1 > d_max_region) {
                if (end < 0 && n_in - s0 < lookahead())
                    break;   // wait for more samples
                int last = -1;
                for (int k = s0; k < std::min(n_in, s0 + d_max_region); k++)
                    if (d_above[k])
                        last = k - s0;
                end = s0 + last;
            }
            if (end - s0 + 1 < d_min_len) {
                if (end >= n) {
                    fill(s0, n);
                    i = n;
                    break;
                }
                d_rejected++;
                fill(s0, (int)end + 1);
                i = (int)end + 1;
                continue;
            }
            int64_t t = (s0 + end) / 2;
            if (t >= n_in)
                break;
            const float phase = angle[t];
            if (n_in - t < d_search + (int64_t)d_ref.size() + 1)
                break;   // need samples for the correlation
            d_buf.assign(d_history.begin(), d_history.end());   // what the correlation can reach
            d_buf.insert(d_buf.end(), raw, raw + std::min<int64_t>(n_in, t + d_search + (int64_t)d_ref.size() + 1));
            const int64_t buf_start = start - (int64_t)d_history.size();
            const int64_t guess = start + t - d_coarse_offset;
            auto loc = locate(d_buf.data(), (int)d_buf.size(), buf_start, guess, phase);
            t = std::max<int64_t>(loc.first + d_start_offset - start, s0);
            d_has_pending = true;
            d_pending_pos = start + t;
            d_pending_phase = phase;
            i = s0;
        }
        const size_t keep = 2 * (d_search + d_ref.size()) + d_coarse_offset;
        if ((size_t)i >= keep)   // only the last `keep` consumed samples are ever looked at again
            d_history.assign(raw + i - keep, raw + i);
        else {
            d_history.insert(d_history.end(), raw, raw + i);
            if (d_history.size() > keep)
                d_history.erase(d_history.begin(), d_history.end() - keep);
        }
        return i;
    }

    int general_work(int noutput_items, gr_vector_int& ninput_items, gr_vector_const_void_star& input_items,
                     gr_vector_void_star& output_items) override
    {
        const float* m = static_cast<const float*>(input_items[0]);
        const float* a = static_cast<const float*>(input_items[1]);
        const gr_complex* raw = static_cast<const gr_complex*>(input_items[2]);
        float* fo = static_cast<float*>(output_items[0]);
        int8_t* to = static_cast<int8_t*>(output_items[1]);
        const int n_in = std::min({ ninput_items[0], ninput_items[1], ninput_items[2], noutput_items + lookahead() });
        const uint64_t before = d_accepted;
        const int k = process(m, a, raw, n_in, (int64_t)nitems_read(0), noutput_items, fo, to);
        const uint64_t base = nitems_written(0);
        for (int i = 0; i < k; i++)
            if (to[i])
                // the receiver corrects with a phase step of -2 f / fft_len per sample (S&C phase
                // f), so the offset is f / pi sub-carrier spacings
                add_item_tag(0, base + i, pmt::mp("sc_cfo"), pmt::from_double((double)fo[i] / PI));
        consume_each(k);
        if (k == 0 && d_state == st::WAIT)
            await_verdict();
        if (d_accepted != before)
            arm(d_trigger_at);
        return k;
    }

    /* Waiting for the header decoder: every change up- or downstream would call this block again
     * at once, only to return nothing (thousands of scheduler round trips per frame). Wait here,
     * briefly, until the verdict (or the timeout) is in this block's queue. */
    void await_verdict()
    {
        for (int i = 0; i < 50; i++) {
            if (!empty_p(d_verdict_port) || !empty_p(d_timeout_port))
                return;
            std::this_thread::sleep_for(std::chrono::microseconds(20));
        }
    }

    // -- timeout -------------------------------------------------------------------------------
    void arm(int64_t trig)
    {
        {
            std::lock_guard<std::mutex> g(d_mx);
            d_armed = true;
            d_armed_for = trig;
            d_deadline = std::chrono::steady_clock::now() +
                         std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                             std::chrono::duration<double>(d_timeout_s));
        }
        d_cv.notify_all();
    }

    void disarm()
    {
        std::lock_guard<std::mutex> g(d_mx);
        d_armed = false;
    }

    void timer_loop()
    {
        std::unique_lock<std::mutex> lk(d_mx);
        while (!d_stop) {
            if (!d_armed) {
                d_cv.wait(lk);
                continue;
            }
            if (d_cv.wait_until(lk, d_deadline) == std::cv_status::timeout && d_armed &&
                std::chrono::steady_clock::now() >= d_deadline) {
                d_armed = false;
                const int64_t trig = d_armed_for;
                lk.unlock();
                _post(pmt::mp("timeout"), pmt::from_long(trig));
                lk.lock();
            }
        }
    }
};

sc_detector::sptr sc_detector::make(float threshold, int min_len, int gap, int max_region, int header_samples,
                                    int margin, const std::vector<gr_complex>& preamble, int fft_len, int search,
                                    const std::vector<int>& carrier_shifts, int coarse_offset, int start_offset,
                                    double timeout_s)
{
    return gnuradio::make_block_sptr<sc_detector_impl>(threshold, min_len, gap, max_region, header_samples, margin,
                                                       preamble, fft_len, search, carrier_shifts, coarse_offset,
                                                       start_offset, timeout_s);
}

} // namespace testbedphy
} // namespace gr
