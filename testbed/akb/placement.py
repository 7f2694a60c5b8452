"""Symbol placement of the variable-length AKB codec as torch operations: rate maps -> masks ->
the importance-major stream (conventions in :mod:`testbed.akb.ratemap`)."""
from __future__ import annotations

import torch

from .ratemap import BLOCK_LOCATIONS, MAX_SYMBOLS, RATE_SET


def location_rates(levels: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """levels [B, hb, wb] (int64) -> symbols per location [B, h, w] (float)."""
    rates = torch.tensor(RATE_SET, dtype=torch.float32, device=levels.device)[levels]
    b, hb, wb = rates.shape[0], rates.shape[1], rates.shape[2]
    n = BLOCK_LOCATIONS
    up = rates[:, :, None, :, None].expand(b, hb, n, wb, n).reshape(b, hb * n, wb * n)
    return up[:, :h, :w]


def symbol_mask(rates: torch.Tensor, s_max: int = MAX_SYMBOLS) -> torch.Tensor:
    """Symbols per location [B, h, w] -> mask [B, S, h, w] (1 where the symbol is sent)."""
    idx = torch.arange(s_max, device=rates.device, dtype=rates.dtype)[None, :, None, None]
    return (idx < rates[:, None]).to(torch.float32)


def pack_stream(zc: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[S, h, w, 2] symbols + [S, h, w] mask -> [n, 2] stream in importance-major order (one image)."""
    flat = zc.reshape(-1, 2)
    keep = mask.reshape(-1) > 0.5
    return flat[keep]


def unpack_stream(stream: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_stream`: [n, 2] (missing tail zero-filled) -> [S, h, w, 2].

    Written with cumsum/gather only, so the same code exports to ONNX.
    """
    m = mask.reshape(-1)
    n = stream.shape[0]
    pos = torch.cumsum(m, 0).to(torch.int64) - 1
    valid = m * (pos < n).to(m.dtype)
    src = torch.clamp(pos, 0, n - 1)
    full = stream.index_select(0, src) * valid[:, None]
    return full.reshape(*mask.shape, 2)


