"""Print the BENCHMARKS.md tables (markdown) from `testbed eval` run folders."""
import json
import sys
from pathlib import Path


def f(v, fmt=".2f"):
    return format(v, fmt) if v is not None else "-"


for run in sys.argv[1:]:
    s = json.loads((Path(run) / "summary.json").read_text())
    print(f"\n**{s['model']}, CBR {s['cbr']:.4f} (k = {s['symbols_per_location']}), {s['channel']}, "
          f"{s['n_images']} images, seed {s['seed']}** (`{run}`)\n")
    print("| SNR (dB) | PSNR (dB) | MS-SSIM | JPEG @ capacity | JPEG 2000 @ capacity | capacity bpp | encode ms | decode ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in s["results"]:
        jp = f(r["jpeg_psnr_db"]) + ("" if r["jpeg_achievable"] == r["n_images"] else f" ({r['jpeg_achievable']}/{r['n_images']})")
        print(f"| {r['snr_db']:g} | {f(r['psnr_db'])} | {f(r['ms_ssim'], '.4f')} | {jp} | {f(r['jpeg2000_psnr_db'])} "
              f"| {f(r['capacity_bpp'], '.3f')} | {f(r['encode_ms'], '.0f')} | {f(r['decode_ms'], '.0f')} |")
