"""The ideal symbol channel in numpy: AWGN and flat Rayleigh block fading on complex symbols.

SNR is Es/N0 in dB with unit-power symbols (Es = 1). Used by ``testbed eval`` and by the AKB
codec's analysis by synthesis; the differentiable (torch) versions used in training are in
:mod:`testbed.codec.channel`.
"""
from __future__ import annotations

import numpy as np

CHANNELS = ("awgn", "rayleigh")   # training/evaluation channel models: the one list of valid names


def awgn_np(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Complex AWGN at Es/N0 = ``snr_db`` for unit-power complex symbols ``x``."""
    n0 = 10.0 ** (-snr_db / 10.0)
    noise = rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape)
    return (x + noise * np.sqrt(n0 / 2.0)).astype(np.complex64)


def rayleigh_block_np(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """One flat Rayleigh block over ``x`` with coherent equalisation (see :func:`rayleigh_block`).

    Returns ``(equalised symbols, effective SNR in dB)``.
    """
    h = (rng.standard_normal() + 1j * rng.standard_normal()) * np.sqrt(0.5)
    gain = max(abs(h) ** 2, 1e-6)
    eff = snr_db + 10.0 * np.log10(gain)
    return awgn_np(x, eff, rng), float(eff)


def apply_channel_np(x: np.ndarray, snr_db: float, channel: str, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    if channel == "awgn":
        return awgn_np(x, snr_db, rng), float(snr_db)
    if channel == "rayleigh":
        return rayleigh_block_np(x, snr_db, rng)
    raise ValueError(f"unknown channel {channel!r}; valid: {', '.join(CHANNELS)}")
