"""Image symbol stream <-> frames, and reassembly at the receiver.

A frame is ``header BPSK symbols | analog payload symbols`` (see :mod:`testbed.phy.header`).
The payload is the JSCC symbol stream itself, interleaved: with ``F`` frames, frame ``f``
carries ``stream[f::F]`` (header field ``payload_offset`` = f), in a fixed pseudo-random order
within the frame. The stream is importance-ordered and its power falls along it, so without
interleaving the first frames (and the first OFDM symbols of each frame) would be much louder
than the rest and clip at the transmitter, and losing frame 0 would lose every location's most
important symbols. Interleaved, every frame and OFDM symbol has about unit power, and a lost
frame zero-fills only its own symbols, spread over all importance levels.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from ..core.wire import block_grid
from . import header as hdr
from . import sideinfo
from .config import OfdmConfig
from .sideinfo import SideInfo

log = logging.getLogger(__name__)


def model_hash32(sha256_hex: str) -> int:
    return int(sha256_hex[:8], 16)


def make_frames(symbols: np.ndarray, *, image_id: int, height: int, width: int, symbols_per_location: int,
                model_sha256: str, cfg: OfdmConfig, side: SideInfo | None = None, mode: int = 0
                ) -> list[tuple[hdr.FrameHeader, np.ndarray]]:
    """Cut one image's complex symbol stream into (header, payload) frames.

    Variable-rate images (``side`` given, ``symbols_per_location`` 0) repeat the side information
    in every frame; it takes room from the frame's analog payload."""
    s = np.asarray(symbols, dtype=np.complex64).ravel()
    if s.size == 0:
        raise ValueError("no symbols to send")
    side_len = sideinfo.body_len(*side.levels.shape) if side is not None else 0
    capacity = cfg.payload_symbols_per_frame - sideinfo.ofdm_symbols(side_len, cfg.n_data) * cfg.n_data
    if capacity < cfg.n_data:
        raise ValueError(f"side information of {side_len} bytes leaves no room for payload in a frame of "
                         f"{cfg.payload_symbols_per_frame} symbols; raise payload_symbols_per_frame")
    count = -(-s.size // capacity)
    if count > 65535:
        raise ValueError(f"{s.size} symbols need {count} frames; raise payload_symbols_per_frame")
    frames = []
    for i in range(count):
        part = s[i::count]
        part = part[frame_permutation(part.size)]
        h = hdr.FrameHeader(image_id=image_id & 0xFFFF, frame_index=i, frame_count=count, height=height,
                            width=width, symbols_per_location=0 if side is not None else symbols_per_location,
                            n_payload=part.size, payload_offset=i, model_hash=model_hash32(model_sha256),
                            side_info_len=side_len, mode=mode)
        frames.append((h, part))
    return frames


def frame_permutation(n: int) -> np.ndarray:
    """The fixed order of a frame's ``n`` payload symbols (same at TX and RX)."""
    return np.random.default_rng(0xF4A3E + n).permutation(n)


def _signs(n: int) -> np.ndarray:
    return (1 - 2 * np.random.default_rng(0x5A17).integers(0, 2, n)).astype(np.float32)


def spread(x: np.ndarray, n_data: int) -> np.ndarray:
    """Unitary spreading of each OFDM symbol's ``n_data`` analog symbols over its data carriers
    (random signs, then a normalised DFT, as in DFT-spread OFDM).

    JSCC symbols are heavy-tailed: without it one large symbol can dominate an OFDM symbol, which
    then looks like a Schmidl & Cox preamble to the receiver (a pure tone has two equal halves)
    and has a high peak-to-average ratio. Spread, every carrier carries a mix and the OFDM signal
    is Gaussian-like. ``x`` has a multiple of ``n_data`` symbols.
    """
    m = np.asarray(x, np.complex64).reshape(-1, n_data) * _signs(n_data)[None, :]
    return (np.fft.fft(m, axis=1) / np.sqrt(n_data)).astype(np.complex64).ravel()


def despread(y: np.ndarray, n_data: int) -> np.ndarray:
    m = np.asarray(y, np.complex64).reshape(-1, n_data)
    return (np.fft.ifft(m, axis=1) * np.sqrt(n_data) * _signs(n_data)[None, :]).astype(np.complex64).ravel()


def frame_symbols(h: hdr.FrameHeader, payload: np.ndarray, cfg: OfdmConfig, side: SideInfo | None = None
                  ) -> np.ndarray:
    """Symbols handed to the carrier allocator: header BPSK, the side-information BPSK (variable-rate
    images), then the spread payload, zero-padded to whole OFDM symbols."""
    head = hdr.modulate(h, cfg.header_repetition, cfg.n_data)
    n_pay = -(-payload.size // cfg.n_data) * cfg.n_data
    pay = np.zeros(n_pay, np.complex64)
    pay[:payload.size] = payload
    parts = [head]
    if h.side_info_len:
        if side is None:
            raise ValueError(f"frame header announces {h.side_info_len} bytes of side information; none given")
        parts.append(sideinfo.modulate(side, cfg.n_data))
    parts.append(spread(pay, cfg.n_data))
    return np.concatenate(parts)


def payload_ofdm_symbols(n_payload: int, cfg: OfdmConfig, side_info_len: int = 0) -> int:
    """OFDM symbols after the header: side information (if any) and analog payload."""
    return sideinfo.ofdm_symbols(side_info_len, cfg.n_data) + -(-n_payload // cfg.n_data)


@dataclass
class FrameRx:
    """One received frame after equalisation."""
    header: hdr.FrameHeader
    symbols: np.ndarray          # equalised analog payload, complex [n_payload]
    snr_db: float                # per-frame SNR estimate
    cfo_hz: float = float("nan")
    extra: dict = field(default_factory=dict)
    side: SideInfo | None = None  # variable-rate images: rate map and KB index


@dataclass
class ImageRx:
    image_id: int
    height: int
    width: int
    symbols_per_location: int
    model_hash: int
    n_symbols: int
    frame_count: int
    stream: np.ndarray
    frames: dict[int, FrameRx] = field(default_factory=dict)
    side: SideInfo | None = None
    mode: int = 0                 # the codec's mode from the header (the digital codecs' MCS)

    @property
    def frames_decoded(self) -> int:
        return len(self.frames)

    @property
    def missing_frames(self) -> list[int]:
        return [i for i in range(self.frame_count) if i not in self.frames]

    @property
    def complete(self) -> bool:
        return len(self.frames) == self.frame_count

    def snr_db(self) -> float:
        """Mean SNR over the received frames (averaged in linear scale)."""
        v = [10 ** (f.snr_db / 10) for f in self.frames.values() if math.isfinite(f.snr_db)]
        return 10 * math.log10(float(np.mean(v))) if v else float("nan")

    def symbol_snr_db(self) -> np.ndarray:
        """Per symbol of :attr:`stream`, the SNR estimate of the frame that carried it (frame
        ``i`` carries ``stream[i::frame_count]``; the image's mean where a frame has no estimate);
        NaN for the symbols of missing frames."""
        out = np.full(self.n_symbols, np.nan)
        mean = self.snr_db()
        for i, f in self.frames.items():
            out[i::self.frame_count] = f.snr_db if math.isfinite(f.snr_db) else mean
        return out

    def cfo_hz(self) -> float:
        v = [f.cfo_hz for f in self.frames.values() if math.isfinite(f.cfo_hz)]
        return float(np.mean(v)) if v else float("nan")


def fixed_rate_symbols(h: hdr.FrameHeader, side: SideInfo | None = None) -> int:
    """Symbols of a fixed-rate image: ``symbols_per_location`` per 16 x 16-pixel block."""
    hb, wb = block_grid(h.height, h.width)
    return h.symbols_per_location * hb * wb


class Reassembler:
    """Collects frames per image; an image is released when complete, when a frame of another
    image arrives (frames of one image are sent back to back), or on :meth:`flush`.

    After a flush, the flushed image's remaining frames (same image, a higher frame index than any
    it got) are late: a receiver that stalled past the caller's idle timeout must not turn them
    into a second, partial copy of the image. They are dropped and counted in ``late``; a new
    transmission of the image (starting again at a frame it already had) is a new image.
    """

    def __init__(self, symbol_count=None):
        """``symbol_count(header, side)``: symbols of the image a frame belongs to, told by the
        caller, who knows the codec (default: ``symbols_per_location`` per 16 x 16 block, which
        is right for fixed-rate images only)."""
        self.symbol_count = symbol_count or fixed_rate_symbols
        self.current: ImageRx | None = None
        self.inconsistent = 0
        self.late = 0
        self._flushed: tuple | None = None    # (key, highest frame index) of the last flushed image

    def _new(self, h: hdr.FrameHeader, side: SideInfo | None) -> ImageRx:
        n = int(self.symbol_count(h, side))
        return ImageRx(image_id=h.image_id, height=h.height, width=h.width,
                       symbols_per_location=h.symbols_per_location, model_hash=h.model_hash,
                       n_symbols=n, frame_count=h.frame_count, stream=np.zeros(n, np.complex64), side=side,
                       mode=h.mode)

    @staticmethod
    def _key(h) -> tuple:
        """What identifies an image: the same fields in a frame header and in an :class:`ImageRx`."""
        return (h.image_id, h.height, h.width, h.symbols_per_location, h.frame_count, h.model_hash, h.mode)

    def _matches(self, img: ImageRx, fr: FrameRx) -> bool:
        same_side = (img.side is None and fr.side is None) or (
            img.side is not None and fr.side is not None and img.side.kb_index == fr.side.kb_index
            and np.array_equal(img.side.levels, fr.side.levels))
        return same_side and self._key(img) == self._key(fr.header)

    def add(self, frame: FrameRx) -> list[ImageRx]:
        h = frame.header
        done: list[ImageRx] = []
        if self._flushed is not None and self.current is None:
            key, last = self._flushed
            if key == self._key(h) and h.frame_index > last:
                self.late += 1
                log.warning("frame %d of image %d arrived after the image was flushed; dropped",
                            h.frame_index, h.image_id)
                return done
            self._flushed = None
        if h.side_info_len and frame.side is None:
            self.inconsistent += 1
            log.warning("frame %d of image %d announces side information but carries none; dropped",
                        h.frame_index, h.image_id)
            return done
        if self.current is not None and not self._matches(self.current, frame):
            done.append(self.current)
            self.current = None
        if self.current is None:
            self.current = self._new(h, frame.side)
        img = self.current
        idx = np.arange(h.payload_offset, img.n_symbols, h.frame_count)
        if h.payload_offset != h.frame_index or idx.size != h.n_payload or frame.symbols.size != h.n_payload:
            self.inconsistent += 1
            log.warning("frame %d of image %d does not fit the image stream (offset %d, %d symbols, image %d); dropped",
                        h.frame_index, h.image_id, h.payload_offset, h.n_payload, img.n_symbols)
            return done
        if h.frame_index in img.frames:
            log.info("duplicate frame %d of image %d ignored", h.frame_index, h.image_id)
            return done
        img.stream[idx[frame_permutation(idx.size)]] = frame.symbols
        img.frames[h.frame_index] = frame
        if img.complete:
            done.append(img)
            self.current = None
        return done

    def flush(self) -> list[ImageRx]:
        out = [self.current] if self.current is not None else []
        if self.current is not None and self.current.frames:
            self._flushed = (self._key(self.current), max(self.current.frames))
        self.current = None
        return out
