"""Differentiable channel models for training and simulation (torch).

SNR is Es/N0 in dB with unit-power symbols (Es = 1): the complex noise has variance
``N0 = 10**(-snr_db/10)``, i.e. ``N0/2`` per real dimension.

Symbols are tensors whose last axis holds (real, imag). The same channels in numpy, for evaluation
with onnxruntime: :mod:`testbed.core.symbol_channel`.
"""
from __future__ import annotations

import torch

from ..core.symbol_channel import CHANNELS  # the one list of valid names


def noise_std(snr_db: torch.Tensor) -> torch.Tensor:
    """Standard deviation per real dimension for Es/N0 = snr_db (Es = 1)."""
    return torch.sqrt(0.5 * torch.pow(10.0, -snr_db / 10.0))


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (x.dim() - 1)))


def awgn(x: torch.Tensor, snr_db: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add complex white Gaussian noise; ``snr_db`` is per batch item ([B])."""
    n = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + n * _bcast(noise_std(snr_db), x)


def rayleigh_block(
    x: torch.Tensor,
    snr_db: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat Rayleigh block fading over each batch item, with coherent equalisation.

    ``y = h*x + n`` with ``h ~ CN(0, 1)`` constant over the item (one coherence block per image),
    followed by zero-forcing with perfect CSI at the receiver: ``x_hat = y / h``.
    Returns ``(x_hat, effective_snr_db)`` where the effective SNR is ``|h|^2 * Es/N0`` — what the
    receiver's SNR estimator sees and what the decoder is told.
    """
    b = x.shape[0]
    h = torch.randn(b, 2, generator=generator, device=x.device, dtype=x.dtype) * (0.5 ** 0.5)
    gain = h.pow(2).sum(dim=1).clamp_min(1e-6)  # |h|^2, exponential with mean 1
    eff_snr_db = snr_db + 10.0 * torch.log10(gain)
    # Equalised: x + n/h, noise variance N0/|h|^2, i.e. AWGN at the effective SNR.
    return awgn(x, eff_snr_db, generator), eff_snr_db


def apply_channel(
    x: torch.Tensor, snr_db: torch.Tensor, channel: str, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pass symbols through ``channel``; returns (received, SNR the receiver reports in dB)."""
    if channel == "awgn":
        return awgn(x, snr_db, generator), snr_db
    if channel == "rayleigh":
        return rayleigh_block(x, snr_db, generator)
    raise ValueError(f"unknown channel {channel!r}; valid: {', '.join(CHANNELS)}")


# -- numpy versions, for evaluation and the software channel outside torch -------------------------
