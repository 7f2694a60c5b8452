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

import numpy as np

from ..core.wire import RATE_BITS, SideInfo, side_info_bytes
from . import fec

REPETITION = 1


class SideInfoError(ValueError):
    pass


def pack_levels(levels: np.ndarray) -> bytes:
    """Levels [hb, wb] -> ``RATE_BITS`` bits each, MSB first, zero-padded to whole bytes."""
    lv = np.asarray(levels).reshape(-1)
    if lv.size and (lv.min() < 0 or lv.max() >= 2 ** RATE_BITS):
        raise SideInfoError(f"rate level {int(lv.max())} does not fit in {RATE_BITS} bits")
    bits = ((lv.astype(np.uint8)[:, None] >> np.arange(RATE_BITS - 1, -1, -1)) & 1).reshape(-1)
    return np.packbits(bits).tobytes()


def unpack_levels(data: bytes, hb: int, wb: int) -> np.ndarray:
    n = hb * wb
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if bits.size < n * RATE_BITS:
        raise SideInfoError(f"rate map needs {n * RATE_BITS} bits for {hb}x{wb} blocks, got {bits.size}")
    b = bits[: n * RATE_BITS].reshape(n, RATE_BITS)
    return (b * (1 << np.arange(RATE_BITS - 1, -1, -1))).sum(axis=1).reshape(hb, wb).astype(np.int64)


def to_bytes(side: SideInfo) -> bytes:
    body = struct.pack(">BH", side.kb_index, side.kb_hash) + pack_levels(side.levels)
    return body + struct.pack(">I", fec.crc32(body))


def from_bytes(data: bytes, hb: int, wb: int) -> SideInfo:
    body, (crc,) = data[:-4], struct.unpack(">I", data[-4:])
    if fec.crc32(body) != crc:
        raise SideInfoError("side information CRC mismatch")
    kb_index, kb_hash = struct.unpack(">BH", body[:3])
    return SideInfo(kb_index=kb_index, levels=unpack_levels(body[3:], hb, wb), kb_hash=kb_hash)


def body_len(hb: int, wb: int) -> int:
    """Bytes of the side information (CRC excluded) for an ``hb x wb`` rate map."""
    return side_info_bytes(hb, wb)


def n_symbols(side_info_len: int) -> int:
    """BPSK symbols of a side-information block of ``side_info_len`` bytes (+ CRC)."""
    return fec.coded_length(8 * (side_info_len + 4), REPETITION)


def ofdm_symbols(side_info_len: int, n_data: int) -> int:
    return -(-n_symbols(side_info_len) // n_data) if side_info_len else 0


def modulate(side: SideInfo, n_data: int) -> np.ndarray:
    data = to_bytes(side)
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
    return from_bytes(fec.bits_to_bytes(bits), hb, wb)

