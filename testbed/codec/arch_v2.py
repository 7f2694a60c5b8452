"""Codec v2: the deep JSCC codec re-laid out for its CPU cost (same symbols, same ONNX contract).

Codec v1 spends most of its time in 5x5 stride-2 convolutions at 1/2 and 1/4 resolution. v2 puts
its capacity where positions are few:

* encoder: a 4x4 patch embedding straight to 1/4 resolution (a stride-4 convolution: what v1
  does with two 5x5/3x3 stride-2 convolutions), then 2x2 patch merging to 1/8 and 1/16;
* decoder: 1x1 convolutions followed by pixel shuffle back up (no transposed 5x5 convolutions),
  and a head at 1/4 resolution that emits 4x4 pixel patches;
* every stage: inverted-bottleneck blocks (depthwise ``kernel x kernel`` + pointwise expand and
  project, in the manner of ConvNeXt / MobileNetV2) with a learnt per-channel residual scale, so
  that the 1/16-resolution stage, where most blocks sit, is wide and deep for few multiply-adds;
* GDN after each resolution change, and the (SNR, rate) channel attention of v1
  (:class:`~testbed.codec.layers.ContextAttention`) after every stage, so one model serves the
  whole SNR range and every rate;
* beside the deep path, v1's linear 16x16-block path (PCA-initialised, :mod:`pca_init`).

The latent, symbol order and power normalisation are v1's (:mod:`testbed.codec.symbols`), so the
graphs of :mod:`testbed.codec.graphs` export it unchanged and every runtime uses it as it is.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
import torch.nn.functional as F

from . import symbols as sym
from .layers import GDN, ContextAttention, side_vector


@dataclass(frozen=True)
class CodecConfigV2:
    arch: str = "v2"
    widths: tuple = (48, 128, 256)     # channels at 1/4, 1/8, 1/16 resolution
    enc_depths: tuple = (0, 1, 3)      # blocks per stage, encoder (1/4, 1/8, 1/16)
    dec_depths: tuple = (1, 1, 5)      # blocks per stage, decoder (1/4, 1/8, 1/16)
    expansions: tuple = (2, 3, 3)      # inverted-bottleneck expansion of the pointwise MLP, per stage
    kernel: int = 5                    # depthwise kernel
    head_kernel: int = 1               # kernel of the decoder's head (1/4 resolution -> 4x4 pixel patches)
    max_symbols: int = 48
    snr_min_db: float = 0.0
    snr_max_db: float = 20.0

    def __post_init__(self):
        if self.arch != "v2":
            raise ValueError(f"arch {self.arch!r}: CodecConfigV2 describes arch 'v2'")
        for name in ("widths", "enc_depths", "dec_depths", "expansions"):
            v = getattr(self, name)
            if len(v) != 3 or not all(isinstance(x, int) and x >= 0 for x in v):
                raise ValueError(f"{name} {v!r}: three non-negative integers (1/4, 1/8, 1/16 resolution)")
        if min(self.widths) < 1 or min(self.expansions) < 1 or min(self.kernel, self.head_kernel) < 1 \
                or self.kernel % 2 == 0 or self.head_kernel % 2 == 0:
            raise ValueError(f"widths {self.widths}, expansions {self.expansions}, kernel {self.kernel}, head_kernel "
                             f"{self.head_kernel}: positive, and odd kernels")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "CodecConfigV2":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class Block(nn.Module):
    """``x + scale * pw2(lrelu(pw1(dw(x))))``: depthwise spatial mixing, pointwise channel MLP (the
    leaky ReLU fuses into the convolution in onnxruntime; GELU cost 5-10 % of the graph's time).

    ``scale`` (per channel) starts small, so that a deep stack starts close to the identity."""

    def __init__(self, channels: int, expansion: int, kernel: int, init_scale: float = 0.1):
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, kernel, 1, kernel // 2, groups=channels)
        self.pw1 = nn.Conv2d(channels, expansion * channels, 1)
        self.pw2 = nn.Conv2d(expansion * channels, channels, 1)
        self.scale = nn.Parameter(torch.full((channels, 1, 1), init_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.pw2(F.leaky_relu(self.pw1(self.dw(x)), 0.2))


def _stage(channels: int, depth: int, expansion: int, cfg: CodecConfigV2) -> nn.Sequential:
    return nn.Sequential(*[Block(channels, expansion, cfg.kernel) for _ in range(depth)])


class Analysis(nn.Module):
    """Image [B, 3, H, W] (H, W multiples of 16, values centred on 0) -> features [B, C3, H/16, W/16]."""

    def __init__(self, cfg: CodecConfigV2, n_side: int = 2):
        super().__init__()
        c1, c2, c3 = cfg.widths
        self.downs = nn.ModuleList([nn.Conv2d(3, c1, 4, 4), nn.Conv2d(c1, c2, 2, 2), nn.Conv2d(c2, c3, 2, 2)])
        self.gdns = nn.ModuleList([GDN(c) for c in cfg.widths])
        self.stages = nn.ModuleList([_stage(c, d, e, cfg) for c, d, e in zip(cfg.widths, cfg.enc_depths, cfg.expansions)])
        self.atts = nn.ModuleList([ContextAttention(c, n_side) for c in cfg.widths])

    def forward(self, h: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        for down, gdn, stage, att in zip(self.downs, self.gdns, self.stages, self.atts):
            h = att(stage(gdn(down(h))), side)
        return h


class Synthesis(nn.Module):
    """Features [B, C3, h, w] -> image residual [B, 3, 16h, 16w] (the head starts at zero)."""

    def __init__(self, cfg: CodecConfigV2, n_side: int = 2):
        super().__init__()
        c1, c2, c3 = cfg.widths
        self.stages = nn.ModuleList([_stage(c, d, e, cfg) for c, d, e in
                                     zip((c3, c2, c1), reversed(cfg.dec_depths), reversed(cfg.expansions))])
        self.atts = nn.ModuleList([ContextAttention(c, n_side) for c in (c3, c2, c1)])
        self.gdns = nn.ModuleList([GDN(c, inverse=True) for c in (c3, c2, c1)])
        self.ups = nn.ModuleList([nn.Conv2d(c3, 4 * c2, 1), nn.Conv2d(c2, 4 * c1, 1)])
        self.head = nn.Conv2d(c1, 3 * 16, cfg.head_kernel, 1, cfg.head_kernel // 2)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, h: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        for i, (stage, att, gdn) in enumerate(zip(self.stages, self.atts, self.gdns)):
            h = gdn(att(stage(h), side))
            if i < len(self.ups):
                h = F.pixel_shuffle(self.ups[i](h), 2)
        return F.pixel_shuffle(self.head(h), 4)


class EncoderV2(nn.Module):
    """Same interface as v1's encoder: (x in [0, 1], snr_db [B], k [B]) -> latent [B, 2S, H/16, W/16]."""

    def __init__(self, cfg: CodecConfigV2):
        super().__init__()
        s = cfg.max_symbols
        self.s_max = s
        self.analysis = Analysis(cfg)
        self.out = nn.Conv2d(cfg.widths[-1], 2 * s, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.linear = nn.Conv2d(3, 2 * s, sym.STRIDE, sym.STRIDE, bias=False)

    def forward(self, x: torch.Tensor, snr_db: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        side = side_vector(snr_db, k, self.s_max)
        return self.out(self.analysis(x - 0.5, side)) + self.linear(x - 0.5)


class DecoderV2(nn.Module):
    """Same interface as v1's decoder: (latent [B, 2S, h, w], snr_db, k) -> image [B, 3, 16h, 16w], ~[0, 1]."""

    def __init__(self, cfg: CodecConfigV2):
        super().__init__()
        s = cfg.max_symbols
        self.s_max = s
        self.inp = nn.Conv2d(2 * s, cfg.widths[-1], 1)
        self.synthesis = Synthesis(cfg)
        self.linear = nn.ConvTranspose2d(2 * s, 3, sym.STRIDE, sym.STRIDE)

    def forward(self, y: torch.Tensor, snr_db: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        side = side_vector(snr_db, k, self.s_max)
        return self.synthesis(self.inp(y), side) + self.linear(y) + 0.5
