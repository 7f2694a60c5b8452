#include "frame_steps.h"
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

    void handle(const pmt::pmt_t& msg)
    {
        const int N = d_L.fft_len;
        try {   // a malformed frame is counted and dropped, never fatal
            if (!pmt::is_pair(msg) || !pmt::is_c32vector(pmt::cdr(msg)))
                throw std::invalid_argument("message is not a PDU of complex samples");
            size_t len = 0;
            const gr_complex* data = pmt::c32vector_elements(pmt::cdr(msg), len);
            const int n_rows = (int)(len / N);
            std::vector<gr_complex> Y(data, data + (size_t)n_rows * N);
            pmt::pmt_t out = equalize_rows(pmt::car(msg), Y, n_rows, d_L, d_signs, d_despread);
            d_frames++;
            message_port_pub(d_out, out);
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
