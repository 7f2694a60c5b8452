"""Plots written by the run commands (matplotlib, Agg backend, no display needed)."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
# Debian's matplotlib (visible through the venv's system site packages, next to the pinned one)
# makes the 3-D toolkit fail to import; no plot here is 3-D, so the warning is only noise
warnings.filterwarnings("ignore", message="Unable to import Axes3D")
import matplotlib.pyplot as plt  # noqa: E402

from .runlog import write_bytes_atomic  # noqa: E402


def plot_psnr_vs_snr(results: list[dict], path: str | Path, title: str = "") -> None:
    snr = [r["snr_db"] for r in results]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(snr, [r["psnr_db"] for r in results], "o-", label="JSCC (this model)")
    for key, label, style in (("jpeg2000_psnr_db", "JPEG 2000 @ capacity", "s--"),
                              ("jpeg_psnr_db", "JPEG @ capacity", "^:")):
        pts = [(r["snr_db"], r[key]) for r in results if r.get(key) is not None]
        if not pts:
            continue
        ax.plot(*zip(*pts), style, label=label)
        # a separation mean covers only the images whose budget fits a file: say so at the point
        count = key.replace("_psnr_db", "_achievable")
        for r in results:
            k, n = r.get(count), r.get("n_images")
            if r.get(key) is not None and k is not None and n and k < n:
                ax.annotate(f"{k}/{n}", (r["snr_db"], r[key]), textcoords="offset points", xytext=(4, -10),
                            fontsize=7)
    ax.set_xlabel("SNR (Es/N0) [dB]")
    ax.set_ylabel("PSNR [dB]")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def save_png(fig, path: str | Path) -> None:
    """Write ``fig`` as a PNG atomically (a killed run never leaves half a picture) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
