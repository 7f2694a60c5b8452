#include "frame_steps.h"
#include <gnuradio/fft/fft.h>
#include <gnuradio/io_signature.h>
#include <gnuradio/logger.h>
#include <gnuradio/testbedphy/ofdm_demodulator.h>
#include <volk/volk.h>
#include <cmath>
#include <cstring>

namespace gr {
namespace testbedphy {

namespace {
const double PI = 3.14159265358979323846;
}

class ofdm_demodulator_impl : public ofdm_demodulator
{
    const phy_layout d_L;
    const int d_N, d_sym, d_n_head;   // fft_len, samples per OFDM symbol, sync + header symbols
    const preamble_estimator d_pre;
    const std::vector<float> d_signs;
    despreader d_despread;
    gr::fft::fft_complex_fwd d_fft;
    uint64_t d_ok = 0, d_failed = 0, d_too_long = 0, d_frames = 0, d_errors = 0, d_ignored = 0;
    const pmt::pmt_t d_frames_port = pmt::mp("frames"), d_verdict_port = pmt::mp("verdict");
    // the frame being collected: CFO-corrected samples from its start
    bool d_busy = false, d_payload = false;
    int64_t d_target = 0;      // samples wanted: the header first, then the whole frame
    std::vector<gr_complex> d_frame;
    double d_step = 0;   // correction phase per sample; sample j of the frame turns by (j + 1) d_step
    double d_sc_cfo = 0;
    pmt::pmt_t d_meta;
    std::vector<gr_complex> d_rows, d_taps;

public:
    ofdm_demodulator_impl(const phy_layout& L, const std::vector<gr_complex>& w1, const std::vector<gr_complex>& w2,
                          int max_carr_offset, const std::vector<float>& signs)
        : gr::sync_block("ofdm_demodulator",
                         gr::io_signature::makev(3, 3, { sizeof(gr_complex), sizeof(float), sizeof(int8_t) }),
                         gr::io_signature::make(0, 0, 0)),
          d_L(L), d_N(L.fft_len), d_sym(L.fft_len + L.cp_len), d_n_head(2 + L.header_ofdm_symbols),
          d_pre(w1, w2, max_carr_offset), d_signs(signs), d_despread(L.n_data()), d_fft(L.fft_len)
    {
        d_L.validate();
        if ((int)w1.size() != d_N)
            throw std::invalid_argument("ofdm_demodulator: sync words have " + std::to_string(w1.size()) +
                                        " bins, expected fft_len=" + std::to_string(d_N));
        if ((int)signs.size() != L.n_data())
            throw std::invalid_argument("ofdm_demodulator: spread_signs has " + std::to_string(signs.size()) +
                                        " values, expected n_data=" + std::to_string(L.n_data()));
        // the frame starts one OFDM symbol before its trigger
        set_history(d_sym + 1);
        d_frame.reserve((size_t)(d_n_head + L.max_payload_ofdm_symbols) * d_sym);
        message_port_register_out(d_frames_port);
        message_port_register_out(d_verdict_port);
        set_tag_propagation_policy(TPP_DONT);
    }

    uint64_t headers_ok() const override { return d_ok; }
    uint64_t headers_failed() const override { return d_failed; }
    uint64_t headers_too_long() const override { return d_too_long; }
    uint64_t frames() const override { return d_frames; }
    uint64_t payload_errors() const override { return d_errors; }
    uint64_t triggers_ignored() const override { return d_ignored; }

    /* FFT (fftshift-ed, as fft_vcc with shift) of n symbols of the frame from symbol s0, prefixes dropped */
    void rows(int s0, int n)
    {
        d_rows.resize((size_t)n * d_N);
        const int half = d_N / 2;
        for (int s = 0; s < n; s++) {
            const gr_complex* x = d_frame.data() + (size_t)(s0 + s) * d_sym + d_L.cp_len;
            std::memcpy(d_fft.get_inbuf(), x, sizeof(gr_complex) * d_N);
            d_fft.execute();
            const gr_complex* X = d_fft.get_outbuf();
            gr_complex* out = d_rows.data() + (size_t)s * d_N;
            std::memcpy(out, X + half, sizeof(gr_complex) * (d_N - half));
            std::memcpy(out + (d_N - half), X, sizeof(gr_complex) * half);
        }
    }

