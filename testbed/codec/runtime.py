"""Run a fixed-rate JSCC codec with onnxruntime: :class:`OnnxCodec` (codec kind ``jscc-v1``).

A model is a folder with ``encoder.onnx``, ``decoder.onnx`` and ``model_card.yaml``. Loading
checks that the graphs exist, that their sha256 match the card, and that they follow the graph
contract of :mod:`testbed.codec.graphs`; every failure names the file. It follows
:class:`testbed.core.codecs.Codec`; no torch is imported.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from ..core.card import CARD_NAME, ModelCardError, read_card
from ..core.codecs import (Encoded, ModelError, Rate, check_no_mode, refuse_options, resolve_model_dir,
                           warn_outside_snr_range)
from ..core.ortsession import open_graphs
from . import symbols as sym
from .modelcard import ModelCard

log = logging.getLogger(__name__)


class OnnxCodec:
    card_class = ModelCard
    variable_rate = False
    OPTIONS: tuple[str, ...] = ()

    def __init__(self, model: str | Path, threads: int = 0, verify: bool = True, spinning: bool = True):
        self.dir = resolve_model_dir(model)
        try:
            self.card: ModelCard = read_card(self.dir / CARD_NAME, ModelCard)
        except ModelCardError as e:
            raise ModelError(str(e)) from None
        sessions = open_graphs(self.dir, self.card, threads, verify, spinning)
        self.enc, self.dec = sessions["encoder"], sessions["decoder"]
        self._check_contract()
        self.name = self.card.name
        self.sha256 = self.card.sha256
        self.max_symbols = self.card.max_symbols_per_location
        self.snr_range = tuple(self.card.snr_range_db)

    def _check_contract(self) -> None:
        want = {"encoder": ["image", "snr_db", "symbols_per_location"],
                "decoder": ["symbols", "snr_db", "image_size"]}
        for role, sess in (("encoder", self.enc), ("decoder", self.dec)):
            names = [i.name for i in sess.get_inputs()]
            if names != want[role]:
                raise ModelError(f"{self.dir / self.card.graphs_by_role()[role]['file']}: inputs {names}, "
                                 f"expected {want[role]} for a {role} graph")

    # -- rates ---------------------------------------------------------------------------------
    def cbr_range(self) -> tuple[float, float]:
        return 1 / sym.SYMBOL_DIVISOR, self.max_symbols / sym.SYMBOL_DIVISOR

    def symbols_for_cbr(self, cbr: float | None) -> int:
        """Symbols per 16x16 block for a nominal CBR (None: the highest operating point)."""
        if cbr is None:
            return max(p["symbols_per_location"] for p in self.card.operating_points)
        k = round(cbr * sym.SYMBOL_DIVISOR)
        if not 1 <= k <= self.max_symbols:
            lo, hi = self.cbr_range()
            raise ModelError(f"CBR {cbr:g} is outside this model's range {lo:.4f}..{hi:.4f} ({self.dir})")
        if not math.isclose(k / sym.SYMBOL_DIVISOR, cbr, rel_tol=0.02):
            log.warning("CBR %g is not a multiple of 1/768; using %d symbols per block (CBR %.5f)",
                        cbr, k, k / sym.SYMBOL_DIVISOR)
        return k

    def rate(self, cbr: float | None = None, symbols_per_location: int | None = None, **options) -> Rate:
        """``symbols_per_location`` given: that many (the GRC block's parameter), else from ``cbr``."""
        refuse_options(self.name, self.OPTIONS, options)
        k = int(symbols_per_location) if symbols_per_location else self.symbols_for_cbr(cbr)
        if not 1 <= k <= self.max_symbols:
            raise ModelError(f"symbols per location {k} is outside 1..{self.max_symbols} ({self.dir})")
        return Rate(cbr=k / sym.SYMBOL_DIVISOR, symbols_per_location=k)

    def check_snr(self, snr_db: float) -> None:
        warn_outside_snr_range(snr_db, self.snr_range, self.name)

    # -- coding --------------------------------------------------------------------------------
    def encode_k(self, image: np.ndarray, snr_db: float, k: int) -> np.ndarray:
        """[H, W, 3] uint8 -> complex64 [k*h*w] symbols (Es = 1)."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
        out = self.enc.run(None, {
            "image": image[None],
            "snr_db": np.array([snr_db], np.float32),
            "symbols_per_location": np.array([k], np.int64),
        })[0][0]
        return (out[:, 0] + 1j * out[:, 1]).astype(np.complex64)

    def encode(self, image: np.ndarray, snr_db: float, rate: Rate, previous: Encoded | None = None) -> Encoded:
        k = rate.symbols_per_location
        s = self.encode_k(image, snr_db, k)
        h, w = image.shape[:2]
        return Encoded(symbols=s, cbr=sym.cbr(k, h, w), symbols_per_location=k,
                       fields={"symbols_per_location": k})

    def decode(self, symbols: np.ndarray, snr_db: float, height: int, width: int, side=None,
               mode: int = 0, symbol_snr_db=None) -> np.ndarray:
        """complex [n] received symbols -> [H, W, 3] uint8."""
        check_no_mode(mode, self.name)
        s = np.asarray(symbols)
        n_max = self.max_symbols * int(np.prod(sym.latent_grid(height, width)))
        if s.size == 0 or s.size > n_max:
            raise ValueError(f"{s.size} symbols received for a {width}x{height} image; expected 1..{n_max}")
        stream = np.stack([s.real, s.imag], axis=-1).astype(np.float32)[None]
        return self.dec.run(None, {
            "symbols": stream,
            "snr_db": np.array([snr_db], np.float32),
            "image_size": np.array([height, width], np.int64),
        })[0][0]

    # -- what the receiver asks ----------------------------------------------------------------
    def n_symbols(self, symbols_per_location: int, side, height: int, width: int) -> int:
        return symbols_per_location * int(np.prod(sym.latent_grid(height, width)))

    def received_fields(self, symbols_per_location: int, side, height: int, width: int) -> dict:
        return {"symbols_per_location": symbols_per_location, "kb_index": -1}

    def decoded_fields(self, sent=None) -> dict:
        return {}

    def reference_fields(self, reference, symbols_per_location: int, mode: int) -> dict:
        return {}

    def check_side(self, side) -> str | None:
        return None if side is None else "a fixed-rate codec takes no side information"
