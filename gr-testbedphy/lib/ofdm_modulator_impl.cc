#include <gnuradio/fft/fft.h>
#include <gnuradio/io_signature.h>
#include <gnuradio/logger.h>
#include <gnuradio/testbedphy/ofdm_modulator.h>
#include <algorithm>
#include <cmath>
#include <deque>
#include <stdexcept>
#include <string>

namespace gr {
namespace testbedphy {

class ofdm_modulator_impl : public ofdm_modulator
{
    const int d_fft, d_cp, d_sym, d_gap, d_max_symbols;
    const float d_gain, d_clip;
    std::vector<int> d_data_bins, d_pilot_bins;   // natural (unshifted) FFT bins
    std::vector<gr_complex> d_pilots, d_sync1, d_sync2;
    fft::fft_complex_rev d_ifft;
    const pmt::pmt_t d_sob = pmt::mp("tx_sob"), d_eob = pmt::mp("tx_eob"), d_frame = pmt::mp("tx_frame");
    pmt::pmt_t d_meta = pmt::PMT_NIL;                   // the current frame's PDU metadata
    std::deque<pmt::pmt_t> d_frames;                    // PDUs waiting
    std::deque<std::pair<int64_t, int64_t>> d_flushes;  // (after bursts, zeros)
    std::vector<gr_complex> d_burst;                    // the current burst's samples
    size_t d_pos = 0;                                   // next sample of d_burst to send
    int64_t d_pad_left = 0;
    bool d_in_burst = false;
    uint64_t d_bursts = 0, d_clipped = 0, d_bad_frames = 0, d_bad_flushes = 0;

    int nat(int carrier) const
    {
        const int b = carrier % d_fft;
        return b < 0 ? b + d_fft : b;
    }

    /* one OFDM symbol from its natural-order spectrum (in the IFFT's input buffer) */
    void emit_symbol(gr_complex* dst)
    {
        d_ifft.execute();
        const gr_complex* t = d_ifft.get_outbuf();
        std::copy(t + d_fft - d_cp, t + d_fft, dst);
        std::copy(t, t + d_fft, dst + d_cp);
    }

    void shifted_to_input(const std::vector<gr_complex>& v)
    {
        gr_complex* in = d_ifft.get_inbuf();
        for (int i = 0; i < d_fft; i++)
            in[nat(i - d_fft / 2)] = v[i];
    }

    void render(const gr_complex* s, size_t n)
    {
        const size_t nd = d_data_bins.size();
        const size_t n_ofdm = (n + nd - 1) / nd;
        d_burst.resize((2 + n_ofdm) * d_sym);
        gr_complex* out = d_burst.data();
        shifted_to_input(d_sync1);
        emit_symbol(out);
        shifted_to_input(d_sync2);
        emit_symbol(out + d_sym);
        gr_complex* in = d_ifft.get_inbuf();
        for (size_t k = 0; k < n_ofdm; k++) {
            std::fill(in, in + d_fft, gr_complex(0));
            for (size_t j = 0; j < nd; j++) {
                const size_t i = k * nd + j;
                in[d_data_bins[j]] = i < n ? s[i] : gr_complex(0);
            }
            for (size_t j = 0; j < d_pilot_bins.size(); j++)
                in[d_pilot_bins[j]] = d_pilots[j];
            emit_symbol(out + (2 + k) * d_sym);
        }
        const float c2 = d_clip * d_clip;
        for (auto& y : d_burst) {
            y *= d_gain;
            const float m2 = std::norm(y);
            if (m2 > c2) {
                y *= d_clip / std::sqrt(m2);
                d_clipped++;
            }
        }
        d_pos = 0;
    }

    void on_frame(const pmt::pmt_t& msg) { d_frames.push_back(msg); }