    void header_done()
    {
        rows(0, d_n_head);
        const int off = d_pre.carrier_offset(d_rows.data(), d_rows.data() + d_N);
        d_pre.taps(d_rows.data() + d_N, off, d_taps);
        std::vector<gr_complex> Y(d_rows.begin() + 2 * d_N, d_rows.end());
        header_outcome o;
        try {
            o = decode_header_rows(Y, d_n_head - 2, off, d_sc_cfo, d_taps.data(), d_L);
        } catch (const std::exception& e) {
            o.why = e.what();
        }
        d_busy = false;
        if (!o.ok) {
            d_failed++;
            d_logger->debug("header rejected: {}", o.why);
        } else if (o.too_long) {
            d_too_long++;
            d_logger->warn(too_long_message(o, d_L));
        } else {
            d_ok++;
            d_meta = o.meta;
            d_target = o.frame_samples;
            d_busy = d_payload = true;
        }
        message_port_pub(d_verdict_port, verdict_message(o.ok, o.frame_samples));
    }

    void frame_done()
    {
        d_busy = d_payload = false;
        const int n_pay = (int)(d_target / d_sym) - d_n_head;
        rows(d_n_head, n_pay);
        try {
            pmt::pmt_t out = equalize_rows(d_meta, d_rows, n_pay, d_L, d_signs, d_despread);
            d_frames++;
            message_port_pub(d_frames_port, out);
        } catch (const std::exception& e) {
            d_errors++;
            d_logger->warn("payload dropped: {}", e.what());
        }
    }

    int work(int noutput_items, gr_vector_const_void_star& input_items, gr_vector_void_star&) override
    {
        // with the history, x[i] is the sample one OFDM symbol before the trigger input's t[i + d_sym]
        const gr_complex* x = static_cast<const gr_complex*>(input_items[0]);
        const float* f = static_cast<const float*>(input_items[1]) + d_sym;
        const int8_t* t = static_cast<const int8_t*>(input_items[2]) + d_sym;
        const int n = noutput_items;
        int i = 0;
        while (i < n) {
            if (!d_busy) {
                const void* p = std::memchr(t + i, 1, n - i);
                if (!p)
                    break;
                i = (int)(static_cast<const int8_t*>(p) - t);
                // the frequency_modulator integrates the held S&C phase f from the trigger on
                // (phase step -2 f / fft_len per sample; a constant phase is the channel's)
                d_step = -2.0 * f[i] / d_N;
                d_sc_cfo = f[i] / PI;
                d_frame.clear();
                d_target = (int64_t)d_n_head * d_sym;
                d_busy = true;
                d_payload = false;
            }
            const int take = (int)std::min<int64_t>(n - i, d_target - (int64_t)d_frame.size());
            const size_t at = d_frame.size();
            // triggers inside a frame being collected are not expected (the detector holds)
            if (take > 1 && std::memchr(t + i + 1, 1, take - 1))
                for (int k = i + 1; k < i + take; k++)
                    d_ignored += t[k] != 0;
            if (at > 0 && t[i])
                d_ignored++;
            d_frame.resize(at + take);
            gr_complex* dst = d_frame.data() + at;
            // VOLK's float rotator over runs of 256 samples, each started from the exact phase
            const lv_32fc_t inc = std::polar(1.0f, (float)d_step);
            for (int k = 0; k < take;) {
                const int m = std::min(take - k, 256 - (int)((at + k) & 255));
                lv_32fc_t ph = gr_complex(std::polar(1.0, std::fmod((double)(at + k + 1) * d_step, 2 * PI)));
                volk_32fc_s32fc_x2_rotator_32fc(dst + k, x + i + k, inc, &ph, m);
                k += m;
            }
            i += take;
            if ((int64_t)d_frame.size() == d_target) {
                if (d_payload)
                    frame_done();
                else
                    header_done();
            }
        }
        return n;
    }
};

ofdm_demodulator::sptr ofdm_demodulator::make(const phy_layout& layout, const std::vector<gr_complex>& w1,
                                              const std::vector<gr_complex>& w2, int max_carr_offset,
                                              const std::vector<float>& signs)
{
    return gnuradio::make_block_sptr<ofdm_demodulator_impl>(layout, w1, w2, max_carr_offset, signs);
}

} // namespace testbedphy
} // namespace gr
