"""Gray-mapped square QAM for the digital baselines : QPSK, 16-QAM and 64-QAM with
unit average symbol energy, and max-log soft demapping to LLRs from the receiver's noise
estimate.

Square Gray QAM is two Gray-coded PAMs: of the ``k`` bits of a symbol, the first ``k/2`` choose
the in-phase amplitude and the last ``k/2`` the quadrature one, each as a reflected Gray code of
the amplitude index (so that neighbouring amplitudes differ in one bit; the all-zero label is the
largest amplitude, so QPSK maps bit 0 to +1 as the PHY's BPSK does). LLRs follow the PHY's
soft convention (bit 0 is positive, as in :mod:`testbed.phy.fec`): ``L = log P(b=0) / P(b=1)``. With
complex noise of variance ``N0`` (``E|n|^2``), each dimension sees variance ``N0 / 2`` and
the max-log LLR of a bit is ``(min_{a: b=1} (y-a)^2 - min_{a: b=0} (y-a)^2) / N0``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

BITS_PER_SYMBOL = {"qpsk": 2, "16qam": 4, "64qam": 6}


def bits_per_symbol(modulation: str) -> int:
    """2, 4 or 6; a clear error for anything else."""
    try:
        return BITS_PER_SYMBOL[modulation]
    except KeyError:
        raise ValueError(f"modulation {modulation!r}: not one of {', '.join(BITS_PER_SYMBOL)}") from None


@lru_cache(maxsize=None)
def _pam(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One dimension of 2^m-QAM: amplitudes (descending, scaled to unit average energy of the
    complex symbol), the m label bits of each amplitude (MSB first), and the amplitude index of
    each label."""
    n = 1 << m
    idx = np.arange(n)
    gray = idx ^ (idx >> 1)                                   # label of amplitude index i
    levels = ((n - 1) - 2 * idx).astype(np.float64)          # label 0 at the top: bit 0 -> + (as BPSK)
    levels /= np.sqrt(2 * (n * n - 1) / 3)                     # E|I + jQ|^2 = 1
    bits = ((gray[:, None] >> np.arange(m - 1, -1, -1)) & 1).astype(np.uint8)
    index_of_label = np.empty(n, dtype=np.int64)
    index_of_label[gray] = idx
    return levels, bits, index_of_label


def constellation(modulation: str) -> tuple[np.ndarray, np.ndarray]:
    """Every symbol of the constellation and its k bits (rows in label order)."""
    k = bits_per_symbol(modulation)
    labels = ((np.arange(1 << k)[:, None] >> np.arange(k - 1, -1, -1)) & 1).astype(np.uint8)
    return modulate(labels.reshape(-1), modulation), labels


def modulate(bits: np.ndarray, modulation: str) -> np.ndarray:
    """Bits (0/1, a multiple of k of them) to complex64 symbols."""
    k = bits_per_symbol(modulation)
    b = np.asarray(bits)
    if b.ndim != 1 or b.size % k:
        raise ValueError(f"{modulation}: needs a flat array of a multiple of {k} bits, got shape {b.shape}")
    if b.size and (b.min() < 0 or b.max() > 1):
        raise ValueError(f"{modulation}: bits must be 0 or 1")
    m = k // 2
    levels, _, index_of_label = _pam(m)
    weights = 1 << np.arange(m - 1, -1, -1)
    b = b.reshape(-1, k).astype(np.int64)
    i = levels[index_of_label[b[:, :m] @ weights]]
    q = levels[index_of_label[b[:, m:] @ weights]]
    return (i + 1j * q).astype(np.complex64)


def _llr_dim(y: np.ndarray, n0: np.ndarray, m: int) -> np.ndarray:
    """Max-log LLRs (n, m) of one real dimension."""
    levels, bits, _ = _pam(m)
    d = (y[:, None] - levels[None, :]) ** 2                    # (n, 2^m)
    out = np.empty((y.size, m), dtype=np.float64)
    for j in range(m):
        one = bits[:, j] == 1
        out[:, j] = d[:, one].min(axis=1) - d[:, ~one].min(axis=1)
    return out / n0[:, None]


def demodulate_llr(symbols: np.ndarray, noise_var, modulation: str) -> np.ndarray:
    """Max-log LLRs (float32, k per symbol, in the order :func:`modulate` took the bits) of
    equalised ``symbols`` with complex noise variance ``noise_var`` (a scalar, or one value per
    symbol, e.g. per subcarrier after equalisation)."""
    k = bits_per_symbol(modulation)
    y = np.asarray(symbols).reshape(-1)
    n0 = np.broadcast_to(np.asarray(noise_var, dtype=np.float64), y.shape)
    if not np.all(np.isfinite(n0)) or np.any(n0 <= 0):
        raise ValueError(f"{modulation}: noise variance must be finite and > 0")
    m = k // 2
    llr = np.concatenate([_llr_dim(y.real.astype(np.float64), n0, m), _llr_dim(y.imag.astype(np.float64), n0, m)],
                         axis=1)
    return llr.reshape(-1).astype(np.float32)


def hard_bits(llr: np.ndarray) -> np.ndarray:
    """The bits the LLRs favour (a negative LLR is a 1)."""
    return (np.asarray(llr) < 0).astype(np.uint8)
