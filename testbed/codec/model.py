"""SNR- and rate-adaptive deep JSCC codec (codec v1).

Fully convolutional encoder/decoder in the style of Deep JSCC / ADJSCC: four stride-2
convolutions with GDN, residual blocks at the lowest resolution (one each by default; the shipped
model has three, grown from one with :func:`grow`), and channel-wise attention
conditioned on (SNR, rate) after every stage; beside it, a linear 16x16-block path initialised to
the PCA linear JSCC (:mod:`testbed.codec.pca_init`), with the deep path starting at zero. The latent carries up to ``S`` complex symbols per
16x16 pixel block, ordered by importance (trained with random truncation), so a single model
serves CBR = k / 768 for k = 1..S (S = 48 gives CBR 1/16; k = 16 gives 1/48).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn
import torch.nn.functional as F

from . import stream as st
from . import symbols as sym
from .arch_v2 import CodecConfigV2, DecoderV2, EncoderV2
from .layers import SNR_SCALE, GDN, ContextAttention, ResBlock, down_conv, up_conv, side_vector  # noqa: F401


@dataclass(frozen=True)
class CodecConfig:
    widths: tuple = (64, 96, 128, 160)   # feature width after each stride-2 stage (encoder order)
    enc_kernels: tuple = (5, 3, 5, 5)    # kernel of each encoder stage (full -> 1/16 resolution)
    dec_kernels: tuple = (5, 5, 3, 3)    # kernel of each decoder stage (1/16 -> full resolution)
    max_symbols: int = 48        # S: complex symbols per 16x16 block at the highest rate
    enc_res_blocks: int = 1      # residual blocks at the lowest (1/16) resolution, encoder
    dec_res_blocks: int = 1      # ... and decoder (more: see :func:`grow`)
    snr_min_db: float = 0.0      # trained SNR range
    snr_max_db: float = 20.0

    def __post_init__(self):
        if min(self.enc_res_blocks, self.dec_res_blocks) < 1:
            raise ValueError(f"residual blocks {self.enc_res_blocks},{self.dec_res_blocks}: at least 1 each "
                             "(encoder,decoder)")

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "CodecConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def pad_to_stride(x: torch.Tensor) -> torch.Tensor:
    """Replicate-pad [B, C, H, W] on the bottom/right to a multiple of STRIDE."""
    h, w = x.shape[-2], x.shape[-1]
    ph = (sym.STRIDE - h % sym.STRIDE) % sym.STRIDE
    pw = (sym.STRIDE - w % sym.STRIDE) % sym.STRIDE
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


class Encoder(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        ws, s = list(cfg.widths), cfg.max_symbols
        self.s_max = s
        cins = [3] + ws[:-1]
        self.convs = nn.ModuleList([down_conv(ci, co, k) for ci, co, k in zip(cins, ws, cfg.enc_kernels)])
        self.gdns = nn.ModuleList([GDN(w) for w in ws])
        self.atts = nn.ModuleList([ContextAttention(w) for w in ws])
        self.res = ResBlock(ws[-1])
        self.res_more = nn.ModuleList([ResBlock(ws[-1], identity_init=True) for _ in range(cfg.enc_res_blocks - 1)])
        self.out = nn.Conv2d(ws[-1], 2 * s, 3, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # linear 16x16-block path (initialised to the PCA linear JSCC, see pca_init.py)
        self.linear = nn.Conv2d(3, 2 * s, sym.STRIDE, sym.STRIDE, bias=False)

    def forward(self, x: torch.Tensor, snr_db: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] in [0, 1] with H, W multiples of 16 -> latent [B, 2S, H/16, W/16]."""
        side = side_vector(snr_db, k, self.s_max)
        h = x - 0.5
        for conv, gdn, att in zip(self.convs, self.gdns, self.atts):
            h = att(gdn(conv(h)), side)
        h = self.res(h)
        for block in self.res_more:
            h = block(h)
        return self.out(h) + self.linear(x - 0.5)


