"""What a variable-rate codec and the PHY must agree on about side information.

An AKB image travels with side information: its source-KB index and its rate map (one level per
rate block of ``RATE_BLOCK_PIXELS`` x ``RATE_BLOCK_PIXELS`` pixels). The codec chooses the values
and counts one copy's channel symbols in its CBR; the PHY (:mod:`testbed.phy.sideinfo`) packs,
protects and carries them. This module holds the values' type and the sizes both sides need, so
that neither imports the other.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK_PIXELS = 16          # a symbol location: 16 x 16 pixels (the codecs' total down-sampling)
RATE_BLOCK_PIXELS = 64     # a rate block: 4 x 4 symbol locations of 16 x 16 pixels
RATE_BITS = 3              # bits per rate level (at most 8 levels)
KB_INDEX_BITS = 8          # bits of the source-KB index
NO_KB = 2 ** KB_INDEX_BITS - 1   # KB index meaning "no source KB"
CRC_BYTES = 4              # CRC-32 after the side information
CODE_TAIL_BITS = 6         # tail of the PHY's K=7 rate-1/2 convolutional code


@dataclass(frozen=True)
class SideInfo:
    """Side information of one variable-rate image."""
    kb_index: int
    levels: np.ndarray     # [hb, wb] int64 rate levels
    kb_hash: int = 0       # first 16 bits of the transmitter's source-KB sha256 (:func:`kb_hash16`)


def block_grid(height: int, width: int) -> tuple[int, int]:
    """Symbol locations (``BLOCK_PIXELS`` x ``BLOCK_PIXELS`` pixels each) covering an image."""
    return -(-height // BLOCK_PIXELS), -(-width // BLOCK_PIXELS)


def rate_block_grid(height: int, width: int) -> tuple[int, int]:
    """Rate blocks ``(hb, wb)`` of an ``height x width`` image."""
    b = RATE_BLOCK_PIXELS
    return (height + b - 1) // b, (width + b - 1) // b


def side_info_bytes(hb: int, wb: int) -> int:
    """Bytes of the side information, CRC excluded: KB index u8, KB hash u16, packed levels."""
    return 3 + -(-hb * wb * RATE_BITS // 8)


def side_info_symbols(hb: int, wb: int) -> int:
    """Channel symbols of one copy of the side information (rate-1/2 code with tail, BPSK);
    equal to :func:`testbed.phy.sideinfo.n_symbols` of :func:`side_info_bytes` (a test checks it)."""
    return 2 * (8 * (side_info_bytes(hb, wb) + CRC_BYTES) + CODE_TAIL_BITS)


def kb_hash16(kb_sha256: str) -> int:
    return int(kb_sha256[:4], 16)
