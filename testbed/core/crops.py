"""Training crops: random crops and flips of images held in memory (the trainers' batch source)."""
from __future__ import annotations

import numpy as np
import torch


class CropSampler:
    """Random crops + horizontal/vertical flips from images held in memory as uint8.

    ``mosaic`` m > 1: each sample is an m x m canvas of independent crops (side ``m * crop``).
    In a single crop every pixel lies within crop/2 of a border, and the codec learns to count
    on that (zero padding tells a convolution where the border is): on whole Kodak images, whose
    middle lies 256 pixels from any border, it is worse than when the same image is coded in
    256-pixel tiles (BENCHMARKS.md, "Stage 4"). A canvas puts most of its pixels far from a border
    while every crop still comes from one training image."""

    def __init__(self, arrays: list[np.ndarray], crop: int, mosaic: int = 1):
        self.arrays = arrays
        self.crop = crop
        self.mosaic = int(mosaic)

    def sample(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        c, m = self.crop, self.mosaic
        if m > 1:
            tiles = self._crops(rng, n * m * m)               # [n*m*m, c, c, 3]
            canvas = tiles.reshape(n, m, m, c, c, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, m * c, m * c, 3)
            return torch.from_numpy(np.ascontiguousarray(canvas)).permute(0, 3, 1, 2).float().div_(255.0)
        return torch.from_numpy(self._crops(rng, n)).permute(0, 3, 1, 2).float().div_(255.0)

    def _crops(self, rng: np.random.Generator, n: int) -> np.ndarray:
        out = np.empty((n, self.crop, self.crop, 3), dtype=np.uint8)
        c = self.crop
        for i in range(n):
            a = self.arrays[rng.integers(len(self.arrays))]
            h, w = a.shape[:2]
            if h < c or w < c:
                a = np.pad(a, ((0, max(0, c - h)), (0, max(0, c - w)), (0, 0)), mode="reflect")
                h, w = a.shape[:2]
            y = rng.integers(h - c + 1)
            x = rng.integers(w - c + 1)
            p = a[y : y + c, x : x + c]
            if rng.random() < 0.5:
                p = p[:, ::-1]
            if rng.random() < 0.5:
                p = p[::-1]
            out[i] = p
        return out
