"""Image quality metrics on 8-bit RGB arrays: PSNR and MS-SSIM."""
from __future__ import annotations

import math

import numpy as np

MSSSIM_MIN_SIDE = 161  # 5 scales with an 11-tap window need (11 - 1) * 2**4 < min side


def psnr(ref: np.ndarray, test: np.ndarray, peak: float = 255.0) -> float:
    if ref.shape != test.shape:
        raise ValueError(f"shape mismatch: {ref.shape} vs {test.shape}")
    mse = np.mean((ref.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def psnr_from_mse(mse: float) -> float:
    """PSNR (dB) of a mean squared error of pixels in [0, 1] (floored at 1e-12: no infinity)."""
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def ms_ssim(ref: np.ndarray, test: np.ndarray) -> float:
    """MS-SSIM (5 scales, Wang et al. 2003) via pytorch_msssim; NaN for images too small for it."""
    import torch  # only here: the GNU Radio blocks use psnr() without loading torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(ref.shape[:2]) < MSSSIM_MIN_SIDE:
        return float("nan")
    a = torch.from_numpy(np.ascontiguousarray(ref)).permute(2, 0, 1)[None].float()
    b = torch.from_numpy(np.ascontiguousarray(test)).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        return float(_ms_ssim(a, b, data_range=255.0, size_average=True))


def finite_mean(vals) -> float | None:
    """Mean of the finite numbers among ``vals`` (None, "" and NaN/inf skipped); None if none."""
    v = [float(x) for x in vals if x is not None and x != "" and math.isfinite(float(x))]
    return float(np.mean(v)) if v else None
