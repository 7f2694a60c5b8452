"""``testbed bench codec``: onnxruntime encode/decode latency of a model on one image size.
``testbed bench phy``: samples per second of the OFDM PHY alone (TX -> loopback channel -> RX)."""
from __future__ import annotations

import os
import platform
import time

import numpy as np



def bench_codec(model: str, height: int = 512, width: int = 768, repeat: int = 20, warmup: int = 3,
                threads: int = 0, cbr: float | None = None, image: np.ndarray | None = None) -> dict:
    """Median/p90/min encode and decode time of a codec v1 or AKB model (full graphs, 10 dB)."""
    from ..core.codecs import rate_for
    from ..zoo import open_codec

    if repeat < 1:
        raise ValueError(f"--repeat: must be >= 1, got {repeat}")
    if image is None and (height < 1 or width < 1):
        raise ValueError(f"--size: width and height must be >= 1, got {width}x{height}")
    codec = open_codec(model, threads=threads)
    rate = rate_for(codec, cbr)

    def encode(img):
        return codec.encode(img, 10.0, rate)

    def decode(enc, h, w):
        return codec.decode(enc.symbols, 10.0, h, w, side=enc.side)
    if image is None:
        image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    height, width = image.shape[:2]
    enc, dec = [], []
    for i in range(warmup + repeat):
        t0 = time.perf_counter()
        s = encode(image)
        t1 = time.perf_counter()
        decode(s, height, width)
        t2 = time.perf_counter()
        if i >= warmup:
            enc.append((t1 - t0) * 1e3)
            dec.append((t2 - t1) * 1e3)

    def stats(v):
        return {"median_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90)),
                "min_ms": float(np.min(v))}

    return {
        "model": codec.name, "model_sha256": codec.sha256, "height": height, "width": width,
        "symbols_per_location": rate.symbols_per_location or None, "cbr": round(rate.cbr, 6), "repeat": repeat,
        "intra_op_threads": threads or os.cpu_count(),
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "encode": stats(enc), "decode": stats(dec),
    }


def bench_phy(frames: int = 150, repeat: int = 3, snr_db: float = 15.0, impl: str = "auto",
              progress=None) -> dict:
    """The PHY alone, frames back to back through TX -> loopback channel (AWGN) -> RX in one
    running flowgraph, ``repeat`` times: million samples per second of wall time (median, min,
    max), frames lost, CPU seconds per thread of the median run."""
    from ..gr import phy_link
    from ..gr.cpp_blocks import resolve_impl
    from ..phy.config import OfdmConfig

    impl = resolve_impl(impl)
    cfg = OfdmConfig()
    sent, _, _ = phy_link.random_frames(frames, cfg, seed=2)
    runs = []
    for i in range(repeat):
        r = phy_link.throughput(sent, cfg, snr_db=snr_db, impl=impl)
        runs.append({"msps": r["msps"], "wall_s": r["wall_s"], "samples": r["samples"],
                     "frames_sent": r["frames_sent"], "frames_received": r["frames_received"],
                     "cpu_s": r["cpu_s"], "cpu_by_thread": r["cpu_by_thread"]})
        if progress:
            progress(i + 1, runs[-1])
    order = sorted(range(repeat), key=lambda i: runs[i]["msps"])
    median = runs[order[repeat // 2]]
    return {
        "what": "phy", "impl": impl, "frames": len(sent), "repeat": repeat, "snr_db": snr_db,
        "samp_per_frame": runs[0]["samples"] // max(len(sent), 1), "fft_len": cfg.fft_len, "cp_len": cfg.cp_len,
        "msps": median["msps"], "msps_min": runs[order[0]]["msps"], "msps_max": runs[order[-1]]["msps"],
        "frames_lost": sum(r["frames_sent"] - r["frames_received"] for r in runs),
        "cpu_s": median["cpu_s"], "cpu_by_thread": median["cpu_by_thread"],
        "runs": [{k: v for k, v in r.items() if k != "cpu_by_thread"} for r in runs],
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
    }
