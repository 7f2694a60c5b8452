"""Source coding of the digital baselines: JPEG (libjpeg) and JPEG 2000 (OpenJPEG), both through
Pillow, coded to a byte budget, and decoding of what survived the channel.

JPEG 2000 is coded in ``LAYERS`` quality layers with layer-major (LRCP) progression, so every
prefix of the codestream holds a coarser version of the whole image. A receiver that lost a code
block keeps the longest error-free prefix and zero-fills the rest up to the codestream's length:
the zero bytes read as empty packets, so OpenJPEG decodes the layers (and parts of layers) that
arrived. JPEG is sequential: a cut stream decodes the rows before the cut, the rest gray.
A stream that cannot be decoded at all (its header lost) gives :data:`GRAY`.
"""
from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFile

SOURCES = ("jpeg2000", "jpeg")
LAYERS = 8
GRAY = 128          # the image shown when nothing decodable arrived
_J2K_RESOLUTIONS = 6


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _j2k(pil: Image.Image, target_bytes: int, layers: int) -> bytes:
    ratio = pil.width * pil.height * 3 / max(target_bytes, 1)
    rates = [ratio * layers / (i + 1) for i in range(layers)]       # cumulative: layer i ends at (i+1)/L
    b = io.BytesIO()
    pil.save(b, "JPEG2000", quality_mode="rates", quality_layers=rates, irreversible=True, mct=1,
             num_resolutions=_J2K_RESOLUTIONS, progression="LRCP", no_jp2=True)
    return b.getvalue()


def jpeg2000_at_budget(img: np.ndarray, max_bytes: int, layers: int = LAYERS) -> bytes | None:
    """The JPEG 2000 codestream (``layers`` quality layers) of at most ``max_bytes`` closest to
    it (OpenJPEG's rate control, corrected a few times), or None if none fits."""
    pil = Image.fromarray(img)
    target = max_bytes
    for _ in range(8):
        data = _j2k(pil, target, layers)
        if len(data) <= max_bytes:
            return data
        target = int(target * max_bytes / len(data) * 0.98)
        if target < 64:
            return None
    return None


def jpeg_at_budget(img: np.ndarray, max_bytes: int) -> bytes | None:
    """The best-quality JPEG (quality 1..95, optimised Huffman tables) of at most ``max_bytes``,
    or None if even quality 1 is larger."""
    pil = Image.fromarray(img)

    @lru_cache(maxsize=None)
    def enc(q: int) -> bytes:
        b = io.BytesIO()
        pil.save(b, "JPEG", quality=q, optimize=True)
        return b.getvalue()

    lo, hi, best = 1, 95, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if len(enc(mid)) <= max_bytes:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return None if best is None else enc(best)


def encode(source: str, img: np.ndarray, max_bytes: int) -> bytes | None:
    if source == "jpeg2000":
        return jpeg2000_at_budget(img, max_bytes)
    if source == "jpeg":
        return jpeg_at_budget(img, max_bytes)
    raise ValueError(f"source coder {source!r}: one of {', '.join(SOURCES)}")


def smallest(source: str, img: np.ndarray) -> int:
    """Bytes of the smallest codestream the source coder makes of ``img`` (for error messages)."""
    if source == "jpeg":
        return len(_jpeg_q1(img))
    return len(_j2k(Image.fromarray(img), 64, 1))


def _jpeg_q1(img: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(img).save(b, "JPEG", quality=1, optimize=True)
    return b.getvalue()


def decode_prefix(source: str, data: bytes, good: int, height: int, width: int) -> tuple[np.ndarray, bool]:
    """The image a receiver shows from a codestream of which only the first ``good`` bytes are
    known to be right: (image [H, W, 3] uint8, True if anything was decoded). A decoded image of
    another size than announced counts as nothing decoded."""
    good = max(0, min(good, len(data)))
    try:
        if source == "jpeg2000":
            if good == len(data):
                img = _decode(data)
            else:       # zero bytes read as empty packets; keep the end-of-codestream marker
                img = _decode(data[:good] + bytes(max(0, len(data) - 2 - good)) + b"\xff\xd9")
        elif source == "jpeg":
            if good == len(data):
                img = _decode(data)
            else:
                img = _decode_truncated(data[:good])
        else:
            raise ValueError(f"source coder {source!r}: one of {', '.join(SOURCES)}")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        img = None
    if img is None or img.shape != (height, width, 3):
        return np.full((height, width, 3), GRAY, dtype=np.uint8), False
    return img, True


def _decode_truncated(data: bytes) -> np.ndarray:
    """A cut JPEG: the rows before the cut (Pillow fills the rest with gray)."""
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        return _decode(data)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old
