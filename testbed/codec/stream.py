"""Latent <-> complex channel symbols as torch operations: masking, power normalisation and
transmission order, following the conventions of :mod:`testbed.codec.symbols`."""
from __future__ import annotations

import torch


def symbols_mask(k: torch.Tensor, s_max: int) -> torch.Tensor:
    """[B] symbols per location -> [B, S] float mask (1 for the first k symbols)."""
    idx = torch.arange(s_max, device=k.device).unsqueeze(0)
    return (idx < k.unsqueeze(1)).to(torch.float32)


def normalize_power(z: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Zero the unsent symbols of latent ``z`` [B, 2S, h, w] and scale the sent ones to Es = 1.

    Returns [B, S, h, w, 2] (real, imag in the last axis).
    """
    b, c, h, w = z.shape
    s = c // 2
    zc = z.reshape(b, s, 2, h, w).permute(0, 1, 3, 4, 2)
    mask = symbols_mask(k, s)[:, :, None, None, None]
    zc = zc * mask
    n_sent = k.to(torch.float32) * (h * w)
    power = zc.pow(2).sum(dim=(1, 2, 3, 4)) / n_sent
    return zc * torch.rsqrt(power + 1e-12)[:, None, None, None, None]


def to_stream(zc: torch.Tensor) -> torch.Tensor:
    """[B, S, h, w, 2] -> [B, S*h*w, 2] in transmission (importance-major) order."""
    b, s, h, w, _ = zc.shape
    return zc.reshape(b, s * h * w, 2)


def from_stream(stream: torch.Tensor, s_max: int, h, w) -> torch.Tensor:
    """[B, n, 2] received stream (n = k*h*w, k <= S) -> zero-filled [B, S, h, w, 2]."""
    b = stream.shape[0]
    n = stream.shape[1]
    full = torch.zeros(b, s_max * h * w, 2, dtype=stream.dtype, device=stream.device)
    full = torch.cat([stream, full[:, n:]], dim=1)
    return full.reshape(b, s_max, h, w, 2)


def to_latent(zc: torch.Tensor) -> torch.Tensor:
    """[B, S, h, w, 2] -> decoder input [B, 2S, h, w]."""
    b, s, h, w, _ = zc.shape
    return zc.permute(0, 1, 4, 2, 3).reshape(b, 2 * s, h, w)
