"""Side information of variable-rate (AKB) images: rate map and source-KB index.

It follows the frame header as its own BPSK block (whole OFDM symbols, not DFT-spread): bytes
``kb_index u8 · kb_hash u16 (first 2 bytes of the source KB's sha256, so that a receiver holding
another KB notices) · levels (RATE_BITS each, packed) · crc32 u32``, K=7 rate-1/2 convolutional code,
no repetition, interleaved. Every frame of an image repeats it, so any one frame that arrives
lets the receiver place the image's symbols. The header field ``side_info_len`` gives its length
in bytes (CRC excluded); ``symbols_per_location`` is 0 for such images.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from . import fec

REPETITION = 1


class SideInfoError(ValueError):
    pass


@dataclass(frozen=True)
class SideInfo:
    kb_index: int
    levels: np.ndarray     # [hb, wb] int64
    kb_hash: int = 0       # first 16 bits of the transmitter's KB sha256

    def to_bytes(self) -> bytes:
        from ..akb.ratemap import pack_levels

        body = struct.pack(">BH", self.kb_index, self.kb_hash) + pack_levels(self.levels)
        return body + struct.pack(">I", fec.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes, hb: int, wb: int) -> "SideInfo":
        from ..akb.ratemap import unpack_levels

        body, (crc,) = data[:-4], struct.unpack(">I", data[-4:])
        if fec.crc32(body) != crc:
            raise SideInfoError("side information CRC mismatch")
        try:
            kb_index, kb_hash = struct.unpack(">BH", body[:3])
            return cls(kb_index=kb_index, levels=unpack_levels(body[3:], hb, wb), kb_hash=kb_hash)
        except ValueError as e:
            raise SideInfoError(str(e)) from None


def body_len(hb: int, wb: int) -> int:
    """Bytes of the side information (CRC excluded) for an ``hb x wb`` rate map."""
    from ..akb.ratemap import RATE_BITS

    return 3 + -(-hb * wb * RATE_BITS // 8)


def n_symbols(side_info_len: int) -> int:
    """BPSK symbols of a side-information block of ``side_info_len`` bytes (+ CRC)."""
    return fec.coded_length(8 * (side_info_len + 4), REPETITION)


def ofdm_symbols(side_info_len: int, n_data: int) -> int:
    return -(-n_symbols(side_info_len) // n_data) if side_info_len else 0


def modulate(side: SideInfo, n_data: int) -> np.ndarray:
    data = side.to_bytes()
    bpsk = fec.encode_bits(fec.bytes_to_bits(data), REPETITION)
    total = ofdm_symbols(len(data) - 4, n_data) * n_data
    pad = (1 - 2 * np.random.default_rng(0x51DE).integers(0, 2, total - bpsk.size)).astype(np.float32)
    return np.concatenate([bpsk, pad]).astype(np.complex64)


def demodulate(soft: np.ndarray, side_info_len: int, hb: int, wb: int) -> SideInfo:
    n = n_symbols(side_info_len)
    s = np.real(np.asarray(soft))
    if s.size < n:
        raise SideInfoError(f"{s.size} side-information symbols received, expected {n}")
    bits = fec.decode_soft(s[:n], 8 * (side_info_len + 4), REPETITION)
    return SideInfo.from_bytes(fec.bits_to_bytes(bits), hb, wb)


def kb_hash16(kb_sha256: str) -> int:
    return int(kb_sha256[:4], 16)
