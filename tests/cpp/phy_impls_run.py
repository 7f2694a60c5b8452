"""Runs the PHY's flowgraphs once with the Python blocks and once with the C++ blocks on the
same samples, and saves what each produced (run as a process of its own by test_phy_impls.py:
in-process flowgraphs keep shared-memory segments until the process ends).

    python tests/cpp/phy_impls_run.py OUT.pkl
"""
import pickle
import sys
import time

import numpy as np
import pmt
from gnuradio import blocks, gr

from testbed.gr import phy_link
from testbed.gr.ofdm_tx import ofdm_tx
from testbed.gr.sc_detector import sc_sync
from testbed.gr.cpp_blocks import module
from testbed.gr.pmtutil import pdu
from testbed.phy.config import OfdmConfig

cfg = OfdmConfig()
frames, stream, _ = phy_link.random_frames(6, cfg, seed=3)
out = {"stream": stream, "tx": {}, "rx": {}, "metric": {}}


def transmit(impl):
    """TX samples and burst tags, with a flush request after the 2nd burst."""
    tb = gr.top_block()
    tx = ofdm_tx(cfg, impl=impl)
    snk = blocks.vector_sink_c()
    tb.connect(tx, snk)
    tb.start()
    tx.post_flush(after=2, samples=1000)
    for f in frames:
        tx.post_frame(pdu({}, f))
    expect = sum((f.size // cfg.n_data + 2) * cfg.symbol_len + cfg.gap_samples for f in frames) + 1000
    t0 = time.monotonic()
    while len(snk.data()) < expect and time.monotonic() - t0 < 30:
        time.sleep(0.02)
    time.sleep(0.2)
    tb.stop()
    tb.wait()
    tags = sorted((t.offset, pmt.symbol_to_string(t.key)) for t in snk.tags())
    return np.array(snk.data(), np.complex64), tags


for impl in ("python", "cpp"):
    out["tx"][impl] = transmit(impl)

# the C++ transmitter drops what is not a frame, counts it, and goes on
tb = gr.top_block()
tx = ofdm_tx(cfg, impl="cpp")
snk = blocks.vector_sink_c()
tb.connect(tx, snk)
tb.start()
for bad in (pmt.intern("nonsense"), pmt.cons(pmt.make_dict(), pmt.init_f32vector(3, [1, 2, 3])),
            pdu({}, np.zeros(cfg.max_frame_symbols() + 1, np.complex64)), pdu({}, np.zeros(0, np.complex64))):
    tx.post_frame(bad)
tx.post_flush(after=0, samples=-5)
tx.post_frame(pdu({}, frames[0]))
t0 = time.monotonic()
while tx.bursts_sent() < 1 and time.monotonic() - t0 < 10:
    time.sleep(0.02)
time.sleep(0.2)
tb.stop()
tb.wait()
out["tx_bad"] = {"bad_frames": tx.mod.bad_frames(), "bad_flushes": tx.mod.bad_flushes(),
                 "bursts": tx.bursts_sent(), "samples": tx.samples_sent(),
                 "expect": (frames[0].size // cfg.n_data + 2) * cfg.symbol_len + cfg.gap_samples}
x = out["tx"]["python"][0]
sp = cfg.subcarrier_spacing_hz
cases = {"awgn15": dict(snr_db=15.0), "awgn3": dict(snr_db=3.0), "cfo": dict(snr_db=12.0, cfo_hz=1.5 * sp),
         "delay_sco": dict(snr_db=15.0, delay_samples=1234, sco_ppm=20.0),
         "tdl-c": dict(snr_db=15.0, multipath="tdl-c", seed=5)}
for name, kw in cases.items():
    for impl in ("python", "cpp"):
        import os
        os.environ["TESTBED_PHY_IMPL"] = impl
        r = phy_link.receive(x, cfg, idle=0.5, **kw)
        out["rx"][(name, impl)] = (r.frames, r.counters)

# the S&C metric: in-tree chain against the C++ block, same noisy samples
rng = np.random.default_rng(0)
noisy = (x + 0.01 * (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size))).astype(np.complex64)
for impl in ("python", "cpp", "cpp_lazy"):
    tb = gr.top_block()
    src = blocks.vector_source_c(noisy.tolist(), False)
    if impl == "cpp_lazy":   # phases only where a detector reads them, over many short calls
        sync = module().sc_metric(cfg.fft_len, cfg.sync_threshold)
        sync.set_max_noutput_items(777)
    else:
        sync = sc_sync(cfg.fft_len) if impl == "python" else module().sc_metric(cfg.fft_len)
    m, a = blocks.vector_sink_f(), blocks.vector_sink_f()
    tb.connect(src, sync)
    tb.connect((sync, 0), m)
    tb.connect((sync, 1), a)
    tb.run()
    out["metric"][impl] = (np.array(m.data(), np.float32), np.array(a.data(), np.float32))

with open(sys.argv[1], "wb") as f:
    pickle.dump(out, f)
