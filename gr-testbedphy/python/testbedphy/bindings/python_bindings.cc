/* pybind11 bindings of the testbed's PHY blocks, and of their kernels (for the equivalence tests
 * against the Python reference). */
#include <pybind11/complex.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <gnuradio/testbedphy/header_decoder.h>
#include <gnuradio/testbedphy/ofdm_demodulator.h>
#include <gnuradio/testbedphy/ofdm_modulator.h>
#include <gnuradio/testbedphy/payload_equalizer.h>
#include <gnuradio/testbedphy/phy_layout.h>
#include <gnuradio/testbedphy/realtime_pacer.h>
#include <gnuradio/testbedphy/rx_monitor.h>
#include <gnuradio/testbedphy/sc_detector.h>
#include <gnuradio/testbedphy/sc_metric.h>

#include "../../../lib/fec.h"
#include "../../../lib/ofdm_math.h"

namespace py = pybind11;
using namespace gr::testbedphy;

PYBIND11_MODULE(testbedphy_python, m)
{
    py::module::import("gnuradio.gr");
    m.doc() = "C++ blocks of the testbed's OFDM PHY (reference implementations: testbed.phy, testbed.gr)";

    py::class_<phy_layout>(m, "phy_layout")
        .def(py::init<>())
        .def_readwrite("fft_len", &phy_layout::fft_len)
        .def_readwrite("cp_len", &phy_layout::cp_len)
        .def_readwrite("pilot_spacing", &phy_layout::pilot_spacing)
        .def_readwrite("header_repetition", &phy_layout::header_repetition)
        .def_readwrite("header_ofdm_symbols", &phy_layout::header_ofdm_symbols)
        .def_readwrite("max_payload_ofdm_symbols", &phy_layout::max_payload_ofdm_symbols)
        .def_readwrite("subcarrier_spacing_hz", &phy_layout::subcarrier_spacing_hz)
        .def_readwrite("used_carriers", &phy_layout::used_carriers)
        .def_readwrite("pilot_carriers", &phy_layout::pilot_carriers)
        .def_readwrite("data_carriers", &phy_layout::data_carriers)
        .def_readwrite("pilot_symbols", &phy_layout::pilot_symbols)
        .def_readwrite("projector", &phy_layout::projector)
        .def_readwrite("projector_basis", &phy_layout::projector_basis)
        .def_readwrite("projector_rank", &phy_layout::projector_rank)
        .def_readwrite("header_bits", &phy_layout::header_bits)
        .def_readwrite("header_perm", &phy_layout::header_perm)
        .def_readwrite("header_pad", &phy_layout::header_pad)
        .def_readwrite("header_bits_v1", &phy_layout::header_bits_v1)
        .def_readwrite("header_perm_v1", &phy_layout::header_perm_v1)
        .def_readwrite("header_pad_v1", &phy_layout::header_pad_v1)
        .def("validate", &phy_layout::validate);

    py::class_<sc_metric, gr::sync_block, gr::block, gr::basic_block, std::shared_ptr<sc_metric>>(m, "sc_metric")
        .def(py::init(&sc_metric::make), py::arg("fft_len"), py::arg("angle_threshold") = 0.0f);

    py::class_<sc_detector, gr::block, gr::basic_block, std::shared_ptr<sc_detector>>(m, "sc_detector")
        .def(py::init(&sc_detector::make), py::arg("threshold"), py::arg("min_len"), py::arg("gap"),
             py::arg("max_region"), py::arg("header_samples"), py::arg("margin"), py::arg("preamble"),
             py::arg("fft_len"), py::arg("search"), py::arg("carrier_shifts"), py::arg("coarse_offset"),
             py::arg("start_offset"), py::arg("timeout_s") = 2.0)
        .def("accepted", &sc_detector::accepted)
        .def("rejected", &sc_detector::rejected)
        .def("suppressed", &sc_detector::suppressed)
        .def("timeouts", &sc_detector::timeouts)
        .def("lookahead", &sc_detector::lookahead);

    py::class_<header_decoder, gr::block, gr::basic_block, std::shared_ptr<header_decoder>>(m, "header_decoder")
        .def(py::init(&header_decoder::make), py::arg("layout"))
        .def("ok", &header_decoder::ok)
        .def("failed", &header_decoder::failed)
        .def("too_long", &header_decoder::too_long);

    py::class_<payload_equalizer, gr::block, gr::basic_block, std::shared_ptr<payload_equalizer>>(m, "payload_equalizer")
        .def(py::init(&payload_equalizer::make), py::arg("layout"), py::arg("spread_signs"))
        .def("frames", &payload_equalizer::frames)
        .def("errors", &payload_equalizer::errors);

    py::class_<ofdm_demodulator, gr::sync_block, gr::block, gr::basic_block, std::shared_ptr<ofdm_demodulator>>(
        m, "ofdm_demodulator")
        .def(py::init(&ofdm_demodulator::make), py::arg("layout"), py::arg("sync_word1"), py::arg("sync_word2"),
             py::arg("max_carr_offset"), py::arg("spread_signs"))
        .def("headers_ok", &ofdm_demodulator::headers_ok)
        .def("headers_failed", &ofdm_demodulator::headers_failed)
        .def("headers_too_long", &ofdm_demodulator::headers_too_long)
        .def("frames", &ofdm_demodulator::frames)
        .def("payload_errors", &ofdm_demodulator::payload_errors)
        .def("triggers_ignored", &ofdm_demodulator::triggers_ignored);

    py::class_<ofdm_modulator, gr::block, gr::basic_block, std::shared_ptr<ofdm_modulator>>(m, "ofdm_modulator")
        .def(py::init(&ofdm_modulator::make), py::arg("fft_len"), py::arg("cp_len"), py::arg("data_carriers"),
             py::arg("pilot_carriers"), py::arg("pilot_symbols"), py::arg("sync_word1"), py::arg("sync_word2"),
             py::arg("gain"), py::arg("clip"), py::arg("gap"), py::arg("max_symbols"))
        .def("bursts", &ofdm_modulator::bursts)
        .def("clipped", &ofdm_modulator::clipped)
        .def("bad_frames", &ofdm_modulator::bad_frames)
        .def("bad_flushes", &ofdm_modulator::bad_flushes)
        .def("queued", &ofdm_modulator::queued);

    py::class_<air_event>(m, "air_event")
        .def_readonly("overflow", &air_event::overflow)
        .def_readonly("air_offset", &air_event::air_offset)
        .def_readonly("samples", &air_event::samples)
        .def_readonly("time_s", &air_event::time_s)
        .def_readonly("frames", &air_event::frames);

    py::class_<realtime_pacer, gr::block, gr::basic_block, std::shared_ptr<realtime_pacer>>(m, "realtime_pacer")
        .def(py::init(&realtime_pacer::make), py::arg("samp_rate"), py::arg("chunk") = 1024,
             py::arg("max_events") = 10000)
        .def("air_samples", &realtime_pacer::air_samples)
        .def("dropped", &realtime_pacer::dropped)
        .def("dropped_tx", &realtime_pacer::dropped_tx)
        .def("underflow", &realtime_pacer::underflow)
        .def("idle", &realtime_pacer::idle)
        .def("overflow_events", &realtime_pacer::overflow_events)
        .def("underflow_events", &realtime_pacer::underflow_events)
        .def("events", &realtime_pacer::events);

    py::class_<rx_gap>(m, "rx_gap")
        .def_readonly("offset", &rx_gap::offset)
        .def_readonly("samples", &rx_gap::samples)
        .def_readonly("monotonic_s", &rx_gap::monotonic_s)
        .def_readonly("exact", &rx_gap::exact);

    py::class_<rx_monitor, gr::sync_block, gr::block, gr::basic_block, std::shared_ptr<rx_monitor>>(m, "rx_monitor")
        .def(py::init(&rx_monitor::make), py::arg("samp_rate"), py::arg("slack"), py::arg("max_events") = 10000)
        .def("samples", &rx_monitor::samples)
        .def("lost_exact", &rx_monitor::lost_exact)
        .def("lost_estimate", &rx_monitor::lost_estimate)
        .def("time_tags", &rx_monitor::time_tags)
        .def("gaps", &rx_monitor::gaps);

    // -- kernels, for the equivalence tests ------------------------------------------------------
    py::module k = m.def_submodule("kernels", "the blocks' signal processing as functions");
    k.def("atan2", [](const std::vector<gr_complex>& p) {
        std::vector<float> out(p.size());
        fast_atan2(p.data(), out.data(), (int)p.size());
        return out;
    });
    k.def("viterbi_decode", [](const std::vector<double>& soft, int n_bits) {
        if ((int)soft.size() != 2 * (n_bits + fec::K - 1))
            throw std::invalid_argument("expected " + std::to_string(2 * (n_bits + fec::K - 1)) + " soft values");
        return fec::viterbi_decode(soft.data(), n_bits);
    });
    k.def("crc32", [](const py::bytes& b) {
        std::string s = b;
        return fec::crc32(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    });
    k.def("estimate_from_header", [](const std::vector<gr_complex>& Y, const std::vector<gr_complex>& H0,
                                      const phy_layout& L) {
        const int n = (int)(Y.size() / L.fft_len);
        header_result r = estimate_from_header(Y.data(), n, H0.data(), L);
        py::dict d;
        d["why"] = r.why;
        if (r.header) {
            const frame_header& h = *r.header;
            d["header"] = py::dict(py::arg("version") = h.version, py::arg("image_id") = h.image_id,
                                   py::arg("frame_index") = h.frame_index, py::arg("frame_count") = h.frame_count,
                                   py::arg("height") = h.height, py::arg("width") = h.width,
                                   py::arg("symbols_per_location") = h.symbols_per_location,
                                   py::arg("n_payload") = h.n_payload, py::arg("payload_offset") = h.payload_offset,
                                   py::arg("model_hash") = h.model_hash, py::arg("side_info_len") = h.side_info_len,
                                   py::arg("mode") = h.mode);
            d["taps"] = r.state.taps;
            d["noise_var"] = r.state.noise_var;
            d["snr_db"] = r.state.snr_db;
            d["snr_eff_db"] = r.state.snr_eff_db;
            d["phase_end"] = r.state.phase_end;
            d["phase_rate"] = r.state.phase_rate;
        }
        return d;
    });
    k.def("equalize_payload", [](const std::vector<gr_complex>& Y, const std::vector<gr_complex>& taps,
                                  double noise_var, int n_payload, const phy_layout& L, int n_side,
                                  const std::vector<float>& signs) {
        channel_state st;
        st.taps = taps;
        st.noise_var = noise_var;
        despreader dsp(L.n_data());
        payload_result r = equalize_payload(Y.data(), (int)(Y.size() / L.fft_len), st, n_payload, L, n_side, signs, dsp);
        return py::make_tuple(r.symbols, r.side_symbols, r.diag);
    });
}
