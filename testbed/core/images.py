"""Image input: find, validate and load images as 8-bit RGB arrays.

Every problem is reported with the file it concerns. Conversions that change the data
(grayscale to RGB, dropping alpha, 16-bit to 8-bit, palette) are logged as warnings.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .wire import BLOCK_PIXELS  # noqa: F401  (the codecs' 16 x 16-pixel blocks; re-exported)


log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")


class ImageInputError(ValueError):
    """An image file or folder cannot be used; the message names it."""


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files directly inside ``folder`` (or ``folder`` itself if it is a file)."""
    p = Path(folder)
    if not p.exists():
        raise ImageInputError(f"{p}: no such file or folder")
    if p.is_file():
        return [p]
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageInputError(
            f"{p}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})"
        )
    return files


def _rawmode(img: Image.Image) -> str:
    """The decoder's raw mode before ``load()`` (``RGB;16B`` for a 16-bit RGB PNG, which Pillow
    hands over as 8-bit ``RGB``), or ``""``."""
    try:
        args = img.tile[0].args if img.tile else None
    except (AttributeError, IndexError):
        return ""
    raw = args[0] if isinstance(args, tuple) and args else args
    return raw if isinstance(raw, str) else ""


def _bits_for(peak: float) -> int:
    """The fewest bits (8, 10, 12, 14, 16, 24 or 32) that hold ``peak``."""
    return next((b for b in (8, 10, 12, 14, 16, 24) if peak <= 2 ** b - 1), 32)


def _gray_to_uint8(img: Image.Image, path: Path) -> np.ndarray:
    """A one-channel 16-bit, 32-bit integer or float image to 8 bits by its real range: 16-bit by
    0..65535; 32-bit integer by the fewest bits that hold its values (0..255 stays as it is);
    float by 0..1 (or its peak when above 1); negative values are shifted to 0."""
    mode = img.mode
    a = np.asarray(img, dtype=np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        log.warning("%s: %d non-finite pixel value(s) set to 0", path, int(bad.sum()))
        a = np.where(bad, 0.0, a)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo < 0:
        log.warning("%s: %s image has negative values (%g..%g); scaled from its minimum", path, mode, lo, hi)
        a, hi = a - lo, hi - lo
    if mode.startswith("I;16"):
        peak, what = 65535.0, "16-bit image"
    elif mode == "I":
        bits = _bits_for(hi)
        peak, what = 2.0 ** bits - 1, f"32-bit integer image with {bits}-bit values (0..{hi:g})"
    else:   # F
        peak, what = max(1.0, hi), f"floating-point image (0..{hi:g})"
    if peak > 255:
        log.warning("%s: %s converted to 8 bits (precision reduced)", path, what)
    elif mode != "F":
        log.warning("%s: %s taken as 8-bit", path, what)
    else:
        log.warning("%s: %s converted to 8 bits", path, what)
    a = np.clip(np.round(a / peak * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(a[:, :, None], 3, axis=2)


def _to_uint8_rgb(img: Image.Image, path: Path, rawmode: str = "") -> np.ndarray:
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _gray_to_uint8(img, path)
    if rawmode.endswith((";16B", ";16L", ";16N")):   # 16 bits per channel: Pillow keeps the high byte
        log.warning("%s: 16-bit %s image converted to 8 bits (precision reduced)", path, mode)
    if mode in ("L", "1"):
        log.warning("%s: grayscale image replicated to 3 channels", path)
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    if mode in ("LA", "RGBA", "PA") or (mode == "P" and "transparency" in img.info):
        log.warning("%s: alpha channel dropped", path)
        return np.asarray(img.convert("RGBA"), dtype=np.uint8)[:, :, :3].copy()
    if mode != "RGB":
        log.warning("%s: %s image converted to RGB", path, mode)
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.asarray(img, dtype=np.uint8)


def load_rgb(path: str | Path) -> np.ndarray:
    """Load ``path`` as a [H, W, 3] uint8 array, or raise :class:`ImageInputError`."""
    p = Path(path)
    try:
        with Image.open(p) as img:
            raw = _rawmode(img)      # known before load() only
            img.load()
            arr = _to_uint8_rgb(img, p, raw)
    except FileNotFoundError:
        raise ImageInputError(f"{p}: no such file") from None
    except UnidentifiedImageError:
        raise ImageInputError(f"{p}: not a readable image (unknown or corrupt format)") from None
    except Image.DecompressionBombError as e:
        raise ImageInputError(f"{p}: image too large to load safely ({e})") from None
    except MemoryError:
        raise ImageInputError(f"{p}: image too large for the memory available") from None
    except ImageInputError:
        raise
    except Exception as e:  # any decoder failure of one file must not stop a whole run
        raise ImageInputError(f"{p}: cannot decode image ({type(e).__name__}: {e})") from None
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise ImageInputError(f"{p}: empty image ({w}x{h})")
    if h < BLOCK_PIXELS or w < BLOCK_PIXELS:
        log.warning(
            "%s: %dx%d is smaller than the codec's %dx%d block; it is padded, so its CBR is high",
            p, w, h, BLOCK_PIXELS, BLOCK_PIXELS,
        )
    return arr if arr.flags.writeable and arr.flags.c_contiguous else np.array(arr, order="C")


def save_rgb(arr: np.ndarray, path: str | Path) -> None:
    Image.fromarray(arr).save(path)


def load_images(folder: str) -> tuple[list[tuple[Path, np.ndarray]], list[dict]]:
    """Load every image of ``folder``; unreadable ones are skipped with a warning naming them."""
    ok, skipped = [], []
    for f in list_images(folder):
        try:
            ok.append((f, load_rgb(f)))
        except ImageInputError as e:
            log.warning("skipping %s", e)
            skipped.append({"file": str(f), "error": str(e)})
    if not ok:
        raise ImageInputError(f"{folder}: none of the {len(skipped)} image file(s) could be read")
    return ok, skipped
