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

On codec v2 (``AkbConfig.backbone``: the v2 codec's config, :mod:`testbed.codec.arch_v2`) the
encoder's trunk is v2's :class:`~testbed.codec.arch_v2.Analysis` and the decoder's v2's
:class:`~testbed.codec.arch_v2.Synthesis`, with the same extra inputs and zero-started weights
(:func:`from_codec` starts from either architecture).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..codec.arch_v2 import Analysis, CodecConfigV2, Synthesis
from ..codec.layers import GDN, ContextAttention, ResBlock, down_conv, up_conv
from ..codec.model import SNR_SCALE, arch_of, count_parameters, pad_to_stride  # noqa: F401 (count_parameters: export)
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
    backbone: dict | None = None     # codec v2's config (dict): v2 trunks; None: the v1 layers above

    def v2(self) -> CodecConfigV2 | None:
        return CodecConfigV2.from_dict(self.backbone) if self.backbone else None

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
        n_side = 2 + cfg.kb_dim
        self.linear = nn.Conv2d(3, 2 * s, rm.STRIDE, rm.STRIDE, bias=False)
        v2 = cfg.v2()
        if v2 is not None:
            self.latent_channels = v2.widths[-1]
            self.trunk = Analysis(v2, n_side)
            self.out = nn.Conv2d(self.latent_channels + 1, 2 * s, 1)
            return
        self.latent_channels = ws[-1]
        cins = [3] + ws[:-1]
        self.convs = nn.ModuleList([down_conv(ci, co, k) for ci, co, k in zip(cins, ws, cfg.enc_kernels)])
        self.gdns = nn.ModuleList([GDN(w) for w in ws])
        self.atts = nn.ModuleList([ContextAttention(w, n_side) for w in ws])
        self.res = ResBlock(ws[-1])
        self.out = nn.Conv2d(ws[-1] + 1, 2 * s, 3, 1, 1)

    def analysis(self, x: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """x [B,3,H,W] in [0,1], H, W multiples of 16 -> features [B, C + 2S, h, w]."""
        h = x - 0.5
        if hasattr(self, "trunk"):
            return torch.cat([self.trunk(h, side), self.linear(h)], dim=1)
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
        self.linear = nn.ConvTranspose2d(2 * s, 3, rm.STRIDE, rm.STRIDE)
        v2 = cfg.v2()
        if v2 is not None:
            self.inp = nn.Conv2d(2 * s + 1, v2.widths[-1], 1)
            self.synthesis = Synthesis(v2, n_side)
            return
        self.inp = nn.Conv2d(2 * s + 1, ws[0], 3, 1, 1)
        self.res = ResBlock(ws[0])
        couts = ws[1:] + [3]
        self.gdns = nn.ModuleList([GDN(w, inverse=True) for w in ws])
        self.atts = nn.ModuleList([ContextAttention(w, n_side) for w in ws])
        self.convs = nn.ModuleList([up_conv(ci, co, k) for ci, co, k in zip(ws, couts, cfg.dec_kernels)])

    def forward(self, zc: torch.Tensor, rates: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """zero-filled received symbols [B, S, h, w, 2] + rates [B, h, w] -> image [B,3,16h,16w]."""
        b, s, h, w, _ = zc.shape
        y = zc.permute(0, 1, 4, 2, 3).reshape(b, 2 * s, h, w)
        hdd = self.inp(torch.cat([y, rates[:, None] / self.s_max], dim=1))
        if hasattr(self, "synthesis"):
            return self.synthesis(hdd, side) + self.linear(y) + 0.5
        hdd = self.res(hdd)
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

    def analyse(self, x, snr_db, target_rate, kb, noise: bool = False, rate_grad: bool = False):
        """x (multiple of 16) -> (features, entropy map [B, h, w] in bits, z bits [B]).

        ``target_rate``: the budget in symbols per location (CBR * 768); the rate map is not known
        yet when the encoder analyses the image. ``noise``: training mode of the entropy model, whose
        gradient does not reach the encoder unless ``rate_grad`` (the analysis transform then trains
        with the rate term too, as NTSCC's does).
        """
        feats = self.encoder.analysis(x, side_input(snr_db, target_rate, kb))
        lat = self.encoder.latent(feats)
        bits, z_bits = self.entropy(lat.detach() if noise and not rate_grad else lat, noise)
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


def _copy_attention(src: ContextAttention, dst: ContextAttention) -> None:
    """``dst`` (more side inputs) computes what ``src`` computes while the extra inputs' weights are zero."""
    dst.fc2.load_state_dict(src.fc2.state_dict())
    dst.fc1.bias.copy_(src.fc1.bias)
    dst.fc1.weight.zero_()
    dst.fc1.weight[:, : src.fc1.weight.shape[1]] = src.fc1.weight


def _copy_trunk(src: nn.Module, dst: nn.Module) -> None:
    """Every parameter of ``src`` into ``dst``; attention modules through :func:`_copy_attention`."""
    atts = {n for n, mod in src.named_modules() if isinstance(mod, ContextAttention)}
    dst_mods = dict(dst.named_modules())
    for n in atts:
        _copy_attention(dict(src.named_modules())[n], dst_mods[n])
    state = {k: v for k, v in src.state_dict().items() if not any(k.startswith(a + ".") for a in atts)}
    missing, unexpected = dst.load_state_dict(state, strict=False)
    if unexpected or any(not any(k.startswith(a + ".") for a in atts) for k in missing):
        raise RuntimeError(f"from_codec: trunks do not line up (missing {missing}, unexpected {unexpected})")


@torch.no_grad()
def from_codec(codec) -> AkbJSCC:
    """An AKB codec that starts from a fixed-rate codec's weights (:class:`testbed.codec.model.JSCC`,
    v1 or v2): at uniform rates, with no KB vector, it computes what that codec computes."""
    c1 = codec.cfg
    if arch_of(c1) == "v2":
        m = AkbJSCC(AkbConfig(snr_min_db=c1.snr_min_db, snr_max_db=c1.snr_max_db,
                              backbone=CodecConfigV2.from_dict(c1.to_dict()).to_dict()))
        _copy_trunk(codec.encoder.analysis, m.encoder.trunk)
        _copy_trunk(codec.decoder.synthesis, m.decoder.synthesis)
        _copy_heads(codec, m)
        return m
    if (c1.enc_res_blocks, c1.dec_res_blocks) != (1, 1):
        raise ValueError(f"the codec v1 to start from has {c1.enc_res_blocks},{c1.dec_res_blocks} residual blocks "
                         "(encoder,decoder); the AKB codec's v1 layers hold one each: start from codec v2 "
                         "(e.g. models/jscc-v2) or from a codec v1 with 1,1 blocks")
    cfg = AkbConfig(widths=tuple(c1.widths), enc_kernels=tuple(c1.enc_kernels),
                    dec_kernels=tuple(c1.dec_kernels), snr_min_db=c1.snr_min_db, snr_max_db=c1.snr_max_db)
    m = AkbJSCC(cfg)
    for name in ("encoder", "decoder"):
        src, dst = getattr(codec, name), getattr(m, name)
        for mod in ("convs", "gdns", "res"):
            getattr(dst, mod).load_state_dict(getattr(src, mod).state_dict())
        for a_src, a_dst in zip(src.atts, dst.atts):
            _copy_attention(a_src, a_dst)
    _copy_heads(codec, m)
    return m


from_v1 = from_codec    # the name earlier code and tests use


def _copy_heads(codec, m: AkbJSCC) -> None:
    """The symbol layers: the codec's S symbols per location are the AKB codec's first S (the rest,
    and the rate-plane inputs, start at zero); the out/inp kernels keep their spatial size."""
    s1 = codec.cfg.max_symbols
    e1, e2 = codec.encoder, m.encoder
    e2.out.weight.zero_()
    e2.out.bias.zero_()
    e2.out.weight[: 2 * s1, : e1.out.weight.shape[1]] = e1.out.weight
    e2.out.bias[: 2 * s1] = e1.out.bias
    e2.linear.weight.zero_()
    e2.linear.weight[: 2 * s1] = e1.linear.weight
    d1, d2 = codec.decoder, m.decoder
    d2.inp.weight.zero_()
    d2.inp.weight[:, : 2 * s1] = d1.inp.weight
    d2.inp.bias.copy_(d1.inp.bias)
    d2.linear.weight.zero_()
    d2.linear.weight[: 2 * s1] = d1.linear.weight
    d2.linear.bias.copy_(d1.linear.bias)


def pad_image(x: torch.Tensor) -> torch.Tensor:
    return pad_to_stride(x)
