"""``testbed eval --figures``: entropy map, chosen rate map and reconstruction of one image per SNR."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.metrics import psnr
from . import ratemap as rm


def rate_map_pixels(levels: np.ndarray, h: int, w: int) -> np.ndarray:
    """Symbols per location [h, w] of a rate map."""
    rates = np.asarray(rm.RATE_SET)[levels]
    up = np.repeat(np.repeat(rates, rm.BLOCK_LOCATIONS, 0), rm.BLOCK_LOCATIONS, 1)
    return up[:h, :w]


def save_figures(out: Path, stem: str, img: np.ndarray, rec: np.ndarray, side, snr_db: float, cbr: float) -> Path:
    from ..core.plotting import plt, save_png

    d = Path(out) / "figures"
    d.mkdir(parents=True, exist_ok=True)
    H, W = img.shape[:2]
    h, w = rm.location_grid(H, W)
    fig, ax = plt.subplots(1, 4, figsize=(16, 3.6), dpi=100)
    ax[0].imshow(img)
    ax[0].set_title(f"{stem} (original)")
    em = side.entropy_map if side.entropy_map is not None else np.zeros((h, w))
    a1 = ax[1].imshow(em[:h, :w], cmap="magma")
    ax[1].set_title("entropy map (bits / location)")
    fig.colorbar(a1, ax=ax[1], fraction=0.035)
    a2 = ax[2].imshow(rate_map_pixels(side.levels, h, w), cmap="viridis", vmin=rm.RATE_SET[0], vmax=rm.RATE_SET[-1])
    if side.allocation == "measured":
        pol = "measured"
    else:
        pol = "policy" if side.offsets is not None else "fixed mapping"
    ax[2].set_title(f"rate map ({pol}), SNR {snr_db:g} dB")
    fig.colorbar(a2, ax=ax[2], fraction=0.035)
    ax[3].imshow(rec)
    ax[3].set_title(f"reconstruction: {psnr(img, rec):.2f} dB, CBR {cbr:.4f}")
    for a in ax:
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    path = d / f"{stem}_snr{snr_db:g}dB.png"
    save_png(fig, path)
    np.savez(d / f"{stem}_snr{snr_db:g}dB_maps.npz", entropy_map=em, levels=side.levels,
             offsets=side.offsets if side.offsets is not None else np.zeros_like(side.levels))
    return path
