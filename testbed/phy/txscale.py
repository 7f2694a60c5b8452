"""Transmit scaling with back-off and magnitude clipping (PAPR control)."""
from __future__ import annotations

import numpy as np


def scale_and_clip(x: np.ndarray, gain: float, clip: float) -> tuple[np.ndarray, int]:
    """``gain * x`` with magnitudes limited to ``clip`` (phase kept); returns (y, n_clipped)."""
    y = np.asarray(x, np.complex64) * np.float32(gain)
    mag = np.abs(y)
    over = mag > clip
    n = int(over.sum())
    if n:
        y[over] *= (clip / mag[over]).astype(np.float32)
    return y, n
