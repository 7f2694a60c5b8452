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


class DeviceCropSampler:
    """:class:`CropSampler` with the images and the draws on a torch device (the GPU's training data).

    Every image is held once, flattened into one uint8 buffer on ``device``; a batch is one gather
    of ``n`` random ``crop x crop`` windows (with random horizontal and vertical flips) drawn by
    ``gen``, a generator on the same device, so that a step moves no image data between host and
    device. Images smaller than the crop are reflect-padded up to it when loaded. ``mosaic`` as in
    :class:`CropSampler`."""

    def __init__(self, arrays: list[np.ndarray], crop: int, mosaic: int = 1, device: str | torch.device = "cpu"):
        if not arrays:
            raise ValueError("no training images")
        self.crop, self.mosaic, self.device = int(crop), int(mosaic), torch.device(device)
        flat, offsets, heights, widths, at = [], [], [], [], 0
        for a in arrays:
            h, w = a.shape[:2]
            if h < crop or w < crop:
                a = np.pad(a, ((0, max(0, crop - h)), (0, max(0, crop - w)), (0, 0)), mode="reflect")
                h, w = a.shape[:2]
            flat.append(np.ascontiguousarray(a, dtype=np.uint8).reshape(-1))
            offsets.append(at)
            heights.append(h)
            widths.append(w)
            at += h * w * 3
        self.buffer = torch.from_numpy(np.concatenate(flat)).to(self.device)
        self.offsets = torch.tensor(offsets, dtype=torch.int64, device=self.device)
        self.heights = torch.tensor(heights, dtype=torch.int64, device=self.device)
        self.widths = torch.tensor(widths, dtype=torch.int64, device=self.device)
        self.nbytes = int(self.buffer.numel())

    def _crops(self, gen: torch.Generator, n: int) -> torch.Tensor:
        """[n, 3, c, c] float in [0, 1]."""
        c, dev = self.crop, self.device
        idx = torch.randint(len(self.offsets), (n,), generator=gen, device=dev)
        h, w = self.heights[idx], self.widths[idx]
        y0 = (torch.rand(n, generator=gen, device=dev) * (h - c + 1)).long().clamp_(max=h - c)
        x0 = (torch.rand(n, generator=gen, device=dev) * (w - c + 1)).long().clamp_(max=w - c)
        flip_x = torch.rand(n, generator=gen, device=dev) < 0.5
        flip_y = torch.rand(n, generator=gen, device=dev) < 0.5
        r = torch.arange(c, device=dev)
        rows = torch.where(flip_y[:, None], c - 1 - r, r) + y0[:, None]       # [n, c]
        cols = torch.where(flip_x[:, None], c - 1 - r, r) + x0[:, None]       # [n, c]
        pix = self.offsets[idx][:, None, None] + (rows[:, :, None] * w[:, None, None] + cols[:, None, :]) * 3
        chan = torch.arange(3, device=dev)
        vals = self.buffer[(pix[:, None] + chan[None, :, None, None])]            # [n, 3, c, c] uint8
        return vals.float().div_(255.0)

    def sample(self, gen: torch.Generator, n: int) -> torch.Tensor:
        """[n, 3, S, S] on the device, S = mosaic * crop."""
        c, m = self.crop, self.mosaic
        if m == 1:
            return self._crops(gen, n)
        tiles = self._crops(gen, n * m * m).reshape(n, m, m, 3, c, c)
        return tiles.permute(0, 3, 1, 4, 2, 5).reshape(n, 3, m * c, m * c)
