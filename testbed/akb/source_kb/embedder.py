"""The source KB's image embedder in PyTorch (trained with the AKB codec; exported as
``embedder.onnx``): :class:`ImageEmbedder`, and :class:`TorchEmbedderProvider` to build a KB with it."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...codec.arch_v2 import Analysis, CodecConfigV2
from ...codec.layers import GDN, ContextAttention, ResBlock, down_conv
from ...codec.model import arch_of
from .kb import THUMB, KbError


class ImageEmbedder(nn.Module):
    """The codec's encoder trunk on a thumbnail -> pooled features -> PCA projection (``dim`` values).

    The trunk is codec v1's layers, or codec v2's :class:`~testbed.codec.arch_v2.Analysis` when
    ``backbone`` (v2's config as a dict) is given."""

    def __init__(self, widths=(64, 96, 128, 160), kernels=(5, 3, 5, 5), dim: int = 16, backbone: dict | None = None):
        super().__init__()
        if backbone:
            v2 = CodecConfigV2.from_dict(backbone)
            self.analysis = Analysis(v2)
            channels = v2.widths[-1]
        else:
            ws = list(widths)
            cins = [3] + ws[:-1]
            self.convs = nn.ModuleList([down_conv(ci, co, k) for ci, co, k in zip(cins, ws, kernels)])
            self.gdns = nn.ModuleList([GDN(w) for w in ws])
            self.atts = nn.ModuleList([ContextAttention(w) for w in ws])
            self.res = ResBlock(ws[-1])
            channels = ws[-1]
        self.register_buffer("side", torch.tensor([[0.5, 1.0]]))  # SNR 10 dB, full rate
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("proj", torch.zeros(channels, dim))
        self.dim = dim

    @classmethod
    def for_config(cls, cfg) -> "ImageEmbedder":
        """The embedder of an AKB codec of config ``cfg`` (:class:`testbed.akb.model.AkbConfig`)."""
        return cls(cfg.widths, cfg.enc_kernels, dim=cfg.kb_dim, backbone=cfg.backbone)

    @classmethod
    @torch.no_grad()
    def from_codec(cls, codec, dim: int = 16) -> "ImageEmbedder":
        """An embedder whose trunk is ``codec``'s (a fixed-rate :class:`~testbed.codec.model.JSCC`)."""
        if arch_of(codec.cfg) == "v2":
            e = cls(dim=dim, backbone=codec.cfg.to_dict())
            e.analysis.load_state_dict(codec.encoder.analysis.state_dict())
            return e.eval()
        e = cls(tuple(codec.cfg.widths), tuple(codec.cfg.enc_kernels), dim)
        for mod in ("convs", "gdns", "atts", "res"):
            getattr(e, mod).load_state_dict(getattr(codec.encoder, mod).state_dict())
        return e.eval()

    from_v1 = from_codec      # the name earlier code and tests use

    def pooled(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> pooled trunk features [B, C]."""
        x = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        x = F.interpolate(x, size=(THUMB, THUMB), mode="bilinear", align_corners=False)
        h = x - 0.5
        side = self.side.expand(x.shape[0], 2)
        if hasattr(self, "analysis"):
            return self.analysis(h, side).mean(dim=(2, 3))
        for conv, gdn, att in zip(self.convs, self.gdns, self.atts):
            h = att(gdn(conv(h)), side)
        return self.res(h).mean(dim=(2, 3))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (self.pooled(image) - self.mean) @ self.proj

    @torch.no_grad()
    def fit_projection(self, pooled: torch.Tensor) -> float:
        """PCA of pooled features [N, C], whitened; returns the variance fraction kept."""
        n, c_dim = pooled.shape
        if n <= self.dim or c_dim < self.dim:
            raise KbError(f"embedder projection: {n} samples of {c_dim} features cannot give {self.dim} "
                          f"principal components (need more than {self.dim} samples and features)")
        mu = pooled.mean(0)
        c = pooled - mu
        u, s, vt = torch.linalg.svd(c, full_matrices=False)
        var = s ** 2
        std = s[: self.dim] / max(1, pooled.shape[0] - 1) ** 0.5
        self.mean.copy_(mu)
        self.proj.copy_(vt[: self.dim].T / std.clamp_min(1e-8))
        return float(var[: self.dim].sum() / var.sum())


class TorchEmbedderProvider:
    """An :class:`ImageEmbedder` used directly (training and tests)."""

    def __init__(self, net: ImageEmbedder, name: str = "image-embedder"):
        self.net, self.name, self.dim = net.eval(), name, net.dim

    @torch.no_grad()
    def embed(self, image: np.ndarray) -> np.ndarray:
        return self.net(torch.from_numpy(np.ascontiguousarray(image))[None])[0].numpy().astype(np.float32)
