"""Measured-distortion rate allocation (the ``measured`` rate map, TX analysis by synthesis).

The entropy model's rate-preset map (:func:`testbed.akb.ratemap.preset_levels`) uses the entropy
of a block as a proxy for what more symbols would buy there. The transmitter can instead measure
it: it holds the decoder, so it decodes the image once per rate level with every block at that
level, through a simulated channel at the operating SNR, and records each block's squared error
(:meth:`testbed.akb.runtime.AkbCodec.block_distortion`). The rate map is then the Lagrangian
optimum over those measurements within the symbol budget (:func:`lagrangian_levels`):

    minimise  sum_b D_b(level_b) + lambda * sum_b symbols_b(level_b)

with ``lambda`` the smallest one whose map fits the budget. Blocks are treated as independent (the
decoder's receptive field couples neighbours a little), and the measurement is one noise draw.
The cost is one decoder pass per rate level at the transmitter.
"""
from __future__ import annotations

import numpy as np

from . import ratemap as rm


def block_sse(error: np.ndarray, hb: int, wb: int) -> np.ndarray:
    """Squared error per pixel [H, W] (summed over colour) -> sum per rate block [hb, wb]."""
    e = np.asarray(error, dtype=np.float64)
    b = rm.BLOCK_LOCATIONS * rm.STRIDE
    pad = np.zeros((hb * b, wb * b))
    pad[: e.shape[0], : e.shape[1]] = e
    return pad.reshape(hb, b, wb, b).sum(axis=(1, 3))


def lagrangian_levels(sse: np.ndarray, target_cbr: float, height: int, width: int, iters: int = 60) -> np.ndarray:
    """Levels [hb, wb] from the squared error of every block at every level, ``sse`` [hb, wb, L],
    that minimise the total error within ``target_cbr`` (side information included).

    When even the lowest rates exceed the budget, the lowest map is returned (as
    :func:`~testbed.akb.ratemap.preset_levels` does; the caller warns)."""
    sse = np.asarray(sse, dtype=np.float64)
    hb, wb = rm.block_grid(height, width)
    if sse.shape != (hb, wb, len(rm.RATE_SET)):
        raise ValueError(f"block distortion has shape {sse.shape}; a {width}x{height} image needs "
                         f"{(hb, wb, len(rm.RATE_SET))}")
    if not np.all(np.isfinite(sse)):
        raise ValueError("block distortion holds non-finite values")
    h, w = rm.location_grid(height, width)
    cost = np.asarray(rm.RATE_SET, dtype=np.float64)[None, None, :] * rm.block_weights(h, w)[..., None]
    budget = target_cbr * height * width * 3 - rm.side_info_symbols(hb, wb)

    def pick(lam: float) -> np.ndarray:
        # ties go to the lower level (argmin takes the first)
        return np.argmin(sse + lam * cost, axis=-1).astype(np.int64)

    def fits(lv: np.ndarray) -> bool:
        return rm.n_symbols(lv, h, w) <= budget

    if fits(pick(0.0)):
        return pick(0.0)
    lowest = np.zeros((hb, wb), np.int64)
    if not fits(lowest):
        return lowest
    hi = max(float(sse.max()), 1.0)
    while not fits(pick(hi)):
        hi *= 2.0
        if hi > 1e300:   # only the lowest map fits
            return lowest
    lo = 0.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if fits(pick(mid)):
            hi = mid
        else:
            lo = mid
    return pick(hi)
