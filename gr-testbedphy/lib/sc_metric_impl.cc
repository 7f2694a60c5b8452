#include "ofdm_math.h"
#include <gnuradio/io_signature.h>
#include <gnuradio/testbedphy/sc_metric.h>
#include <volk/volk_alloc.hh>
#include <volk/volk.h>
#include <algorithm>
#include <cmath>
#include <complex>
#include <stdexcept>

namespace gr {
namespace testbedphy {


class sc_metric_impl : public sc_metric
{
    const int d_n, d_h;
    std::complex<double> d_corr{ 0.0 };  // running sum of x(n) conj(x(n-h)) over h samples
    double d_pow = 0.0;                   // running sum of |x(n)|^2 over n samples
    int d_nonzero = 0;
    const float d_angle_thr;
    int d_cover = 0;                      // samples still owed an angle after the last above-threshold one
    volk::vector<gr_complex> d_p;         // P(n) of this call, for the vectorised arg

public:
    sc_metric_impl(int fft_len, float angle_threshold)
        : gr::sync_block("sc_metric",
                         gr::io_signature::make(1, 1, sizeof(gr_complex)),
                         gr::io_signature::make(2, 2, sizeof(float))),
          d_n(fft_len),
          d_h(fft_len / 2),
          d_angle_thr(angle_threshold)
    {
        if (!(angle_threshold >= 0))
            throw std::invalid_argument("sc_metric: angle_threshold must be >= 0");
        if (fft_len < 4 || fft_len % 2)
            throw std::invalid_argument("sc_metric: fft_len=" + std::to_string(fft_len) + " must be even and >= 4");
        // x(n-N) .. x(n): history of N+1 samples (zeros before the stream, like the FIR chain)
        set_history(fft_len + 1);
    }

    /* arg(P) over the runs of samples at or above the threshold and fft_len samples after each */
    void angles_where_needed(const float* metric, float* phase, int n)
    {
        int i = 0;
        while (i < n) {
            if (d_cover == 0 && !(metric[i] >= d_angle_thr)) {
                phase[i++] = 0.0f;
                continue;
            }
            int j = i;
            for (; j < n; j++) {
                if (metric[j] >= d_angle_thr)
                    d_cover = d_n;
                else if (d_cover > 0)
                    d_cover--;
                else
                    break;
            }
            fast_atan2(d_p.data() + i, phase + i, j - i);
            i = j;
        }
    }

    int work(int noutput_items, gr_vector_const_void_star& input_items, gr_vector_void_star& output_items) override
    {
        const gr_complex* x = static_cast<const gr_complex*>(input_items[0]) + d_n;   // x[i] is sample n
        float* metric = static_cast<float*>(output_items[0]);
        float* phase = static_cast<float*>(output_items[1]);
        const int h = d_h, N = d_n;
        std::complex<double> corr = d_corr;
        double pw = d_pow;
        int nz = d_nonzero;
        if ((int)d_p.size() < noutput_items)
            d_p.resize(noutput_items);
        for (int i = 0; i < noutput_items; i++) {
            const std::complex<double> a(x[i]), b(x[i - h]), c(x[i - N]);
            corr += a * std::conj(b) - b * std::conj(c);
            pw += std::norm(a) - std::norm(c);
            nz += (x[i] != gr_complex(0)) - (x[i - N] != gr_complex(0));
            if (nz == 0) {   // an all-zero window gives 0/0 like the FIR chain, without rounding residue
                corr = 0.0;
                pw = 0.0;
            }
            const std::complex<float> cf(corr);
            const float r = 0.5f * (float)pw;
            metric[i] = std::norm(cf) / (r * r);
            d_p[i] = cf;
        }
        if (d_angle_thr <= 0)
            fast_atan2(d_p.data(), phase, noutput_items);
        else
            angles_where_needed(metric, phase, noutput_items);
        // re-anchor the running sums on exact sums now and then (no drift over long runs)
        if (((nitems_written(0) + noutput_items) >> 16) != (nitems_written(0) >> 16)) {
            corr = 0.0;
            pw = 0.0;
            for (int j = 0; j < h; j++)
                corr += std::complex<double>(x[noutput_items - 1 - j]) * std::conj(std::complex<double>(x[noutput_items - 1 - j - h]));
            for (int j = 0; j < N; j++)
                pw += std::norm(std::complex<double>(x[noutput_items - 1 - j]));
        }
        d_corr = corr;
        d_pow = pw;
        d_nonzero = nz;
        return noutput_items;
    }
};

sc_metric::sptr sc_metric::make(int fft_len, float angle_threshold)
{
    return gnuradio::make_block_sptr<sc_metric_impl>(fft_len, angle_threshold);
}

} // namespace testbedphy
} // namespace gr
