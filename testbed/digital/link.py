"""The digital image link at the symbol level: image -> source code -> CRC-protected LDPC code
blocks -> QAM symbols, and back.

An image gets ``n_symbols`` channel symbols (the same budget a learned codec's CBR gives it:
``CBR x H x W x 3``). They carry ``n_symbols // symbols_per_block`` code blocks of the MCS, whose
payload is an 8-byte stream header (version, source coder, codestream length) and the
codestream coded to fit the rest; unused symbols are sent as zeros. The receiver decodes every
block, keeps the codestream up to the first block that failed (the longest error-free prefix)
and shows what :func:`testbed.digital.source.decode_prefix` makes of it; if the first block (the
header) is lost, a gray image.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from . import qam, source
from .codeblocks import CodeBlocks
from .mcs import Mcs

VERSION = 1
_HEADER = struct.Struct(">BBIH")      # version, source index, codestream bytes, reserved
HEADER_BYTES = _HEADER.size


class BudgetError(ValueError):
    """The symbols of an image cannot carry even the smallest codestream of it."""


@lru_cache(maxsize=None)
def codeblocks(rate: str) -> CodeBlocks:
    return CodeBlocks(rate)


def capacity_bytes(n_symbols: int, m: Mcs) -> int:
    """Codestream bytes that ``n_symbols`` symbols carry at ``m`` (header excluded)."""
    blocks = n_symbols // m.symbols_per_block
    return blocks * codeblocks(m.rate).payload_bits // 8 - HEADER_BYTES


@dataclass
class Sent:
    symbols: np.ndarray          # complex64, n_symbols (zeros after the last block)
    payload_bits: np.ndarray     # uint8, the blocks' payload (stream header, codestream, padding)
    coded_bits: np.ndarray       # uint8, what the blocks carry
    codestream: bytes
    fields: dict = field(default_factory=dict)


@dataclass
class Received:
    image: np.ndarray            # [H, W, 3] uint8, gray if nothing decodable arrived
    codestream: bytes            # as received (wrong from the first failed block on)
    good_bytes: int              # the error-free prefix of the codestream
    block_ok: np.ndarray         # per code block
    payload_bits: np.ndarray     # uint8, the decoded payload (wrong in failed blocks)
    llr: np.ndarray              # the demapper's LLRs (for the uncoded bit error rate)
    fields: dict = field(default_factory=dict)


def transmit(img: np.ndarray, n_symbols: int, src: str, m: Mcs) -> Sent:
    """Code ``img`` into ``n_symbols`` symbols at MCS ``m``; :class:`BudgetError` if they cannot
    carry the smallest codestream of it."""
    if src not in source.SOURCES:
        raise ValueError(f"source coder {src!r}: one of {', '.join(source.SOURCES)}")
    cb = codeblocks(m.rate)
    blocks = n_symbols // m.symbols_per_block
    max_bytes = capacity_bytes(n_symbols, m)
    data = source.encode(src, img, max_bytes) if max_bytes > 0 else None
    if data is None:
        raise BudgetError(f"{n_symbols} channel symbols carry {max(max_bytes, 0)} bytes of {src} at {m.name} "
                          f"({blocks} code blocks of {m.symbols_per_block} symbols); the smallest {src} "
                          f"codestream of this {img.shape[1]}x{img.shape[0]} image is {source.smallest(src, img)} bytes")
    head = _HEADER.pack(VERSION, source.SOURCES.index(src), len(data), 0)
    payload = np.unpackbits(np.frombuffer(head + data, dtype=np.uint8))
    payload = np.concatenate([payload, np.zeros(blocks * cb.payload_bits - payload.size, dtype=np.uint8)])
    coded = cb.encode(payload)
    symbols = np.zeros(n_symbols, dtype=np.complex64)
    symbols[:blocks * m.symbols_per_block] = qam.modulate(coded, m.modulation)
    return Sent(symbols, payload, coded, data, {"mcs": m.name, "source": src, "code_blocks": blocks,
                                        "codestream_bytes": len(data), "bits_sent": int(coded.size)})


def error_fields(sent: Sent, rx: Received) -> dict:
    """Bit error rates of a symbol-level run: before decoding (the demapper's hard decisions
    against the coded bits) and after (the decoded payload against the payload sent)."""
    n = min(rx.llr.size, sent.coded_bits.size)
    m = min(rx.payload_bits.size, sent.payload_bits.size)
    return {"uncoded_ber": float(np.mean((rx.llr[:n] < 0) != sent.coded_bits[:n])) if n else float("nan"),
            "coded_ber": float(np.mean(rx.payload_bits[:m] != sent.payload_bits[:m])) if m else float("nan")}


def receive(symbols: np.ndarray, noise_var, m: Mcs, src: str, height: int, width: int) -> Received:
    """Decode received (equalised) ``symbols`` with complex noise variance ``noise_var`` (a
    scalar or one per symbol) sent at MCS ``m`` by :func:`transmit`."""
    cb = codeblocks(m.rate)
    y = np.asarray(symbols).reshape(-1)
    blocks = y.size // m.symbols_per_block
    used = blocks * m.symbols_per_block
    nv = np.asarray(noise_var, dtype=np.float64)
    nv = nv if nv.ndim == 0 else nv.reshape(-1)[:used]
    llr = qam.demodulate_llr(y[:used], nv, m.modulation) if blocks else np.zeros(0, dtype=np.float32)
    dec = cb.decode(llr) if blocks else None
    ok = dec.block_ok if dec is not None else np.zeros(0, dtype=bool)
    bits = dec.payload if dec is not None else np.zeros(0, dtype=np.uint8)
    raw = np.packbits(bits).tobytes()
    failed = np.flatnonzero(~ok)
    good_payload = (int(failed[0]) * cb.payload_bits if failed.size else blocks * cb.payload_bits) // 8
    fields = {"mcs": m.name, "source": src, "code_blocks": int(blocks), "blocks_failed": int(failed.size),
              "bler": float(failed.size / blocks) if blocks else 1.0}
    gray = np.full((height, width, 3), source.GRAY, dtype=np.uint8)
    if good_payload < HEADER_BYTES:
        return Received(gray, b"", 0, ok, bits, llr, {**fields, "codestream_bytes": 0, "good_bytes": 0,
                                                      "decoded": False})
    version, src_id, length, _ = _HEADER.unpack(raw[:HEADER_BYTES])
    if version != VERSION or src_id >= len(source.SOURCES) or source.SOURCES[src_id] != src \
            or length > len(raw) - HEADER_BYTES:
        return Received(gray, b"", 0, ok, bits, llr, {**fields, "codestream_bytes": 0, "good_bytes": 0,
                                                      "decoded": False})
    data = raw[HEADER_BYTES:HEADER_BYTES + length]
    good = min(length, good_payload - HEADER_BYTES)
    image, decoded = source.decode_prefix(src, data, good, height, width)
    return Received(image, data, good, ok, bits, llr, {**fields, "codestream_bytes": length, "good_bytes": good,
                                                 "decoded": decoded})
