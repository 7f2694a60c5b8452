"""AKB-JSCC codec: the v1 codec made variable-length and conditioned on the knowledge bases.

Encoder, in two steps so that the rate decision sits between them (paper Fig. 3):

1. ``analysis(x, snr, target rate, kb)`` -> features: the latent ``y`` of the deep path (which the
   hyperprior entropy model turns into the entropy map) and the linear 16x16-block path;
2. ``symbols(features, rates)`` -> up to ``S = 96`` complex symbols per location, importance
   ordered, of which each location sends ``rates[loc]`` (its block's entry of the rate map);
   the sent symbols are normalised to Es = 1 per image.

The decoder takes the zero-filled symbols plus the rate map as an extra input plane. Every
attention module is conditioned on (SNR, mean rate, source-KB vector); a zero KB vector means
"no source KB" (the ``--no-skb`` ablation, also trained). Architecture and initial weights come
from codec v1 (:func:`from_v1`): new inputs start with zero weights, so the AKB codec starts out
computing exactly what v1 computes at uniform rates.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..codec.layers import GDN, ContextAttention, ResBlock, down_conv, up_conv
from ..codec.model import SNR_SCALE, count_parameters, pad_to_stride  # noqa: F401 (count_parameters: export)
from . import placement as pl
from . import ratemap as rm
from .entropy import HyperPrior

RATE_NORM = 48.0  # mean symbols per location is divided by this in the attention side input (as v1)


@dataclass(frozen=True)
class AkbConfig:
    widths: tuple = (64, 96, 128, 160)
    enc_kernels: tuple = (5, 3, 5, 5)
    dec_kernels: tuple = (5, 5, 3, 3)
    max_symbols: int = rm.MAX_SYMBOLS
    kb_dim: int = 16
    snr_min_db: float = 0.0
    snr_max_db: float = 20.0

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "AkbConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def side_input(snr_db: torch.Tensor, mean_rate: torch.Tensor, kb: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.stack([snr_db / SNR_SCALE, mean_rate / RATE_NORM], dim=1), kb], dim=1)


class AkbEncoder(nn.Module):
    def __init__(self, cfg: AkbConfig):
        super().__init__()
        ws, s = list(cfg.widths), cfg.max_symbols
        self.s_max = s
        self.latent_channels = ws[-1]
        n_side = 2 + cfg.kb_dim
        cins = [3] + ws[:-1]
        self.convs = nn.ModuleList([down_conv(ci, co, k) for ci, co, k in zip(cins, ws, cfg.enc_kernels)])
        self.gdns = nn.ModuleList([GDN(w) for w in ws])
        self.atts = nn.ModuleList([ContextAttention(w, n_side) for w in ws])
        self.res = ResBlock(ws[-1])
        self.out = nn.Conv2d(ws[-1] + 1, 2 * s, 3, 1, 1)
        self.linear = nn.Conv2d(3, 2 * s, rm.STRIDE, rm.STRIDE, bias=False)

    def analysis(self, x: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """x [B,3,H,W] in [0,1], H, W multiples of 16 -> features [B, C + 2S, h, w]."""
        h = x - 0.5
        for conv, gdn, att in zip(self.convs, self.gdns, self.atts):
            h = att(gdn(conv(h)), side)
        return torch.cat([self.res(h), self.linear(x - 0.5)], dim=1)

    def latent(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, : self.latent_channels]

    def symbols(self, features: torch.Tensor, rates: torch.Tensor) -> torch.Tensor:
        """features + symbols per location [B, h, w] -> Es=1 symbols [B, S, h, w, 2], zero where unsent."""
        y, lin = features[:, : self.latent_channels], features[:, self.latent_channels:]
        z = self.out(torch.cat([y, rates[:, None] / self.s_max], dim=1)) + lin
        b, c, h, w = z.shape
        zc = z.reshape(b, self.s_max, 2, h, w).permute(0, 1, 3, 4, 2)
        mask = pl.symbol_mask(rates, self.s_max)
        zc = zc * mask[..., None]
        n_sent = mask.sum(dim=(1, 2, 3))
        power = zc.pow(2).sum(dim=(1, 2, 3, 4)) / n_sent
        return zc * torch.rsqrt(power + 1e-12)[:, None, None, None, None]


class AkbDecoder(nn.Module):
    def __init__(self, cfg: AkbConfig):
        super().__init__()
        ws, s = list(reversed(cfg.widths)), cfg.max_symbols
        self.s_max = s
        n_side = 2 + cfg.kb_dim
        self.inp = nn.Conv2d(2 * s + 1, ws[0], 3, 1, 1)
        self.res = ResBlock(ws[0])
        couts = ws[1:] + [3]
        self.gdns = nn.ModuleList([GDN(w, inverse=True) for w in ws])
        self.atts = nn.ModuleList([ContextAttention(w, n_side) for w in ws])
        self.convs = nn.ModuleList([up_conv(ci, co, k) for ci, co, k in zip(ws, couts, cfg.dec_kernels)])
        self.linear = nn.ConvTranspose2d(2 * s, 3, rm.STRIDE, rm.STRIDE)

    def forward(self, zc: torch.Tensor, rates: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """zero-filled received symbols [B, S, h, w, 2] + rates [B, h, w] -> image [B,3,16h,16w]."""
        b, s, h, w, _ = zc.shape
        y = zc.permute(0, 1, 4, 2, 3).reshape(b, 2 * s, h, w)
        hdd = self.res(self.inp(torch.cat([y, rates[:, None] / self.s_max], dim=1)))
        for conv, gdn, att in zip(self.convs, self.gdns, self.atts):
            hdd = conv(gdn(att(hdd, side)))
        return hdd + self.linear(y) + 0.5


class AkbJSCC(nn.Module):
    def __init__(self, cfg: AkbConfig | None = None):
        super().__init__()
        self.cfg = cfg or AkbConfig()
        self.encoder = AkbEncoder(self.cfg)
        self.decoder = AkbDecoder(self.cfg)
        self.entropy = HyperPrior(self.encoder.latent_channels)

    def analyse(self, x, snr_db, target_rate, kb, noise: bool = False):
        """x (multiple of 16) -> (features, entropy map [B, h, w] in bits, z bits [B]).

        ``target_rate``: the budget in symbols per location (CBR * 768); the rate map is not known
        yet when the encoder analyses the image. ``noise``: training mode of the entropy model (its
        gradient does not reach the encoder).
        """
        feats = self.encoder.analysis(x, side_input(snr_db, target_rate, kb))
        lat = self.encoder.latent(feats)
        bits, z_bits = self.entropy(lat.detach() if noise else lat, noise)
        return feats, bits, z_bits

    def transmit(self, feats, levels, snr_db, kb, channel_fn):
        """features + rate map [B, hb, wb] -> channel -> reconstruction [B, 3, 16h, 16w]."""
        h, w = feats.shape[-2], feats.shape[-1]
        rates = pl.location_rates(levels, h, w)
        zc = self.encoder.symbols(feats, rates)
        rx, snr_rx = channel_fn(zc, snr_db)
        mask = pl.symbol_mask(rates, self.cfg.max_symbols)
        side_rx = side_input(snr_rx, rates.mean(dim=(1, 2)), kb)
        return self.decoder(rx * mask[..., None], rates, side_rx)


@torch.no_grad()
def from_v1(v1) -> AkbJSCC:
    """An AKB codec that starts from codec v1's weights (:class:`testbed.codec.model.JSCC`)."""
    c1 = v1.cfg
    cfg = AkbConfig(widths=tuple(c1.widths), enc_kernels=tuple(c1.enc_kernels),
                    dec_kernels=tuple(c1.dec_kernels), snr_min_db=c1.snr_min_db, snr_max_db=c1.snr_max_db)
    m = AkbJSCC(cfg)
    s1 = c1.max_symbols
    for name in ("encoder", "decoder"):
        src, dst = getattr(v1, name), getattr(m, name)
        for mod in ("convs", "gdns", "res"):
            getattr(dst, mod).load_state_dict(getattr(src, mod).state_dict())
        for a_src, a_dst in zip(src.atts, dst.atts):
            a_dst.fc2.load_state_dict(a_src.fc2.state_dict())
            a_dst.fc1.bias.copy_(a_src.fc1.bias)
            a_dst.fc1.weight.zero_()
            a_dst.fc1.weight[:, : a_src.fc1.weight.shape[1]] = a_src.fc1.weight
    e1, e2 = v1.encoder, m.encoder
    e2.out.weight.zero_()
    e2.out.bias.zero_()
    e2.out.weight[: 2 * s1, : e1.out.weight.shape[1]] = e1.out.weight
    e2.out.bias[: 2 * s1] = e1.out.bias
    e2.linear.weight.zero_()
    e2.linear.weight[: 2 * s1] = e1.linear.weight
    d1, d2 = v1.decoder, m.decoder
    d2.inp.weight.zero_()
    d2.inp.weight[:, : 2 * s1] = d1.inp.weight
    d2.inp.bias.copy_(d1.inp.bias)
    d2.linear.weight.zero_()
    d2.linear.weight[: 2 * s1] = d1.linear.weight
    d2.linear.bias.copy_(d1.linear.bias)
    return m


def pad_image(x: torch.Tensor) -> torch.Tensor:
    return pad_to_stride(x)
