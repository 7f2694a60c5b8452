"""Training-image packs: a training set re-encoded to fit a size budget, for a GPU machine.

A GPU run takes the checkout plus what it carries, at most 64 MiB in all (docs/training.md), so
the 400 BSDS500 training images (98.5 MiB of PNG) travel re-encoded: ``testbed train pack``
writes the training images as lossy WebP at the highest quality whose total fits
``--budget-mb``, and the first ``--val-images`` validation images as PNG (lossless).
``pack.json`` records the sources, the quality, the sizes and the PSNR of the packed images
against their sources (what the re-encoding cost), so a run's data is on record.

WebP, because it keeps the most at this size (measured on 50 of the training images, at the
size of the default budget: JPEG 4:4:4 33.6 dB mean / 28.9 dB worst, JPEG 4:2:0 34.3 / 30.3,
WebP 36.3 / 34.2), and every Pillow build decodes it (AVIF, better still, is not in all).

The folder is written next to its final place and renamed into it, so an interrupted run leaves
no half pack; an existing pack is replaced only with ``--force``.
"""
from __future__ import annotations

import datetime as dt
import io
import logging
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from . import images as imgio
from .runlog import write_json_atomic

log = logging.getLogger(__name__)

MANIFEST = "pack.json"
QUALITIES = range(50, 99)     # WebP qualities searched (libwebp's scale)


def _encode(a: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="WEBP", quality=quality, method=4)
    return buf.getvalue()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def build_pack(data: str | Path, out: str | Path, *, val: str | Path | None = None, val_images: int = 12,
               budget_mb: float = 15.0, force: bool = False) -> dict:
    """Write the pack (``train/*.jpg``, ``val/*.png``, ``pack.json``) to ``out``; returns the manifest."""
    if not (np.isfinite(budget_mb) and budget_mb > 0):
        raise ValueError(f"--budget-mb: must be a positive number of megabytes, got {budget_mb}")
    if val_images < 0:
        raise ValueError(f"--val-images: must be >= 0, got {val_images}")
    out = Path(out)
    if out.exists() and not force:
        raise ValueError(f"--out {out}: exists; pass --force to replace it")
    files = imgio.list_images(data)
    if not files:
        raise ValueError(f"--data {data}: no images")
    arrays = [imgio.load_rgb(f) for f in files]
    val_files = imgio.list_images(val)[:val_images] if val is not None and val_images else []
    val_bytes = []
    for f in val_files:
        buf = io.BytesIO()
        Image.fromarray(imgio.load_rgb(f)).save(buf, format="PNG", optimize=True)
        val_bytes.append(buf.getvalue())
    budget = budget_mb * 1e6 - sum(len(b) for b in val_bytes)
    if budget <= 0:
        raise ValueError(f"--budget-mb {budget_mb}: the {len(val_files)} validation images alone take "
                         f"{sum(len(b) for b in val_bytes) / 1e6:.1f} MB")
    # the highest quality that fits: sizes grow with quality, so bisect
    lo, hi, best = QUALITIES.start, QUALITIES.stop - 1, None
    while lo <= hi:
        q = (lo + hi) // 2
        enc = [_encode(a, q) for a in arrays]
        total = sum(len(b) for b in enc)
        log.info("WebP quality %d: %.2f MB", q, total / 1e6)
        if total <= budget:
            best, lo = (q, enc), q + 1
        else:
            hi = q - 1
    if best is None:
        raise ValueError(f"--budget-mb {budget_mb}: {len(arrays)} images do not fit even at WebP quality "
                         f"{QUALITIES.start} (allow more, or pack fewer images)")
    quality, enc = best
    psnrs = [_psnr(a, np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))) for a, b in zip(arrays, enc)]
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "train").mkdir(parents=True)
    for f, b in zip(files, enc):
        (tmp / "train" / (f.stem + ".webp")).write_bytes(b)
    if val_files:
        (tmp / "val").mkdir()
        for f, b in zip(val_files, val_bytes):
            (tmp / "val" / (f.stem + ".png")).write_bytes(b)
    manifest = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "train": {"source": str(data), "images": len(files), "format": "WebP", "quality": quality,
                  "bytes": sum(len(b) for b in enc), "psnr_vs_source_db": {
                      "mean": round(float(np.mean(psnrs)), 2), "min": round(float(np.min(psnrs)), 2)}},
        "val": {"source": str(val) if val_files else None, "images": len(val_files), "format": "PNG",
                "bytes": sum(len(b) for b in val_bytes)},
        "budget_mb": budget_mb,
    }
    write_json_atomic(tmp / MANIFEST, manifest)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log.info("pack %s: %d training images at WebP quality %d (%.2f MB, %.2f dB vs source), %d validation images",
             out, len(files), quality, manifest["train"]["bytes"] / 1e6, manifest["train"]["psnr_vs_source_db"]["mean"],
             len(val_files))
    return manifest
