"""Measured-distortion rate allocation (the ``measured`` rate map, TX analysis by synthesis).

The entropy model's rate-preset map (:func:`testbed.akb.ratemap.preset_levels`) uses the entropy
of a block as a proxy for what more symbols would buy there. The transmitter can instead measure
it: it holds the decoder, so it decodes the image once per rate level with every block at that
level, through a simulated channel at the operating SNR, and records each block's squared error
(:meth:`testbed.akb.runtime.AkbCodec.block_distortion`). The rate map is then the one that
minimises the total of those errors within the symbol budget (:func:`optimal_levels`):

    minimise  sum_b D_b(level_b)  subject to  sum_b symbols_b(level_b) <= budget

Blocks are treated as independent (the decoder's receptive field couples neighbours a little),
and the measurement is one noise draw. The cost is one decoder pass per rate level at the
transmitter.
"""
from __future__ import annotations

import numpy as np

from . import ratemap as rm

ALLOCATIONS = ("entropy", "measured")   # where an AKB codec's rate map comes from


def block_sse(error: np.ndarray, hb: int, wb: int) -> np.ndarray:
    """Squared error per pixel [H, W] (summed over colour) -> sum per rate block [hb, wb]."""
    e = np.asarray(error, dtype=np.float64)
    b = rm.BLOCK_LOCATIONS * rm.STRIDE
    pad = np.zeros((hb * b, wb * b))
    pad[: e.shape[0], : e.shape[1]] = e
    return pad.reshape(hb, b, wb, b).sum(axis=(1, 3))


def optimal_levels(sse: np.ndarray, target_cbr: float, height: int, width: int) -> np.ndarray:
    """Levels [hb, wb] that minimise the total squared error within ``target_cbr`` (side
    information included), from the squared error of every block at every level, ``sse``
    [hb, wb, L].

    Exact for independent blocks: a multiple-choice knapsack solved by dynamic programming over
    the budget in units of one block at the lowest rate (``RATE_SET[0]`` symbols on each of its
    16 locations). Edge blocks hold fewer locations; their cost is rounded up to whole units, so
    the map never exceeds the budget. When even the lowest rates exceed it, the lowest map is
    returned (as :func:`~testbed.akb.ratemap.preset_levels` does; the caller warns)."""
    sse = np.asarray(sse, dtype=np.float64)
    hb, wb = rm.block_grid(height, width)
    n_lv = len(rm.RATE_SET)
    if sse.shape != (hb, wb, n_lv):
        raise ValueError(f"block distortion has shape {sse.shape}; a {width}x{height} image needs "
                         f"{(hb, wb, n_lv)}")
    if not np.all(np.isfinite(sse)):
        raise ValueError("block distortion holds non-finite values")
    h, w = rm.location_grid(height, width)
    budget = target_cbr * height * width * 3 - rm.side_info_symbols(hb, wb)
    lowest = np.zeros((hb, wb), np.int64)
    if rm.n_symbols(lowest, h, w) > budget:
        return lowest
    unit = rm.RATE_SET[0] * rm.BLOCK_LOCATIONS ** 2
    cost = -(-(np.asarray(rm.RATE_SET)[None, :] * rm.block_weights(h, w).reshape(-1, 1)) // unit)  # [nb, L]
    n_units = int(budget // unit)
    d = sse.reshape(-1, n_lv)
    dp = np.full(n_units + 1, np.inf)      # dp[c]: least error of the blocks so far at cost exactly c
    dp[0] = 0.0
    choice = np.zeros((d.shape[0], n_units + 1), np.int8)
    for b in range(d.shape[0]):
        new = np.full(n_units + 1, np.inf)
        for lv in range(n_lv):
            c = int(cost[b, lv])
            if c > n_units:
                continue
            cand = dp[: n_units + 1 - c] + d[b, lv]
            better = cand < new[c:]
            new[c:][better] = cand[better]
            choice[b, c:][better] = lv
        dp = new
    if not np.isfinite(dp.min()):   # edge blocks rounded up: not even the lowest map fits in whole units
        return lowest
    c = int(np.argmin(dp))
    levels = np.zeros(d.shape[0], np.int64)
    for b in range(d.shape[0] - 1, -1, -1):
        levels[b] = choice[b, c]
        c -= int(cost[b, levels[b]])
    return levels.reshape(hb, wb)
