"""Codec v1 on whole images against the same images coded in tiles (BENCHMARKS.md, "Stage 4").

Each image is encoded either whole or tile by tile (a T x T grid from the top left; edge tiles
smaller), the tiles' latents put back together and power-normalised over the whole image (so the
image's symbols and power are exactly those of whole-image coding), sent through AWGN, and decoded
whole or tile by tile. Prints mean PSNR per (encoder tiles, decoder tiles) and symbols per block.

    .venv/bin/python scripts/bench_tiles.py [--model models/jscc-v1] [--data ../shared/data/kodak] [--snr-db 10]
"""
import argparse
from pathlib import Path

import numpy as np
import torch

from testbed.codec import stream as st
from testbed.codec import symbols as sym
from testbed.codec.onnx_weights import load_from_onnx
from testbed.core.images import load_images

ap = argparse.ArgumentParser()
ap.add_argument("--model", default=str(Path(__file__).resolve().parents[1] / "models" / "jscc-v1"))
ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"))
ap.add_argument("--snr-db", type=float, default=10.0)
ap.add_argument("--cases", default="0:0,256:0,0:256,256:256,128:128,384:384,512:512",
                help="ENC_TILE:DEC_TILE pairs (0: whole image)")
a = ap.parse_args()
torch.set_num_threads(2)
model = load_from_onnx(a.model)
images = [torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255
          for _, img in load_images(a.data)[0]]
for x in images:
    if x.shape[-1] % sym.STRIDE or x.shape[-2] % sym.STRIDE:
        raise SystemExit(f"{a.data}: image sizes must be multiples of {sym.STRIDE} for this benchmark")


def spans(n: int, t: int):
    return [(i, min(t, n - i)) for i in range(0, n, t)] if t else [(0, n)]


def encode(x, s, k, t):
    h, w = x.shape[-2:]
    z = torch.zeros(1, 2 * model.cfg.max_symbols, h // 16, w // 16)
    for i, th in spans(h, t):
        for j, tw in spans(w, t):
            z[..., i // 16:(i + th) // 16, j // 16:(j + tw) // 16] = model.encoder(x[..., i:i + th, j:j + tw], s, k)
    return z


def decode(rx, s, k, t, h, w):
    out = torch.zeros(1, 3, h, w)
    for i, th in spans(h, t):
        for j, tw in spans(w, t):
            out[..., i:i + th, j:j + tw] = model.decode(rx[:, :, i // 16:(i + th) // 16, j // 16:(j + tw) // 16], s, k)
    return out


print(f"\n{a.model} on {a.data} ({len(images)} images), AWGN {a.snr_db:g} dB, mean PSNR (dB)\n")
print("| encoder tiles | decoder tiles | k = 48 (CBR 1/16) | k = 16 (CBR 1/48) |")
print("|---|---|---:|---:|")
with torch.no_grad():
    for case in a.cases.split(","):
        te, td = (int(v) for v in case.split(":"))
        row = []
        for k in (48, 16):
            ps = []
            for n, x in enumerate(images):
                g = torch.Generator().manual_seed(n)
                s, kk = torch.tensor([a.snr_db]), torch.tensor([k])
                zc = st.normalize_power(encode(x, s, kk, te), kk)
                noise = torch.randn(zc.shape, generator=g) * np.sqrt(0.5 * 10 ** (-a.snr_db / 10))
                rx = (zc + noise) * st.symbols_mask(kk, model.cfg.max_symbols)[:, :, None, None, None]
                y = torch.round(decode(rx, s, kk, td, *x.shape[-2:]).clamp(0, 1) * 255) / 255
                ps.append(10 * np.log10(1 / torch.mean((y - x) ** 2).item()))
            row.append(float(np.mean(ps)))
        name = lambda t: f"{t} px" if t else "whole image"   # noqa: E731
        print(f"| {name(te)} | {name(td)} | {row[0]:.2f} | {row[1]:.2f} |", flush=True)
