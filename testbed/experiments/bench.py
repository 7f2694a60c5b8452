"""``testbed bench codec``: onnxruntime encode/decode latency of a model on one image size."""
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