class Decoder(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        ws, s = list(reversed(cfg.widths)), cfg.max_symbols
        self.s_max = s
        self.inp = nn.Conv2d(2 * s, ws[0], 3, 1, 1)
        self.res = ResBlock(ws[0])
        self.res_more = nn.ModuleList([ResBlock(ws[0], identity_init=True) for _ in range(cfg.dec_res_blocks - 1)])
        couts = ws[1:] + [3]
        self.gdns = nn.ModuleList([GDN(w, inverse=True) for w in ws])
        self.atts = nn.ModuleList([ContextAttention(w) for w in ws])
        self.convs = nn.ModuleList([up_conv(ci, co, k) for ci, co, k in zip(ws, couts, cfg.dec_kernels)])
        nn.init.zeros_(self.convs[-1].weight)
        nn.init.zeros_(self.convs[-1].bias)
        self.linear = nn.ConvTranspose2d(2 * s, 3, sym.STRIDE, sym.STRIDE)

    def forward(self, y: torch.Tensor, snr_db: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """y: [B, 2S, h, w] received latent (unsent symbols zero) -> [B, 3, 16h, 16w], ~[0, 1]."""
        side = side_vector(snr_db, k, self.s_max)
        h = self.res(self.inp(y))
        for block in self.res_more:
            h = block(h)
        for conv, gdn, att in zip(self.convs, self.gdns, self.atts):
            h = conv(gdn(att(h, side)))
        return h + self.linear(y) + 0.5


ARCHITECTURES = {"v1": (CodecConfig, Encoder, Decoder), "v2": (CodecConfigV2, EncoderV2, DecoderV2)}


def config_from_dict(d: dict):
    """A codec config from its dict (a checkpoint's ``codec_config``, a graph's metadata): v1 when it
    names no ``arch`` (v1's configs never did)."""
    arch = d.get("arch", "v1")
    if arch not in ARCHITECTURES:
        raise ValueError(f"codec config: unknown arch {arch!r} (known: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[arch][0].from_dict({k: v for k, v in d.items() if arch != "v1" or k != "arch"})


def arch_of(cfg) -> str:
    return getattr(cfg, "arch", "v1")


class JSCC(nn.Module):
    """Encoder + decoder with the symbol conventions of :mod:`testbed.codec.symbols`; the
    architecture (v1, or v2 of :mod:`testbed.codec.arch_v2`) is the config's."""

    def __init__(self, cfg: CodecConfig | CodecConfigV2 | None = None):
        super().__init__()
        self.cfg = cfg or CodecConfig()
        _, enc, dec = ARCHITECTURES[arch_of(self.cfg)]
        self.encoder = enc(self.cfg)
        self.decoder = dec(self.cfg)

    def encode(self, x: torch.Tensor, snr_db: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] (multiple of 16) -> power-normalised symbols [B, S, h, w, 2], zero beyond k."""
        return st.normalize_power(self.encoder(x, snr_db, k), k)

    def decode(self, zc: torch.Tensor, snr_db: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return self.decoder(st.to_latent(zc), snr_db, k)

    def forward(self, x, snr_db, k, channel_fn):
        """Training path: ``channel_fn(symbols, snr_db) -> (received, snr_seen_by_rx)``."""
        zc = self.encode(x, snr_db, k)
        rx, snr_rx = channel_fn(zc, snr_db)
        mask = st.symbols_mask(k, self.cfg.max_symbols)[:, :, None, None, None]
        return self.decode(rx * mask, snr_rx, k)


def grow(model: JSCC, enc_res_blocks: int, dec_res_blocks: int) -> JSCC:
    """``model`` with more residual blocks at the lowest resolution, computing the same function.

    The added blocks start as identities (:class:`ResBlock` ``identity_init``), so a trained model
    can be given capacity and trained on from where it is. Fewer blocks than it has are refused.
    """
    if arch_of(model.cfg) != "v1":
        raise ValueError(f"residual blocks {enc_res_blocks},{dec_res_blocks}: only a codec v1 model can be grown "
                         f"(this is arch {arch_of(model.cfg)}: set its depths in a new run instead)")
    have = (model.cfg.enc_res_blocks, model.cfg.dec_res_blocks)
    if enc_res_blocks < have[0] or dec_res_blocks < have[1]:
        raise ValueError(f"residual blocks {enc_res_blocks},{dec_res_blocks}: the model already has "
                         f"{have[0]},{have[1]} (encoder,decoder); a model can only be grown")
    new = JSCC(replace(model.cfg, enc_res_blocks=enc_res_blocks, dec_res_blocks=dec_res_blocks))
    missing, unexpected = new.load_state_dict(model.state_dict(), strict=False)
    if unexpected or not all(".res_more." in k for k in missing):
        raise RuntimeError(f"grow: state dicts do not line up (missing {missing}, unexpected {unexpected})")
    return new.to(next(model.parameters()).device)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