    void on_flush(const pmt::pmt_t& msg)
    {
        try {   // an exception here would stop the TX stream for good
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

    bool between_bursts() const { return d_pos >= d_burst.size() && d_pad_left == 0; }

    void due_flush()
    {
        if (between_bursts())
            while (!d_flushes.empty() && d_flushes.front().first <= (int64_t)d_bursts) {
                d_pad_left += d_flushes.front().second;
                d_flushes.pop_front();
            }
    }

    /* the next valid frame rendered into d_burst; false when none is waiting */
    bool next_frame()
    {
        while (!d_frames.empty()) {
            pmt::pmt_t msg = d_frames.front();
            d_frames.pop_front();
            pmt::pmt_t v = pmt::is_pair(msg) ? pmt::cdr(msg) : pmt::PMT_NIL;
            if (!pmt::is_c32vector(v)) {
                d_bad_frames++;
                d_logger->warn("frame dropped: not a PDU of complex symbols");
                continue;
            }
            size_t n = 0;
            const gr_complex* s = pmt::c32vector_elements(v, n);
            if (n == 0 || n > (size_t)d_max_symbols) {
                d_bad_frames++;
                d_logger->warn("frame of {} symbols dropped (1..{} allowed)", n, d_max_symbols);
                continue;
            }
            render(s, n);
            d_meta = pmt::car(msg);
            return true;
        }
        return false;
    }

public:
    ofdm_modulator_impl(int fft_len, int cp_len, const std::vector<int>& data_carriers,
                        const std::vector<int>& pilot_carriers, const std::vector<gr_complex>& pilot_symbols,
                        const std::vector<gr_complex>& sync_word1, const std::vector<gr_complex>& sync_word2,
                        float gain, float clip, int gap, int max_symbols)
        : gr::block("ofdm_modulator", gr::io_signature::make(0, 0, 0),
                    gr::io_signature::make(1, 1, sizeof(gr_complex))),
          d_fft(fft_len), d_cp(cp_len), d_sym(fft_len + cp_len), d_gap(gap), d_max_symbols(max_symbols),
          d_gain(gain), d_clip(clip), d_pilots(pilot_symbols), d_sync1(sync_word1), d_sync2(sync_word2),
          d_ifft(fft_len > 0 ? fft_len : 1)
    {
        if (fft_len < 2 || cp_len < 0 || cp_len >= fft_len)
            throw std::invalid_argument("ofdm_modulator: need fft_len >= 2 and 0 <= cp_len < fft_len");
        if (data_carriers.empty() || pilot_carriers.size() != pilot_symbols.size())
            throw std::invalid_argument("ofdm_modulator: no data carriers, or pilots and pilot symbols differ in number");
        if ((int)sync_word1.size() != fft_len || (int)sync_word2.size() != fft_len)
            throw std::invalid_argument("ofdm_modulator: sync words must have fft_len entries");
        if (gap < 0 || !(clip > 0) || !(gain > 0) || max_symbols < 1)
            throw std::invalid_argument("ofdm_modulator: need gap >= 0, clip > 0, gain > 0, max_symbols >= 1");
        for (int c : data_carriers) {
            if (c <= -fft_len / 2 || c >= fft_len / 2)
                throw std::invalid_argument("ofdm_modulator: data carrier " + std::to_string(c) + " out of range");
            d_data_bins.push_back(nat(c));
        }
        for (int c : pilot_carriers) {
            if (c <= -fft_len / 2 || c >= fft_len / 2)
                throw std::invalid_argument("ofdm_modulator: pilot carrier " + std::to_string(c) + " out of range");
            d_pilot_bins.push_back(nat(c));
        }
        set_tag_propagation_policy(TPP_DONT);
        message_port_register_in(pmt::mp("frames"));
        set_msg_handler(pmt::mp("frames"), [this](const pmt::pmt_t& m) { on_frame(m); });
        message_port_register_in(pmt::mp("flush"));
        set_msg_handler(pmt::mp("flush"), [this](const pmt::pmt_t& m) { on_flush(m); });
    }

    uint64_t bursts() const override { return d_bursts; }
    uint64_t clipped() const override { return d_clipped; }
    uint64_t bad_frames() const override { return d_bad_frames; }
    uint64_t bad_flushes() const override { return d_bad_flushes; }
    uint64_t queued() const override { return d_frames.size(); }

    int general_work(int noutput_items, gr_vector_int&, gr_vector_const_void_star&,
                     gr_vector_void_star& output_items) override
    {
        gr_complex* out = static_cast<gr_complex*>(output_items[0]);
        int done = 0;
        while (done < noutput_items) {
            const int room = noutput_items - done;
            due_flush();
            if (d_pad_left) {   // the gap after a burst, or flush zeros
                const int n = (int)std::min<int64_t>(d_pad_left, room);
                std::fill(out + done, out + done + n, gr_complex(0));
                if (!d_in_burst) {   // flush zeros after a finished burst: a burst of their own
                    add_item_tag(0, nitems_written(0) + done, d_sob, pmt::PMT_T);
                    d_in_burst = true;
                }
                d_pad_left -= n;
                done += n;
                if (d_pad_left == 0) {
                    due_flush();
                    if (d_pad_left == 0) {
                        add_item_tag(0, nitems_written(0) + done - 1, d_eob, pmt::PMT_T);
                        d_in_burst = false;
                    }
                }
                continue;
            }
            if (d_pos >= d_burst.size()) {
                if (!next_frame())
                    break;
                add_item_tag(0, nitems_written(0) + done, d_sob, pmt::PMT_T);
                if (pmt::is_dict(d_meta) && pmt::length(pmt::dict_keys(d_meta)) > 0)
                    add_item_tag(0, nitems_written(0) + done, d_frame, d_meta);
                d_in_burst = true;
                d_bursts++;
            }
            const int n = (int)std::min<size_t>(d_burst.size() - d_pos, room);
            std::copy(d_burst.data() + d_pos, d_burst.data() + d_pos + n, out + done);
            d_pos += n;
            done += n;
            if (d_pos >= d_burst.size()) {
                d_pad_left = d_gap;
                if (d_gap == 0) {
                    add_item_tag(0, nitems_written(0) + done - 1, d_eob, pmt::PMT_T);
                    d_in_burst = false;
                }
            }
        }
        return done;
    }
};

ofdm_modulator::sptr ofdm_modulator::make(int fft_len, int cp_len, const std::vector<int>& data_carriers,
                                          const std::vector<int>& pilot_carriers,
                                          const std::vector<gr_complex>& pilot_symbols,
                                          const std::vector<gr_complex>& sync_word1,
                                          const std::vector<gr_complex>& sync_word2, float gain, float clip,
                                          int gap, int max_symbols)
{
    return gnuradio::make_block_sptr<ofdm_modulator_impl>(fft_len, cp_len, data_carriers, pilot_carriers,
                                                          pilot_symbols, sync_word1, sync_word2, gain, clip,
                                                          gap, max_symbols);
}

} // namespace testbedphy
} // namespace gr
