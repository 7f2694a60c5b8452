"""The loopback channel, light (no SCO, no multipath) and full (channel_model), on the same input;
pickles what each produced (run in a process of its own by test_loopback_channel.py).

    python tests/gr/channel_run.py OUT.pkl
"""
import pickle
import sys

import numpy as np
from gnuradio import blocks, gr

from testbed.gr.loopback_channel import loopback_channel
from testbed.phy.config import OfdmConfig

cfg = OfdmConfig()
out = {}


def run(x, change=None, **kw):
    tb = gr.top_block()
    src = blocks.vector_source_c(x.tolist(), False)
    ch = loopback_channel(cfg, **kw)
    snk = blocks.vector_sink_c()
    tb.connect(src, ch, snk)
    if change:
        change(ch)
    tb.run()
    return np.array(snk.data(), np.complex64), ch.light


zeros = np.zeros(200_000, np.complex64)
ones = np.ones(20_000, np.complex64)
for dyn in (False, True):
    out[("noise", dyn)] = run(zeros, snr_db=10.0, seed=3, dynamic=dyn)
    out[("cfo", dyn)] = run(ones, snr_db=300.0, cfo_hz=1000.0, dynamic=dyn)
    out[("delay", dyn)] = run(ones, snr_db=300.0, delay_samples=100, dynamic=dyn)
    # runtime changes, before the start: SNR and CFO
    out[("changed", dyn)] = run(ones, snr_db=300.0, dynamic=dyn,
                                change=lambda ch: (ch.set_snr_db(0.0), ch.set_cfo_hz(-2000.0)))
out["multipath_light"] = run(ones, snr_db=30.0, multipath="tdl-c")[1]
out["sco_light"] = run(ones, snr_db=30.0, sco_ppm=10.0)[1]
ch = loopback_channel(cfg, 10.0)
ch.set_sco_ppm(0.0)
try:
    ch.set_sco_ppm(5.0)
    out["sco_change"] = "accepted"
except RuntimeError as e:
    out["sco_change"] = str(e)
with open(sys.argv[1], "wb") as f:
    pickle.dump(out, f)
