"""Runs the real-time pacer and the radio-loss monitor (gr-testbedphy ``realtime_pacer``,
``rx_monitor``) in small flowgraphs and saves their counts (a process of its own, run by
test_air.py: in-process flowgraphs keep shared-memory segments until the process ends).

    python tests/cpp/air_run.py OUT.pkl
"""
import pickle
import sys
import time

import numpy as np
import pmt
from gnuradio import blocks, gr

from testbed.gr import phy_link
from testbed.gr.cpp_blocks import module
from testbed.gr.ofdm_tx import ofdm_tx
from testbed.gr.pmtutil import pdu
from testbed.phy.config import OfdmConfig

cfg = OfdmConfig()
frames, _, _ = phy_link.random_frames(6, cfg, seed=3)
RATE = 1e6
out = {}


class slow_sink(gr.sync_block):
    """A receiver that cannot keep up: at most 2000 samples per 20 ms (0.1 MS/s)."""

    def __init__(self):
        gr.sync_block.__init__(self, name="slow_sink", in_sig=[np.complex64], out_sig=None)
        self.n = 0

    def work(self, input_items, output_items):
        time.sleep(0.02)
        n = min(len(input_items[0]), 2000)
        self.n += n
        return n


def counts(p) -> dict:
    return {"air": p.air_samples(), "dropped": p.dropped(), "dropped_tx": p.dropped_tx(),
            "underflow": p.underflow(), "idle": p.idle(), "overflows": p.overflow_events(),
            "underflows": p.underflow_events(),
            "events": [(e.overflow, e.air_offset, e.samples, list(e.frames)) for e in p.events()]}


def paced(sink, seconds: float, buffer: int) -> tuple[dict, int, float]:
    """ofdm_tx (6 frames of image 7) -> pacer -> sink for ``seconds``."""
    tb = gr.top_block()
    tx = ofdm_tx(cfg, impl="cpp")
    p = module().realtime_pacer(RATE, chunk=1000)
    p.set_min_output_buffer(buffer)
    tx.shaper.set_min_output_buffer(1 << 18)
    tb.connect(tx, p, sink)
    for i, f in enumerate(frames):
        tx.post_frame(pdu({"image_id": 7, "frame_index": i}, f))
    t0 = time.monotonic()
    tb.start()
    time.sleep(seconds)
    tb.stop()
    tb.wait()
    wall = time.monotonic() - t0
    return counts(p), int(p.nitems_written(0)), wall


# a receiver that keeps up: nothing dropped, the frames and then idle air
fast = blocks.null_sink(gr.sizeof_gr_complex)
out["fast"] = paced(fast, 0.6, 1 << 18) + (int(sum((f.size // cfg.n_data + 2) * cfg.symbol_len + cfg.gap_samples
                                                   for f in frames)),)
# one that cannot: samples dropped, attributed to image 7's frames
out["slow"] = paced(slow_sink(), 0.6, 8192)

# a transmitter that stops inside a burst: the pacer fills with zeros and counts an underflow
tb = gr.top_block()
tags = [gr.tag_utils.python_to_tag((0, pmt.intern("tx_sob"), pmt.PMT_T)),
        gr.tag_utils.python_to_tag((0, pmt.intern("tx_frame"), pmt.to_pmt({"image_id": 3, "frame_index": 5})))]
src = blocks.vector_source_c([1 + 0j] * 500, False, 1, tags)
p = module().realtime_pacer(RATE, chunk=1000)
snk = blocks.vector_sink_c()
p.set_min_output_buffer(1 << 18)   # a receiver that keeps up, even on a busy machine
tb.connect(src, p, snk)
tb.start()
time.sleep(0.3)
tb.stop()
tb.wait()
out["underflow"] = (counts(p), np.array(snk.data()[:2000], np.complex64))


def monitored(tags, n: int, rate: float, throttle: float | None, slack: int, seconds: float | None = None):
    tb = gr.top_block()
    src = blocks.vector_source_c([0j] * n, throttle is not None and seconds is not None, 1, tags)
    m = module().rx_monitor(rate, slack)
    if throttle is None:
        tb.connect(src, m)
        tb.run()
    else:
        thr = blocks.throttle(gr.sizeof_gr_complex, throttle)
        tb.connect(src, thr, m)
        tb.start()
        time.sleep(seconds)
        tb.stop()
        tb.wait()
    return {"samples": m.samples(), "exact": m.lost_exact(), "estimate": m.lost_estimate(),
            "time_tags": m.time_tags(), "gaps": [(g.offset, g.samples, g.exact, g.monotonic_s) for g in m.gaps()]}


def rx_time(offset: int, secs: int, frac: float):
    return gr.tag_utils.python_to_tag((offset, pmt.intern("rx_time"),
                                       pmt.make_tuple(pmt.from_uint64(secs), pmt.from_double(frac))))


# UHD: 1 MS/s; at sample 10 000 the radio time says 10 000 + 2 500 samples went by: 2 500 lost
t_before = time.monotonic()
out["rx_time"] = monitored([rx_time(0, 100, 0.0), rx_time(4000, 100, 0.004), rx_time(10_000, 100, 0.0125)],
                           20_000, 1e6, None, 0)
out["rx_time"]["t_before"], out["rx_time"]["t_after"] = t_before, time.monotonic()
# no rx_time: a source delivering 100 kS/s to a monitor told 1 MS/s falls short (estimated loss);
# one delivering the rate it announces does not
out["clock_short"] = monitored([], 10_000_000, 1e6, 1e5, 20_000, seconds=0.5)
out["clock_ok"] = monitored([], 10_000_000, 2e5, 2e5, 100_000, seconds=0.5)

with open(sys.argv[1], "wb") as f:
    pickle.dump(out, f)
