"""The frame header: what the receiver needs to place a frame's analog symbols.

It is sent as BPSK on whole OFDM symbols right after the two sync symbols: 232 bits
(CRC-32 included), K=7 rate-1/2 convolutional code, ``repetition`` copies, interleaved. Once the
CRC passes, the receiver knows every header symbol, so the header doubles as a training
sequence for channel and SNR estimation (:mod:`testbed.phy.equalizer`).

Fields (big-endian): version u8 · image_id u16 · frame_index u16 · frame_count u16 · height u16 ·
width u16 · symbols_per_location u8 · n_payload u16 (analog symbols in this frame) ·
payload_offset u32 (the frame carries stream[payload_offset::frame_count], see framing) ·
model_hash u32 (first 4 bytes of the model's sha256) · side_info_len u16 (bytes of the rate side
information that follows the header, :mod:`testbed.phy.sideinfo`; 0 for fixed-rate models, whose
``symbols_per_location`` is then non-zero, and exactly one of the two is 0) · mode u8 (the codec's
mode: the digital codecs' MCS; 0 for the learned ones) · crc32 u32.

Version 2 added ``mode``. A version-1 header (224 bits, no mode) is still understood (mode 0), so
recordings made before it replay, as long as both lengths fill the same number of OFDM symbols
(they do with the default carriers and repetition).
"""
from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from . import fec

VERSION = 2
_FMT = ">BHHHHHBHIIHB"
N_BYTES = struct.calcsize(_FMT) + 4
N_BITS = 8 * N_BYTES
_FMT_V1 = _FMT[:-1]                         # version 1: no mode
N_BYTES_V1 = struct.calcsize(_FMT_V1) + 4
N_BITS_V1 = 8 * N_BYTES_V1


class HeaderError(ValueError):
    pass


@dataclass(frozen=True)
class FrameHeader:
    image_id: int
    frame_index: int
    frame_count: int
    height: int
    width: int
    symbols_per_location: int
    n_payload: int
    payload_offset: int
    model_hash: int
    side_info_len: int = 0
    mode: int = 0
    version: int = VERSION

    def to_bytes(self) -> bytes:
        """In the header's own version (a received version-1 header re-modulates as it was sent:
        the equaliser uses the known header symbols as its training sequence)."""
        v1 = self.version == 1
        if v1 and self.mode:
            raise HeaderError(f"a version-1 header has no mode (mode {self.mode})")
        fields = (self.version if v1 else VERSION, self.image_id, self.frame_index, self.frame_count, self.height,
                  self.width, self.symbols_per_location, self.n_payload, self.payload_offset, self.model_hash,
                  self.side_info_len) + (() if v1 else (self.mode,))
        try:
            body = struct.pack(_FMT_V1 if v1 else _FMT, *fields)
        except struct.error as e:
            raise HeaderError(f"header field out of range: {self} ({e})") from None
        return body + struct.pack(">I", fec.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> "FrameHeader":
        fmt, version = {N_BYTES: (_FMT, VERSION), N_BYTES_V1: (_FMT_V1, 1)}.get(len(data), (None, 0))
        if fmt is None:
            raise HeaderError(f"header has {len(data)} bytes, expected {N_BYTES} (or {N_BYTES_V1}: version 1)")
        body, (crc,) = data[:-4], struct.unpack(">I", data[-4:])
        if fec.crc32(body) != crc:
            raise HeaderError("header CRC mismatch")
        v = struct.unpack(fmt, body)
        if v[0] != version:
            raise HeaderError(f"header version {v[0]} in a {len(data)}-byte header (this receiver speaks 1 and {VERSION})")
        h = cls(version=v[0], image_id=v[1], frame_index=v[2], frame_count=v[3], height=v[4], width=v[5],
                symbols_per_location=v[6], n_payload=v[7], payload_offset=v[8], model_hash=v[9],
                side_info_len=v[10], mode=v[11] if version >= 2 else 0)
        if h.frame_count == 0 or h.frame_index >= h.frame_count or h.height == 0 or h.width == 0 \
                or (h.symbols_per_location == 0) == (h.side_info_len == 0) or h.n_payload == 0:
            raise HeaderError(f"inconsistent header {h}")
        return h

    def as_dict(self) -> dict:
        return asdict(self)


def n_header_symbols(repetition: int) -> int:
    """BPSK symbols carrying the coded header (before padding to whole OFDM symbols)."""
    return fec.coded_length(N_BITS, repetition)


def header_ofdm_symbols(repetition: int, n_data: int) -> int:
    return -(-n_header_symbols(repetition) // n_data)


@lru_cache(maxsize=16)
def _padding(n: int) -> np.ndarray:
    rng = np.random.default_rng(0xBAD)
    pad = (1 - 2 * rng.integers(0, 2, n)).astype(np.float32)
    pad.flags.writeable = False
    return pad


def modulate(header: FrameHeader, repetition: int, n_data: int) -> np.ndarray:
    """Header -> BPSK complex symbols filling whole OFDM symbols of ``n_data`` data carriers."""
    bpsk = fec.encode_bits(fec.bytes_to_bits(header.to_bytes()), repetition)
    total = header_ofdm_symbols(repetition, n_data) * n_data
    return np.concatenate([bpsk, _padding(total - bpsk.size)]).astype(np.complex64)


def demodulate(soft: np.ndarray, repetition: int) -> FrameHeader:
    """Equalised header symbols (complex or real soft values) -> header; HeaderError if the CRC fails."""
    n = n_header_symbols(repetition)
    s = np.real(np.asarray(soft))
    if s.size < n:
        raise HeaderError(f"{s.size} header symbols received, expected at least {n}")
    bits = fec.decode_soft(s[:n], N_BITS, repetition)
    try:
        return FrameHeader.from_bytes(fec.bits_to_bytes(bits))
    except HeaderError:          # a version-1 header (shorter) fills the same OFDM symbols
        n1 = fec.coded_length(N_BITS_V1, repetition)
        try:
            return FrameHeader.from_bytes(fec.bits_to_bytes(fec.decode_soft(s[:n1], N_BITS_V1, repetition)))
        except HeaderError:
            pass
        raise
