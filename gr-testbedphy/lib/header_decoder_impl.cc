#include "frame_steps.h"
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

    void reject(const std::string& why)
    {
        d_failed++;
        d_logger->debug("header rejected: {}", why);
        message_port_pub(d_hdr_port, pmt::PMT_F);
        message_port_pub(d_verdict_port, verdict_message(false, 0));
    }

    void handle(const pmt::pmt_t& msg)
    {
        const int N = d_L.fft_len;
        header_outcome o;
        try {   // never let a bad burst stop the receiver
            if (!pmt::is_pair(msg) || !pmt::is_c32vector(pmt::cdr(msg)))
                return reject("message is not a PDU of complex samples");
            const pmt::pmt_t meta = pmt::car(msg);
            size_t len = 0;
            const gr_complex* data = pmt::c32vector_elements(pmt::cdr(msg), len);
            const size_t n_rows = len / N;
            std::vector<gr_complex> Y(data, data + n_rows * N);
            const int off = (int)pmt::to_long(pmt::dict_ref(meta, pmt::mp("ofdm_sync_carr_offset"), pmt::from_long(0)));
            const double sc = pmt::to_double(pmt::dict_ref(meta, pmt::mp("sc_cfo"), pmt::from_double(0.0)));
            std::vector<gr_complex> taps(N, gr_complex(1));
            pmt::pmt_t t = pmt::dict_ref(meta, pmt::mp("ofdm_sync_chan_taps"), pmt::PMT_NIL);
            if (pmt::is_c32vector(t)) {
                size_t tl = 0;
                const gr_complex* tp = pmt::c32vector_elements(t, tl);
                if ((int)tl != N)
                    return reject("channel taps of " + std::to_string(tl) + " bins");
                taps.assign(tp, tp + N);
            }
            o = decode_header_rows(Y, (int)n_rows, off, sc, taps.data(), d_L);
        } catch (const std::exception& e) {
            return reject(e.what());
        }
        if (!o.ok)
            return reject(o.why);
        if (o.too_long) {
            d_too_long++;
            d_logger->warn(too_long_message(o, d_L));
        } else
            d_ok++;
        // a valid header that is too long: the detector still skips the frame
        message_port_pub(d_hdr_port, o.meta);
        message_port_pub(d_verdict_port, verdict_message(true, o.frame_samples));
    }
};

header_decoder::sptr header_decoder::make(const phy_layout& layout)
{
    return gnuradio::make_block_sptr<header_decoder_impl>(layout);
}

} // namespace testbedphy
} // namespace gr
