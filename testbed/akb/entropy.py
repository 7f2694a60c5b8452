"""Hyperprior entropy model over the encoder's latent (Balle et al. 2018, as used by NTSCC).

The latent ``y`` [B, C, h, w] (one vector per 16x16 location) is scaled by a fixed quantisation
step and modelled as a Gaussian whose mean and scale are predicted from a hyper-latent ``z``
(stride 4 over the locations), which itself has a learned factorised Gaussian prior. The entropy
map is the estimated information of each location in bits: ``-log2 P(y_hat | z)`` summed over
channels. It only steers the rate allocation at the transmitter; nothing of ``z`` is sent.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

SCALE_MIN = 0.11
LIKELIHOOD_MIN = 1e-9


def _gauss_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x * (1.0 / math.sqrt(2.0))))


def gaussian_bits(v: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """-log2 of the probability mass of the unit bin around ``v`` under N(mean, scale).

    Always in float32 (a bfloat16 training forward pass hands in bfloat16 tensors): the bin mass
    is a difference of two nearby CDF values."""
    v, mean, scale = v.float(), mean.float(), scale.float()
    scale = torch.clamp(scale, min=SCALE_MIN)
    d = torch.abs(v - mean)  # symmetric: use the upper tail for numerical accuracy
    p = _gauss_cdf((0.5 - d) / scale) - _gauss_cdf((-0.5 - d) / scale)
    return -torch.log2(torch.clamp(p, min=LIKELIHOOD_MIN))


class HyperPrior(nn.Module):
    def __init__(self, channels: int, hyper_channels: int = 64, z_channels: int = 32):
        super().__init__()
        self.channels = channels
        self.register_buffer("quant_step", torch.tensor(1.0))
        self.ha = nn.Sequential(
            nn.Conv2d(channels, hyper_channels, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(hyper_channels, hyper_channels, 5, 2, 2), nn.LeakyReLU(0.2),
            nn.Conv2d(hyper_channels, z_channels, 5, 2, 2),
        )
        self.hs = nn.Sequential(
            nn.ConvTranspose2d(z_channels, hyper_channels, 5, 2, 2, output_padding=1), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(hyper_channels, hyper_channels, 5, 2, 2, output_padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(hyper_channels, 2 * channels, 3, 1, 1),
        )
        self.z_mean = nn.Parameter(torch.zeros(z_channels))
        self.z_log_scale = nn.Parameter(torch.zeros(z_channels))

    def _pad4(self, y: torch.Tensor) -> torch.Tensor:
        h, w = y.shape[-2], y.shape[-1]
        return F.pad(y, (0, (4 - w % 4) % 4, 0, (4 - h % 4) % 4), mode="replicate")

    def forward(self, y: torch.Tensor, noise: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (bits per location [B, h, w], bits of z per image [B]).

        ``noise``: additive uniform noise as the differentiable stand-in for rounding (training);
        otherwise values are rounded (evaluation and export).
        """
        h, w = y.shape[-2], y.shape[-1]
        v = self._pad4(y) / self.quant_step
        z = self.ha(v)
        zm = self.z_mean[None, :, None, None]
        zs = torch.exp(self.z_log_scale)[None, :, None, None]
        if noise:
            z_hat = z + torch.empty_like(z).uniform_(-0.5, 0.5)
            v_hat = v + torch.empty_like(v).uniform_(-0.5, 0.5)
        else:
            z_hat = torch.round(z - zm) + zm
            v_hat = v
        z_bits = gaussian_bits(z_hat, zm, zs).sum(dim=(1, 2, 3))
        params = self.hs(z_hat)
        mean, scale = params[:, : self.channels], F.softplus(params[:, self.channels:])
        if not noise:
            v_hat = torch.round(v - mean) + mean
        bits = gaussian_bits(v_hat, mean, scale).sum(dim=1)
        return bits[:, :h, :w], z_bits

    @torch.no_grad()
    def calibrate(self, y: torch.Tensor, bins_per_std: float = 4.0) -> float:
        """Set the quantisation step so that one latent standard deviation spans ``bins_per_std`` bins."""
        step = float(y.std(dim=(0, 2, 3)).median()) / bins_per_std
        self.quant_step.fill_(max(step, 1e-4))
        return step
