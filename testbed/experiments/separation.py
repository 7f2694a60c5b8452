"""Separate source-channel coding reference: JPEG and JPEG 2000 at the capacity bit budget.

An ideal (capacity-achieving, infinite-block-length) channel code over an AWGN channel with
Es/N0 = SNR delivers ``log2(1 + SNR)`` bits per complex channel symbol. A JSCC image with channel
bandwidth ratio CBR uses ``CBR * H * W * 3`` complex symbols, so a separated system may spend

    bits per pixel = 3 * CBR * log2(1 + SNR)            (SNR linear)

on the source code. We encode with JPEG (libjpeg via Pillow) and JPEG 2000 (OpenJPEG via Pillow)
at the largest quality whose file fits that budget, and report the PSNR. This is an upper bound
for any real separated scheme at that SNR (real codes need margin and fail with a cliff below it).
When even the coarsest setting does not fit, the reference is recorded as unachievable (None).
"""
from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np
from PIL import Image

from ..core.metrics import psnr


def capacity_bpp(cbr: float, snr_db: float) -> float:
    return 3.0 * cbr * math.log2(1.0 + 10.0 ** (snr_db / 10.0))


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def jpeg_at_budget(img: np.ndarray, max_bytes: int) -> tuple[float | None, float]:
    """Best JPEG (quality 1..95) within ``max_bytes``: returns (PSNR or None, bits per pixel used)."""
    pil = Image.fromarray(img)

    @lru_cache(maxsize=None)
    def enc(q: int) -> bytes:
        b = io.BytesIO()
        pil.save(b, "JPEG", quality=q, optimize=True)
        return b.getvalue()

    lo, hi, best = 1, 95, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if len(enc(mid)) <= max_bytes:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    if best is None:
        return None, 8.0 * len(enc(1)) / (img.shape[0] * img.shape[1])
    data = enc(best)
    return psnr(img, _decode(data)), 8.0 * len(data) / (img.shape[0] * img.shape[1])


def jpeg2000_at_budget(img: np.ndarray, max_bytes: int) -> tuple[float | None, float]:
    """JPEG 2000 (OpenJPEG rate control) within ``max_bytes``: (PSNR or None, bpp used)."""
    pil = Image.fromarray(img)
    raw_bytes = img.size  # 8 bits per sample
    target = max_bytes
    for _ in range(6):
        ratio = raw_bytes / max(target, 1)
        b = io.BytesIO()
        pil.save(b, "JPEG2000", quality_mode="rates", quality_layers=[ratio], irreversible=True, mct=1,
                 num_resolutions=6)
        data = b.getvalue()
        if len(data) <= max_bytes:
            return psnr(img, _decode(data)), 8.0 * len(data) / (img.shape[0] * img.shape[1])
        target = int(target * max_bytes / len(data) * 0.98)
        if target < 64:
            break
    return None, 8.0 * len(data) / (img.shape[0] * img.shape[1])


def separation_reference(img: np.ndarray, cbr: float, snr_db: float) -> dict:
    bpp = capacity_bpp(cbr, snr_db)
    max_bytes = int(math.floor(bpp * img.shape[0] * img.shape[1] / 8.0))
    jp, jp_bpp = jpeg_at_budget(img, max_bytes)
    j2, j2_bpp = jpeg2000_at_budget(img, max_bytes)
    return {"capacity_bpp": bpp, "jpeg_psnr_db": jp, "jpeg_bpp": jp_bpp,
            "jpeg2000_psnr_db": j2, "jpeg2000_bpp": j2_bpp}
