#include "ofdm_math.h"
#include <gnuradio/io_signature.h>
#include <gnuradio/logger.h>
#include <gnuradio/testbedphy/payload_equalizer.h>
#include <cmath>
#include <limits>

namespace gr {
namespace testbedphy {

class payload_equalizer_impl : public payload_equalizer
{
    const phy_layout d_L;
    const std::vector<float> d_signs;
    despreader d_despread;
    uint64_t d_frames = 0, d_errors = 0;
    const pmt::pmt_t d_out = pmt::mp("frames");

public:
    payload_equalizer_impl(const phy_layout& L, const std::vector<float>& signs)
        : gr::block("payload_equalizer", gr::io_signature::make(0, 0, 0), gr::io_signature::make(0, 0, 0)),
          d_L(L), d_signs(signs), d_despread(L.n_data())
    {
        d_L.validate();
        if ((int)signs.size() != L.n_data())
            throw std::invalid_argument("payload_equalizer: spread_signs has " + std::to_string(signs.size()) +
                                        " values, expected n_data=" + std::to_string(L.n_data()));
        message_port_register_in(pmt::mp("in"));
        message_port_register_out(d_out);
        set_msg_handler(pmt::mp("in"), [this](const pmt::pmt_t& m) { handle(m); });
    }

    uint64_t frames() const override { return d_frames; }
    uint64_t errors() const override { return d_errors; }

    static pmt::pmt_t need(const pmt::pmt_t& meta, const char* key)
    {
        pmt::pmt_t v = pmt::dict_ref(meta, pmt::mp(key), pmt::PMT_NIL);
        if (pmt::is_null(v))
            throw std::invalid_argument(std::string("metadata has no '") + key + "'");
        return v;
    }

    void handle(const pmt::pmt_t& msg)
    {
        const int N = d_L.fft_len;
        try {   // a malformed frame is counted and dropped, never fatal
            if (!pmt::is_pair(msg) || !pmt::is_c32vector(pmt::cdr(msg)))
                throw std::invalid_argument("message is not a PDU of complex samples");
            const pmt::pmt_t meta = pmt::car(msg);
            size_t len = 0;
            const gr_complex* data = pmt::c32vector_elements(pmt::cdr(msg), len);
            const int n_rows = (int)(len / N);
            std::vector<gr_complex> Y(data, data + (size_t)n_rows * N);
            channel_state st;
            size_t tl = 0;
            const gr_complex* tp = pmt::c32vector_elements(need(meta, "eq_taps"), tl);
            if ((int)tl != N)
                throw std::invalid_argument("eq_taps has " + std::to_string(tl) + " bins");
            st.taps.assign(tp, tp + N);
            st.noise_var = pmt::to_double(need(meta, "eq_noise"));
            align(Y, n_rows, (int)pmt::to_long(need(meta, "eq_carr_offset")), d_L);
            const int side_len = (int)pmt::to_long(pmt::dict_ref(meta, pmt::mp("h_side_info_len"), pmt::from_long(0)));
            const int n_side = side_info_ofdm_symbols(side_len, d_L.n_data());
            const int n_payload = (int)pmt::to_long(need(meta, "h_n_payload"));
            payload_result r = equalize_payload(Y.data(), n_rows, st, n_payload, d_L, n_side, d_signs, d_despread);
            pmt::pmt_t out = pmt::make_dict();
            for (pmt::pmt_t items = pmt::dict_items(meta); !pmt::is_null(items); items = pmt::cdr(items)) {
                const pmt::pmt_t kv = pmt::car(items);
                if (pmt::symbol_to_string(pmt::car(kv)).rfind("h_", 0) == 0)
                    out = pmt::dict_add(out, pmt::car(kv), pmt::cdr(kv));
            }
            out = pmt::dict_add(out, pmt::mp("snr_db"), pmt::from_double(pmt::to_double(need(meta, "eq_snr_db"))));
            out = pmt::dict_add(out, pmt::mp("cfo_hz"),
                                pmt::dict_ref(meta, pmt::mp("eq_cfo_hz"),
                                              pmt::from_double(std::numeric_limits<double>::quiet_NaN())));
            for (const auto& kv : r.diag)
                out = pmt::dict_add(out, pmt::mp(kv.first), pmt::from_double(kv.second));
            if (n_side)
                out = pmt::dict_add(out, pmt::mp("side_symbols"),
                                    pmt::init_c32vector(r.side_symbols.size(), r.side_symbols));
            d_frames++;
            message_port_pub(d_out, pmt::cons(out, pmt::init_c32vector(r.symbols.size(), r.symbols)));
        } catch (const std::exception& e) {
            d_errors++;
            d_logger->warn("payload dropped: {}", e.what());
        }
    }
};

payload_equalizer::sptr payload_equalizer::make(const phy_layout& layout, const std::vector<float>& spread_signs)
{
    return gnuradio::make_block_sptr<payload_equalizer_impl>(layout, spread_signs);
}

} // namespace testbedphy
} // namespace gr
