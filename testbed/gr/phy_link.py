"""Run the OFDM PHY on its own: frames -> ofdm_tx -> (numpy edits) -> loopback_channel ->
ofdm_rx, for tests, benchmarks and impairment studies.

Two stages keep it deterministic: the transmitter's samples are produced first, can be edited
in numpy (drop or truncate bursts, insert garbage), then fed through the channel and receiver.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import pmt
from gnuradio import blocks, gr

from ..core.cputime import Sampler, Snapshot, usage
from ..phy import framing
from ..phy.config import OfdmConfig
from .loopback_channel import loopback_channel
from .ofdm_rx import ofdm_rx
from .ofdm_tx import ofdm_tx
from .pmtutil import pdu, split_pdu


class _collector(gr.basic_block):
    def __init__(self):
        gr.basic_block.__init__(self, name="collector", in_sig=None, out_sig=None)
        self.got: list[tuple[dict, np.ndarray]] = []
        self.last = time.monotonic()
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self._handle)

    def _handle(self, msg):
        self.got.append(split_pdu(msg))
        self.last = time.monotonic()


def transmit(frames: list[np.ndarray], cfg: OfdmConfig, timeout: float = 30.0) -> tuple[np.ndarray, list[int]]:
    """Allocator symbols of each frame -> TX samples, and the start index of each burst."""
    tb = gr.top_block("phy_tx")
    tx = ofdm_tx(cfg)
    snk = blocks.vector_sink_c()
    tb.connect(tx, snk)
    tb.start()
    try:
        expect = 0
        for f in frames:
            n_sym = f.size // cfg.n_data + 2
            expect += n_sym * cfg.symbol_len + cfg.gap_samples
            tx.post_frame(pdu({}, f))
        t0 = time.monotonic()
        while len(snk.data()) < expect and time.monotonic() - t0 < timeout:
            time.sleep(0.02)
    finally:
        tb.stop()
        tb.wait()
    x = np.array(snk.data(), np.complex64)
    starts = sorted(t.offset for t in snk.tags() if pmt.symbol_to_string(t.key) == "tx_sob")
    return x, starts


@dataclass
class LinkResult:
    frames: list[tuple[dict, np.ndarray]]
    counters: dict


def receive(x: np.ndarray, cfg: OfdmConfig, *, snr_db: float, cfo_hz: float = 0.0, sco_ppm: float = 0.0,
            delay_samples: int = 0, multipath: str = "none", seed: int = 0, idle: float = 1.0,
            timeout: float = 60.0) -> LinkResult:
    """Samples -> loopback channel -> receiver; returns the equalised frames (metadata, symbols)."""
    tb = gr.top_block("phy_rx")
    tail = np.zeros(4 * cfg.symbol_len + cfg.gap_samples, np.complex64)
    src = blocks.vector_source_c(np.concatenate([x, tail]).tolist(), False)
    chan = loopback_channel(cfg, snr_db, cfo_hz=cfo_hz, sco_ppm=sco_ppm, delay_samples=delay_samples,
                            multipath=multipath, seed=seed)
    rx = ofdm_rx(cfg)
    col = _collector()
    tb.connect(src, chan, rx)
    tb.msg_connect(rx, "frames", col, "in")
    t0 = time.monotonic()
    cpu0, sampler = Snapshot(), Sampler()
    tb.start()
    try:
        # wait until the receiver has read every sample (not just the source written them), then
        # for the messages in flight: no new frame for `idle` seconds
        total = x.size + tail.size + delay_samples
        consumed_at = None
        while time.monotonic() - t0 < timeout:
            time.sleep(0.05)
            sampler.sample()            # the blocks' threads end when the source is done
            if consumed_at is None and rx.samples_read() >= total - 64:
                consumed_at = time.monotonic()
            if consumed_at is not None and time.monotonic() - max(col.last, consumed_at) > idle:
                break
        cpu = usage(cpu0, sampler.snapshot(), top=30)
    finally:
        tb.stop()
        tb.wait()
    return LinkResult(frames=col.got, counters={**rx.counters(), "wall_s": time.monotonic() - t0, **cpu})


def random_frames(n_frames: int, cfg: OfdmConfig, seed: int = 0, image_id: int = 1):
    """Frames of unit-power Gaussian analog symbols; returns (allocator symbols per frame, stream, frames)."""
    rng = np.random.default_rng(seed)
    n = n_frames * cfg.payload_symbols_per_frame
    stream = ((rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2)).astype(np.complex64)
    # an image geometry that holds n symbols (the PHY does not care what they are)
    w = 16 * 40
    k = 1
    h = 16 * -(-n // 40)
    while h > 65535:
        k += 1
        h = 16 * -(-n // (40 * k))
    stream = np.concatenate([stream, np.zeros(k * (h // 16) * 40 - n, np.complex64)])
    frames = framing.make_frames(stream, image_id=image_id, height=h, width=w, symbols_per_location=k,
                                 model_sha256="0" * 64, cfg=cfg)
    return [framing.frame_symbols(fh, p, cfg) for fh, p in frames], stream, frames


def symbol_snr_db(result: LinkResult, stream: np.ndarray) -> list[float]:
    """Measured SNR of each received frame's symbols against what was sent."""
    out = []
    for meta, sym in result.frames:
        idx = np.arange(int(meta["h_payload_offset"]), stream.size, int(meta["h_frame_count"]))
        ref = stream[idx[framing.frame_permutation(idx.size)]]
        out.append(float(10 * np.log10(np.mean(np.abs(ref) ** 2) / np.mean(np.abs(sym - ref) ** 2))))
    return out


class _counter(gr.basic_block):
    """Counts frames (without converting them: the benchmark measures the PHY, not PMT to numpy)."""

    def __init__(self, target: int):
        gr.basic_block.__init__(self, name="frame_counter", in_sig=None, out_sig=None)
        self.n = 0
        self.target = target
        self.done = threading.Event()   # set at the target count: no polling thread competes for the cores
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self._handle)

    def _handle(self, msg):
        self.n += 1
        if self.n >= self.target:
            self.done.set()


def throughput(frames: list[np.ndarray], cfg: OfdmConfig, *, snr_db: float = 15.0, impl: str = "auto",
               timeout: float = 300.0) -> dict:
    """TX -> loopback channel -> RX in one running flowgraph, frames back to back: samples per
    second of wall time from the first frame handed to the transmitter to the last one out of the
    receiver (flowgraph start excluded)."""
    tb = gr.top_block("phy_throughput")
    tx = ofdm_tx(cfg, impl=impl)
    chan = loopback_channel(cfg, snr_db)
    rx = ofdm_rx(cfg, impl=impl)
    cnt = _counter(len(frames))
    tb.connect(tx, chan, rx)
    tb.msg_connect(rx, "frames", cnt, "in")
    msgs = [pdu({}, f) for f in frames]
    tb.start()
    try:
        time.sleep(0.2)
        cpu0 = Snapshot()
        t0 = time.monotonic()
        for m in msgs:
            tx.post_frame(m)
        tx.post_flush(after=len(frames), samples=cfg.flush_samples())
        cnt.done.wait(timeout)
        wall = time.monotonic() - t0
        samples = tx.samples_sent()
        cpu = usage(cpu0, top=30)
    finally:
        tb.stop()
        tb.wait()
    return {"impl": rx.impl, "frames_sent": len(frames), "frames_received": cnt.n, "samples": samples,
            "wall_s": wall, "msps": samples / wall / 1e6, "counters": rx.counters(), **cpu}
