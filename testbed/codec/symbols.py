"""Symbol conventions of the JSCC codec (no torch here: the onnxruntime path uses them too).

Conventions (shared by the PyTorch model, the ONNX graphs and the PHY):

* The encoder's latent has ``2*S`` real channels on an ``h x w`` grid (``h = ceil(H/16)``,
  ``w = ceil(W/16)``). Complex symbol ``j`` of a location is ``z[2j] + 1j*z[2j+1]``.
* Symbols of a location are ordered by importance: sending the first ``k`` of the ``S`` and
  zero-filling the rest degrades gracefully (the model is trained that way).
* Transmission order is importance-major: all locations' symbol 0 (row-major over the grid),
  then all locations' symbol 1, ... So ``k`` symbols per location are the first ``k*h*w``
  symbols of the stream, and a lost burst of the stream zero-fills a band of one importance level.
* Power: the ``k*h*w`` transmitted symbols of each image have mean ``|s|^2 = 1`` (Es = 1).
"""
from __future__ import annotations

from ..core.wire import BLOCK_PIXELS, block_grid

STRIDE = BLOCK_PIXELS  # total down-sampling of the encoder; images are padded to a multiple of this
SYMBOL_DIVISOR = STRIDE * STRIDE * 3   # CBR = symbols per location / SYMBOL_DIVISOR (768)


def latent_grid(height: int, width: int) -> tuple[int, int]:
    """Grid of symbol locations for an ``height x width`` image."""
    return block_grid(height, width)


def cbr(symbols_per_location: int, height: int, width: int) -> float:
    """Channel bandwidth ratio: complex channel symbols / (H * W * 3)."""
    h, w = latent_grid(height, width)
    return symbols_per_location * h * w / (height * width * 3)


# masking, power normalisation and transmission order as torch operations: testbed.codec.stream
