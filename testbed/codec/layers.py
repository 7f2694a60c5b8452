"""Building blocks of the JSCC codec: GDN, SNR/rate attention (ADJSCC-style), residual blocks.

Everything here exports to ONNX with opset >= 13 (Conv, Mul, Sqrt, Sigmoid, ReduceMean, Gemm).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

SNR_SCALE = 20.0  # snr_db is divided by this before it enters the attention modules


def side_vector(snr_db: torch.Tensor, k: torch.Tensor, s_max: int) -> torch.Tensor:
    """The attention modules' side input: [B, 2] = (SNR / SNR_SCALE, k / S)."""
    return torch.stack([snr_db / SNR_SCALE, k.to(torch.float32) / s_max], dim=1)


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows when it would push x up (as in CompressAI).

    A plain clamp has zero gradient below the bound, which would freeze GDN's off-diagonal
    coupling at its initial value of zero.
    """

    @staticmethod
    def forward(ctx, x, bound: float):
        ctx.save_for_backward(x)
        ctx.bound = bound
        return torch.clamp(x, min=bound)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ((x >= ctx.bound) | (grad < 0)).to(grad.dtype), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    if torch.jit.is_tracing() or not torch.is_grad_enabled():
        return torch.clamp(x, min=bound)  # same values; exports as a plain Clip/Max
    return _LowerBound.apply(x, bound)


class GDN(nn.Module):
    """Generalised divisive normalisation (Balle et al. 2016), and its inverse.

    y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2). Parameters are kept non-negative by a
    squared re-parametrisation with a small floor, as in CompressAI.
    """

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_min = beta_min
        self._pedestal = 2.0 ** -36
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + self._pedestal))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + self._pedestal))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        beta = lower_bound(self.beta, (self.beta_min + self._pedestal) ** 0.5) ** 2 - self._pedestal
        gamma = lower_bound(self.gamma, self._pedestal ** 0.5) ** 2 - self._pedestal
        norm = F.conv2d(x * x, gamma.view(c, c, 1, 1), beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


class ContextAttention(nn.Module):
    """Channel-wise attention conditioned on the channel state (ADJSCC's AF module).

    The context is the feature map's global mean plus side scalars (SNR in dB scaled to about
    [0, 1], and the fraction of symbols sent per location). One model therefore serves the whole
    SNR range and every rate. The gate is ``2*sigmoid`` so that it starts near 1 (identity).
    """

    def __init__(self, channels: int, n_side: int = 2, hidden: int | None = None):
        super().__init__()
        hidden = hidden or max(16, channels // 4)
        self.fc1 = nn.Linear(channels + n_side, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        ctx = torch.cat([x.mean(dim=(2, 3)), side], dim=1)
        w = 2.0 * torch.sigmoid(self.fc2(F.relu(self.fc1(ctx))))
        return x * w[:, :, None, None]


class ResBlock(nn.Module):
    """``x + conv(lrelu(conv(x)))``; ``identity_init``: the second convolution starts at zero, so
    that a block added to a trained model leaves its function unchanged until it learns."""

    def __init__(self, channels: int, identity_init: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        if identity_init:
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.2))


def down_conv(cin: int, cout: int, k: int = 5) -> nn.Conv2d:
    """Stride-2 convolution (halves H and W exactly for even sizes)."""
    return nn.Conv2d(cin, cout, k, stride=2, padding=k // 2)


def up_conv(cin: int, cout: int, k: int = 5) -> nn.ConvTranspose2d:
    """Stride-2 transposed convolution (doubles H and W exactly)."""
    return nn.ConvTranspose2d(cin, cout, k, stride=2, padding=k // 2, output_padding=1)
