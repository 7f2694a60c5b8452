#include "ofdm_math.h"
#include <gnuradio/io_signature.h>
#include <gnuradio/logger.h>
#include <gnuradio/testbedphy/header_decoder.h>
#include <cmath>

namespace gr {
namespace testbedphy {

class header_decoder_impl : public header_decoder
{
    const phy_layout d_L;
    uint64_t d_ok = 0, d_failed = 0, d_too_long = 0;
    const pmt::pmt_t d_hdr_port = pmt::mp("header_data"), d_verdict_port = pmt::mp("verdict");

public:
    explicit header_decoder_impl(const phy_layout& L)
        : gr::block("header_decoder", gr::io_signature::make(0, 0, 0), gr::io_signature::make(0, 0, 0)), d_L(L)
    {
        d_L.validate();
        message_port_register_in(pmt::mp("in"));
        message_port_register_out(d_hdr_port);
        message_port_register_out(d_verdict_port);
        set_msg_handler(pmt::mp("in"), [this](const pmt::pmt_t& m) { handle(m); });
    }

    uint64_t ok() const override { return d_ok; }
    uint64_t failed() const override { return d_failed; }
    uint64_t too_long() const override { return d_too_long; }

    static pmt::pmt_t verdict(bool ok, int64_t frame_samples)
    {
        pmt::pmt_t d = pmt::make_dict();
        d = pmt::dict_add(d, pmt::mp("ok"), pmt::from_bool(ok));
        if (ok)
            d = pmt::dict_add(d, pmt::mp("frame_samples"), pmt::from_long(frame_samples));
        return d;
    }

    void reject(const std::string& why)
    {
        d_failed++;
        d_logger->debug("header rejected: {}", why);
        message_port_pub(d_hdr_port, pmt::PMT_F);
        message_port_pub(d_verdict_port, verdict(false, 0));
    }

    void handle(const pmt::pmt_t& msg)
    {
        const int N = d_L.fft_len;
        header_result r;
        int off = 0;
        double sc = 0;
        size_t n_rows = 0;
        try {   // never let a bad burst stop the receiver
            if (!pmt::is_pair(msg) || !pmt::is_c32vector(pmt::cdr(msg)))
                return reject("message is not a PDU of complex samples");
            const pmt::pmt_t meta = pmt::car(msg);
            size_t len = 0;
            const gr_complex* data = pmt::c32vector_elements(pmt::cdr(msg), len);
            n_rows = len / N;
            std::vector<gr_complex> Y(data, data + n_rows * N);
            off = (int)pmt::to_long(pmt::dict_ref(meta, pmt::mp("ofdm_sync_carr_offset"), pmt::from_long(0)));
            sc = pmt::to_double(pmt::dict_ref(meta, pmt::mp("sc_cfo"), pmt::from_double(0.0)));
            std::vector<gr_complex> taps(N, gr_complex(1));
            pmt::pmt_t t = pmt::dict_ref(meta, pmt::mp("ofdm_sync_chan_taps"), pmt::PMT_NIL);
            if (pmt::is_c32vector(t)) {
                size_t tl = 0;
                const gr_complex* tp = pmt::c32vector_elements(t, tl);
                if ((int)tl != N)
                    return reject("channel taps of " + std::to_string(tl) + " bins");
                taps.assign(tp, tp + N);
            }
            // the estimator's taps are already carrier-aligned; the symbols are not
            align(Y, (int)n_rows, off, d_L);
            r = estimate_from_header(Y.data(), (int)n_rows, taps.data(), d_L);
        } catch (const std::exception& e) {
            return reject(e.what());
        }
        if (!r.header)
            return reject(r.why);
        const frame_header& h = *r.header;
        const int frame_len = side_info_ofdm_symbols(h.side_info_len, d_L.n_data()) +
                              (h.n_payload + d_L.n_data() - 1) / d_L.n_data();
        const int n_hdr = (int)n_rows;
        const int64_t frame_samples = (int64_t)(2 + n_hdr + frame_len) * (N + d_L.cp_len);
        if (frame_len > d_L.max_payload_ofdm_symbols) {
            d_too_long++;
            d_logger->warn("frame {} of image {} dropped: {} payload OFDM symbols, this receiver buffers at most {} "
                           "(its payload_symbols_per_frame is smaller than the transmitter's)",
                           h.frame_index, h.image_id, frame_len, d_L.max_payload_ofdm_symbols);
            message_port_pub(d_hdr_port, pmt::PMT_F);
            // the header is valid: the detector still skips the frame
            message_port_pub(d_verdict_port, verdict(true, frame_samples));
            return;
        }
        d_ok++;
        const channel_state& s = r.state;
        const double cfo_sub = off + sc + s.phase_rate / (2 * M_PI) * N / (N + d_L.cp_len);
        pmt::pmt_t d = pmt::make_dict();
        auto add = [&](const char* k, const pmt::pmt_t& v) { d = pmt::dict_add(d, pmt::mp(k), v); };
        add("frame_len", pmt::from_long(frame_len));
        add("h_image_id", pmt::from_long(h.image_id));
        add("h_frame_index", pmt::from_long(h.frame_index));
        add("h_frame_count", pmt::from_long(h.frame_count));
        add("h_height", pmt::from_long(h.height));
        add("h_width", pmt::from_long(h.width));
        add("h_symbols_per_location", pmt::from_long(h.symbols_per_location));
        add("h_n_payload", pmt::from_long(h.n_payload));
        add("h_payload_offset", pmt::from_long(h.payload_offset));
        add("h_model_hash", pmt::from_long(h.model_hash));
        add("h_side_info_len", pmt::from_long(h.side_info_len));
        add("h_mode", pmt::from_long(h.mode));
        add("h_version", pmt::from_long(h.version));
        add("eq_taps", pmt::init_c32vector(s.taps.size(), s.taps));
        add("eq_noise", pmt::from_double(s.noise_var));
        add("eq_snr_db", pmt::from_double(s.snr_db));
        add("eq_snr_eff_db", pmt::from_double(s.snr_eff_db));
        add("eq_carr_offset", pmt::from_long(off));
        add("eq_cfo_hz", pmt::from_double(cfo_sub * d_L.subcarrier_spacing_hz));
        message_port_pub(d_hdr_port, d);
        message_port_pub(d_verdict_port, verdict(true, frame_samples));
    }
};

header_decoder::sptr header_decoder::make(const phy_layout& layout)
{
    return gnuradio::make_block_sptr<header_decoder_impl>(layout);
}

} // namespace testbedphy
} // namespace gr
