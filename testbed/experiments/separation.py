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

import math

import numpy as np

from ..core.metrics import psnr
from ..digital import source
from ..digital.source import decode_prefix, smallest


def capacity_bpp(cbr: float, snr_db: float) -> float:
    return 3.0 * cbr * math.log2(1.0 + 10.0 ** (snr_db / 10.0))


def _result(img: np.ndarray, data: bytes | None, source: str) -> tuple[float | None, float]:
    pixels = img.shape[0] * img.shape[1]
    if data is None:
        return None, 8.0 * smallest(source, img) / pixels
    return psnr(img, decode_prefix(source, data, len(data), img.shape[0], img.shape[1])[0]), 8.0 * len(data) / pixels


def jpeg_at_budget(img: np.ndarray, max_bytes: int) -> tuple[float | None, float]:
    """Best JPEG (quality 1..95) within ``max_bytes``: returns (PSNR or None, bits per pixel used)."""
    return _result(img, source.jpeg_at_budget(img, max_bytes), "jpeg")


def jpeg2000_at_budget(img: np.ndarray, max_bytes: int) -> tuple[float | None, float]:
    """JPEG 2000 (OpenJPEG rate control, one quality layer) within ``max_bytes``: (PSNR or None, bpp used)."""
    return _result(img, source.jpeg2000_at_budget(img, max_bytes, layers=1), "jpeg2000")


def separation_reference(img: np.ndarray, cbr: float, snr_db: float) -> dict:
    bpp = capacity_bpp(cbr, snr_db)
    max_bytes = int(math.floor(bpp * img.shape[0] * img.shape[1] / 8.0))
    jp, jp_bpp = jpeg_at_budget(img, max_bytes)
    j2, j2_bpp = jpeg2000_at_budget(img, max_bytes)
    return {"capacity_bpp": bpp, "jpeg_psnr_db": jp, "jpeg_bpp": jp_bpp,
            "jpeg2000_psnr_db": j2, "jpeg2000_bpp": j2_bpp}
