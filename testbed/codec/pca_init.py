"""Closed-form linear JSCC used to initialise the codec's linear path.

The encoder and decoder each have a linear 16x16-block path beside the deep path. Before training
it is set to the classical linear analog JSCC solution: project each 16x16x3 block on the
principal components of the training blocks (which orders the symbols by importance, as the
truncation scheme needs), allocate power ~ sqrt(eigenvalue), and reconstruct with per-component
LMMSE gains at a mid-range SNR. The deep paths start at zero (their last convolutions are zero),
so training starts from the linear optimum (about 27 dB on BSDS at CBR 1/16, 10 dB, measured while
developing this) instead of from a blank image, and learns the non-linear gains on top.
"""
from __future__ import annotations

import numpy as np
import torch

from . import symbols as sym

BLOCK = sym.STRIDE


def block_moments(arrays: list[np.ndarray], rng: np.random.Generator, n_blocks: int = 40000) -> np.ndarray:
    """Second-moment matrix E[b b^T] of random 16x16x3 blocks (pixels in [-0.5, 0.5])."""
    d = 3 * BLOCK * BLOCK
    arrays = [a for a in arrays if a.shape[0] >= BLOCK and a.shape[1] >= BLOCK]
    if not arrays:
        raise ValueError(f"no training image is at least {BLOCK}x{BLOCK} pixels; the linear path cannot be fitted")
    acc = np.zeros((d, d))
    done = 0
    while done < n_blocks:
        n = min(4000, n_blocks - done)
        bl = np.empty((n, d))
        for i in range(n):
            a = arrays[rng.integers(len(arrays))]
            y = rng.integers(a.shape[0] - BLOCK + 1)
            x = rng.integers(a.shape[1] - BLOCK + 1)
            bl[i] = a[y:y + BLOCK, x:x + BLOCK].transpose(2, 0, 1).reshape(-1)
        bl = bl / 255.0 - 0.5
        acc += bl.T @ bl
        done += n
    return acc / n_blocks


@torch.no_grad()
def init_linear_paths(model, arrays: list[np.ndarray], rng: np.random.Generator, snr_db: float = 10.0) -> dict:
    s2 = 2 * model.cfg.max_symbols
    m = block_moments(arrays, rng)
    lam, v = np.linalg.eigh(m)
    order = np.argsort(lam)[::-1][:s2]
    lam, v = np.maximum(lam[order], 1e-12), v[:, order]
    g = lam ** -0.25                       # power allocation ~ sqrt(lambda)
    p = lam * g ** 2                        # component powers before normalisation
    scale = np.sqrt(p.sum() / (s2 / 2))     # mean normalisation factor (Es = 1 over S symbols)
    pn = p / scale ** 2                     # powers after normalisation
    n0 = 10 ** (-snr_db / 10) / 2           # noise per real dimension
    c = pn / (pn + n0)                      # LMMSE gain per component
    w_enc = (v * g).T.reshape(s2, 3, BLOCK, BLOCK)
    w_dec = (v * (c * scale / g)).T.reshape(s2, 3, BLOCK, BLOCK)
    model.encoder.linear.weight.copy_(torch.as_tensor(w_enc, dtype=torch.float32))
    model.decoder.linear.weight.copy_(torch.as_tensor(w_dec, dtype=torch.float32))
    model.decoder.linear.bias.zero_()
    return {"energy_kept": float(lam.sum() / np.linalg.eigvalsh(m).sum()), "scale": float(scale)}
