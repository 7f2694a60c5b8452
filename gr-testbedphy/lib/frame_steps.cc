#include "frame_steps.h"
#include <cmath>
#include <limits>
#include <stdexcept>

namespace gr {
namespace testbedphy {

preamble_estimator::preamble_estimator(const std::vector<gr_complex>& w1, const std::vector<gr_complex>& w2,
                                       int max_carr_offset)
    : d_n((int)w1.size()), d_ref(w2), d_corr(w2)
{
    if (w1.empty() || w1.size() != w2.size())
        throw std::invalid_argument("preamble_estimator: sync words of " + std::to_string(w1.size()) + " and " +
                                    std::to_string(w2.size()) + " bins");
    int first = -1, last = -1;
    for (int i = 0; i < d_n; i++)
        if (d_ref[i] != gr_complex(0)) {
            if (first < 0)
                first = i;
            last = i;
        }
    if (first < 0)
        throw std::invalid_argument("preamble_estimator: sync_word2 is all zero");
    d_neg = -first;
    d_pos = d_n - last - 1;
    if (max_carr_offset != -1) {
        d_neg = std::max(-max_carr_offset, d_neg);
        d_pos = std::min(max_carr_offset, d_pos);
    }
    if (d_neg % 2)   // even offsets only
        d_neg++;
    if (d_pos % 2)
        d_pos--;
    for (int i = 0; i < d_n; i++)
        d_corr[i] = w1[i] == gr_complex(0) ? gr_complex(0) : d_corr[i] / w1[i];
}

int preamble_estimator::carrier_offset(const gr_complex* s1, const gr_complex* s2) const
{
    int best = 0;
    if (!d_neg && !d_pos)
        return 0;
    float bg_max = 0;
    for (int g = d_neg; g <= d_pos; g += 2) {
        gr_complex acc(0);
        for (int k = 0; k < d_n; k++)
            if (d_corr[k] != gr_complex(0) && k + g >= 0 && k + g < d_n)
                acc += std::conj(s1[k + g]) * std::conj(d_corr[k]) * s2[k + g];
        if (std::abs(acc) > bg_max) {
            bg_max = std::abs(acc);
            best = g;
        }
    }
    return best;
}

void preamble_estimator::taps(const gr_complex* s2, int off, std::vector<gr_complex>& out) const
{
    out.assign(d_n, gr_complex(0));
    const int lo = off > 0 ? off : 0, hi = off < 0 ? d_n + off : d_n;
    for (int i = lo; i < hi; i++)
        if (d_ref[i - off] != gr_complex(0))
            out[i - off] = s2[i] / d_ref[i - off];
}

pmt::pmt_t verdict_message(bool ok, int64_t frame_samples)
{
    pmt::pmt_t d = pmt::make_dict();
    d = pmt::dict_add(d, pmt::mp("ok"), pmt::from_bool(ok));
    if (ok)
        d = pmt::dict_add(d, pmt::mp("frame_samples"), pmt::from_long(frame_samples));
    return d;
}

std::string too_long_message(const header_outcome& o, const phy_layout& L)
{
    return "frame " + std::to_string(o.header.frame_index) + " of image " + std::to_string(o.header.image_id) +
           " dropped: " + std::to_string(o.frame_len) + " payload OFDM symbols, this receiver buffers at most " +
           std::to_string(L.max_payload_ofdm_symbols) +
           " (its payload_symbols_per_frame is smaller than the transmitter's)";
}

header_outcome decode_header_rows(std::vector<gr_complex>& Y, int n_rows, int off, double sc, const gr_complex* taps,
                                  const phy_layout& L)
{
    header_outcome o;
    const int N = L.fft_len;
    // the estimator's taps are already carrier-aligned; the symbols are not
    align(Y, n_rows, off, L);
    header_result r = estimate_from_header(Y.data(), n_rows, taps, L);
    if (!r.header) {
        o.why = r.why;
        return o;
    }
    const frame_header& h = *r.header;
    o.ok = true;
    o.header = h;
    o.frame_len = side_info_ofdm_symbols(h.side_info_len, L.n_data()) + (h.n_payload + L.n_data() - 1) / L.n_data();
    o.frame_samples = (int64_t)(2 + n_rows + o.frame_len) * (N + L.cp_len);
    if (o.frame_len > L.max_payload_ofdm_symbols) {
        o.too_long = true;
        return o;
    }
    const channel_state& s = r.state;
    const double cfo_sub = off + sc + s.phase_rate / (2 * M_PI) * N / (N + L.cp_len);
    pmt::pmt_t d = pmt::make_dict();
    auto add = [&](const char* k, const pmt::pmt_t& v) { d = pmt::dict_add(d, pmt::mp(k), v); };
    add("frame_len", pmt::from_long(o.frame_len));
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
    add("eq_cfo_hz", pmt::from_double(cfo_sub * L.subcarrier_spacing_hz));
    o.meta = d;
    return o;
}

namespace {
pmt::pmt_t need(const pmt::pmt_t& meta, const char* key)
{
    pmt::pmt_t v = pmt::dict_ref(meta, pmt::mp(key), pmt::PMT_NIL);
    if (pmt::is_null(v))
        throw std::invalid_argument(std::string("metadata has no '") + key + "'");
    return v;
}
} // namespace

pmt::pmt_t equalize_rows(const pmt::pmt_t& meta, std::vector<gr_complex>& Y, int n_rows, const phy_layout& L,
                         const std::vector<float>& signs, despreader& dsp)
{
    const int N = L.fft_len;
    channel_state st;
    size_t tl = 0;
    const gr_complex* tp = pmt::c32vector_elements(need(meta, "eq_taps"), tl);
    if ((int)tl != N)
        throw std::invalid_argument("eq_taps has " + std::to_string(tl) + " bins");
    st.taps.assign(tp, tp + N);
    st.noise_var = pmt::to_double(need(meta, "eq_noise"));
    align(Y, n_rows, (int)pmt::to_long(need(meta, "eq_carr_offset")), L);
    const int side_len = (int)pmt::to_long(pmt::dict_ref(meta, pmt::mp("h_side_info_len"), pmt::from_long(0)));
    const int n_side = side_info_ofdm_symbols(side_len, L.n_data());
    const int n_payload = (int)pmt::to_long(need(meta, "h_n_payload"));
    payload_result r = equalize_payload(Y.data(), n_rows, st, n_payload, L, n_side, signs, dsp);
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
        out = pmt::dict_add(out, pmt::mp("side_symbols"), pmt::init_c32vector(r.side_symbols.size(), r.side_symbols));
    return pmt::cons(out, pmt::init_c32vector(r.symbols.size(), r.symbols));
}

} // namespace testbedphy
} // namespace gr
