"""Rate maps of the variable-length AKB codec: entropy map -> rate-preset map -> symbol placement.

Conventions (shared by the PyTorch model, the ONNX graphs, the scheduler and the PHY header):

* The image is cut into *rate blocks* of ``BLOCK_LOCATIONS x BLOCK_LOCATIONS`` symbol locations
  (4 x 4 locations = 64 x 64 pixels). Every location of a block carries the same number of
  complex symbols ``RATE_SET[level]``; the rate map is the ``[hb, wb]`` array of levels.
* The rate-preset map comes from the entropy map: ``level = nearest level to eta * bits``, where
  ``bits`` is the block's mean entropy per location and the scale ``eta`` is the largest one
  that keeps the image within its symbol budget (bisection, :func:`preset_levels`).
* The rate map is side information: ``RATE_BITS`` bits per block plus the KB index and a CRC,
  sent after the frame header with the header's rate-1/2 code and BPSK
  (:mod:`testbed.phy.sideinfo`). One copy's channel symbols count in the reported CBR
  (:func:`testbed.core.wire.side_info_symbols`); the copies repeated in later frames are PHY overhead, like the
  headers, pilots and preambles.
* Transmission order is importance-major: symbol 0 of every location (row-major) whose rate
  exceeds 0, then symbol 1 of every location whose rate exceeds 1, ...
"""
from __future__ import annotations

import numpy as np

from ..core.images import BLOCK_PIXELS
from ..core.wire import RATE_BITS, RATE_BLOCK_PIXELS, side_info_symbols

STRIDE = BLOCK_PIXELS          # pixels per location
BLOCK_LOCATIONS = RATE_BLOCK_PIXELS // STRIDE   # locations per rate block side (64 x 64 pixels)
RATE_SET = (4, 8, 16, 24, 32, 48, 64, 96)  # complex symbols per location, one per level
MAX_SYMBOLS = RATE_SET[-1]

assert len(RATE_SET) <= 2 ** RATE_BITS


def location_grid(height: int, width: int) -> tuple[int, int]:
    return (height + STRIDE - 1) // STRIDE, (width + STRIDE - 1) // STRIDE


def block_grid(height: int, width: int) -> tuple[int, int]:
    h, w = location_grid(height, width)
    return (h + BLOCK_LOCATIONS - 1) // BLOCK_LOCATIONS, (w + BLOCK_LOCATIONS - 1) // BLOCK_LOCATIONS


def block_weights(h: int, w: int) -> np.ndarray:
    """Number of (real) locations in each rate block of an ``h x w`` location grid."""
    hb, wb = (h + BLOCK_LOCATIONS - 1) // BLOCK_LOCATIONS, (w + BLOCK_LOCATIONS - 1) // BLOCK_LOCATIONS
    rows = np.minimum(BLOCK_LOCATIONS, h - BLOCK_LOCATIONS * np.arange(hb))
    cols = np.minimum(BLOCK_LOCATIONS, w - BLOCK_LOCATIONS * np.arange(wb))
    return np.outer(rows, cols).astype(np.int64)


def n_symbols(levels: np.ndarray, h: int, w: int) -> int:
    """Payload symbols of a rate map (levels [hb, wb]) on an ``h x w`` location grid."""
    rates = np.asarray(RATE_SET)[np.asarray(levels)]
    return int((rates * block_weights(h, w)).sum())


def cbr_of(levels: np.ndarray, height: int, width: int) -> float:
    """CBR including side information: (payload + side symbols) / (H * W * 3)."""
    h, w = location_grid(height, width)
    hb, wb = np.asarray(levels).shape
    return (n_symbols(levels, h, w) + side_info_symbols(hb, wb)) / (height * width * 3)


def min_cbr(height: int, width: int) -> float:
    hb, wb = block_grid(height, width)
    return cbr_of(np.zeros((hb, wb), np.int64), height, width)


def max_cbr(height: int, width: int) -> float:
    hb, wb = block_grid(height, width)
    return cbr_of(np.full((hb, wb), len(RATE_SET) - 1, np.int64), height, width)


def block_entropy(entropy_map: np.ndarray) -> np.ndarray:
    """Per-location entropy [h, w] (bits) -> mean bits per location of each rate block [hb, wb]."""
    e = np.asarray(entropy_map, dtype=np.float64)
    h, w = e.shape
    hb, wb = (h + BLOCK_LOCATIONS - 1) // BLOCK_LOCATIONS, (w + BLOCK_LOCATIONS - 1) // BLOCK_LOCATIONS
    pad = np.zeros((hb * BLOCK_LOCATIONS, wb * BLOCK_LOCATIONS))
    pad[:h, :w] = e
    sums = pad.reshape(hb, BLOCK_LOCATIONS, wb, BLOCK_LOCATIONS).sum(axis=(1, 3))
    return sums / block_weights(h, w)


def _levels_for(bits: np.ndarray, eta: float) -> np.ndarray:
    target = eta * bits
    rates = np.asarray(RATE_SET, dtype=np.float64)
    return np.abs(target[..., None] - rates).argmin(axis=-1).astype(np.int64)


def apply_offsets(levels: np.ndarray, offsets: np.ndarray | None) -> np.ndarray:
    if offsets is None:
        return levels
    return np.clip(levels + np.asarray(offsets, dtype=np.int64), 0, len(RATE_SET) - 1)


def preset_levels(bits: np.ndarray, target_cbr: float, height: int, width: int,
                  offsets: np.ndarray | None = None, iters: int = 40) -> np.ndarray:
    """Rate-preset map: levels [hb, wb] for block entropies ``bits`` within ``target_cbr``.

    ``offsets`` (the channel-KB action, levels added per block) are applied before the budget
    check, so the final map never exceeds the budget: the scale ``eta`` is re-solved with them.
    When even the lowest rates exceed the budget, the lowest map is returned (the caller warns).
    """
    bits = np.maximum(np.asarray(bits, dtype=np.float64), 1e-6)
    h, w = location_grid(height, width)
    budget = target_cbr * height * width * 3 - side_info_symbols(*bits.shape)

    def cost(eta):
        return n_symbols(apply_offsets(_levels_for(bits, eta), offsets), h, w)

    lo, hi = 0.0, RATE_SET[-1] / bits.min() * 2
    if cost(hi) <= budget:
        return apply_offsets(_levels_for(bits, hi), offsets)
    if cost(lo) > budget:  # not even the lowest map (with the offsets) fits: the lowest map
        return np.zeros(bits.shape, np.int64)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if cost(mid) <= budget:
            lo = mid
        else:
            hi = mid
    return apply_offsets(_levels_for(bits, lo), offsets)


def uniform_levels(target_cbr: float, height: int, width: int) -> np.ndarray:
    """The same level everywhere: the highest one that fits the budget (the fixed-rate baseline)."""
    hb, wb = block_grid(height, width)
    best = np.zeros((hb, wb), np.int64)
    for lv in range(len(RATE_SET)):
        cand = np.full((hb, wb), lv, np.int64)
        if cbr_of(cand, height, width) <= target_cbr + 1e-12:
            best = cand
    return best


def check_levels(levels: np.ndarray, hb: int, wb: int) -> None:
    """A received rate map: ``hb x wb`` levels within the rate set."""
    lv = np.asarray(levels)
    if lv.shape != (hb, wb):
        raise ValueError(f"rate map is {lv.shape[0]}x{lv.shape[1]} blocks, expected {hb}x{wb}")
    if lv.size and (lv.min() < 0 or lv.max() >= len(RATE_SET)):
        raise ValueError(f"rate level {int(lv.max())} outside 0..{len(RATE_SET) - 1}")
