"""The ONNX graph contract of the codec, as exportable PyTorch modules.

Encoder graph
    inputs:  ``image``   uint8 [B, H, W, 3] (RGB, NHWC, any H, W >= 1)
             ``snr_db``  float32 [B]      channel Es/N0 the symbols are meant for
             ``symbols_per_location`` int64 [1]  k, complex symbols per 16x16 block (1..S)
    output:  ``symbols`` float32 [B, k*h*w, 2]  (real, imag), transmission order, Es = 1 per image

Decoder graph
    inputs:  ``symbols`` float32 [B, n, 2]  received stream; n = k*h*w (trailing symbols
                                           missing are treated as not sent: zero-filled)
             ``snr_db``  float32 [B]      (estimated) SNR at the receiver
             ``image_size`` int64 [2]     (H, W) of the original image
    output:  ``image``   uint8 [B, H, W, 3]

with ``h = ceil(H/16)``, ``w = ceil(W/16)``. Scaling to [0, 1], padding to a multiple of 16
(replicate), power normalisation, zero-filling, cropping and rounding are inside the graphs.
"""
from __future__ import annotations

import torch
from torch import nn

from . import stream as st
from . import symbols as sym
from .model import JSCC, pad_to_stride


class EncoderGraph(nn.Module):
    def __init__(self, model: JSCC):
        super().__init__()
        self.encoder = model.encoder
        self.s_max = model.cfg.max_symbols

    def forward(self, image: torch.Tensor, snr_db: torch.Tensor, symbols_per_location: torch.Tensor):
        x = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        x = pad_to_stride(x)
        b = x.shape[0]
        k = torch.clamp(symbols_per_location, 1, self.s_max).expand(b)
        zc = st.normalize_power(self.encoder(x, snr_db, k), k)
        stream = st.to_stream(zc)
        h, w = zc.shape[2], zc.shape[3]
        n = k[0] * h * w
        return stream.index_select(1, torch.arange(n))


class DecoderGraph(nn.Module):
    def __init__(self, model: JSCC):
        super().__init__()
        self.decoder = model.decoder
        self.s_max = model.cfg.max_symbols

    def forward(self, symbols: torch.Tensor, snr_db: torch.Tensor, image_size: torch.Tensor):
        height = image_size[0]
        width = image_size[1]
        h = (height + (sym.STRIDE - 1)) // sym.STRIDE
        w = (width + (sym.STRIDE - 1)) // sym.STRIDE
        b = symbols.shape[0]
        n = symbols.shape[1]
        total = h * w * self.s_max
        idx = torch.arange(total)
        valid = (idx < n).to(symbols.dtype)
        src = torch.clamp(idx, max=n - 1)
        full = symbols.index_select(1, src) * valid[None, :, None]
        zc = full.reshape(b, self.s_max, h, w, 2)
        k = torch.clamp(torch.div(n + h * w - 1, h * w, rounding_mode="floor"), 1, self.s_max)
        k = k.reshape(1).expand(b)
        y = self.decoder(st.to_latent(zc), snr_db, k)
        y = y.index_select(2, torch.arange(height)).index_select(3, torch.arange(width))
        y = torch.round(torch.clamp(y, 0.0, 1.0) * 255.0)
        return y.permute(0, 2, 3, 1).to(torch.uint8)
