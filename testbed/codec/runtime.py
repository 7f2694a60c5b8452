"""Run a shipped codec with onnxruntime: :class:`OnnxCodec`.

A model is a folder with ``encoder.onnx``, ``decoder.onnx`` and ``model_card.yaml``. Loading
checks that the graphs exist, that their sha256 match the card, and that they follow the graph
contract of :mod:`testbed.codec.graphs`; every failure names the file.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import symbols as sym
from .export import sha256_file
from .modelcard import CARD_NAME, ModelCard, ModelCardError, load_card

log = logging.getLogger(__name__)


class ModelError(ValueError):
    pass


def resolve_model_dir(model: str | Path) -> Path:
    """Accept a model folder, its card or one of its graphs; also a name under ``models/``."""
    p = Path(model)
    if p.is_file():
        p = p.parent
    if not p.exists():
        from ..registry import find_model

        found = find_model(str(model))
        if found is None:
            raise ModelError(f"{model}: no such model folder (and no shipped model of that name)")
        p = found
    if not (p / CARD_NAME).exists():
        raise ModelError(f"{p}: not a model folder ({CARD_NAME} missing)")
    return p


@dataclass
class Timing:
    encode_ms: float
    decode_ms: float


def warn_outside_snr_range(snr_db: float, snr_range, name: str) -> None:
    """A warning (not an error) for an SNR outside a model's trained range."""
    lo, hi = snr_range
    if not lo <= snr_db <= hi:
        log.warning("SNR %g dB is outside the model's trained range %g..%g dB (%s); "
                    "results are extrapolated", snr_db, lo, hi, name)


class OnnxCodec:
    def __init__(self, model: str | Path, threads: int = 0, verify: bool = True, spinning: bool = True):
        import onnxruntime as ort

        from ..ortsession import session_options

        self.dir = resolve_model_dir(model)
        try:
            self.card: ModelCard = load_card(self.dir / CARD_NAME)
        except ModelCardError as e:
            raise ModelError(str(e)) from None
        if self.card.codec != "jscc-v1":
            raise ModelError(f"{self.dir / CARD_NAME}: codec {self.card.codec!r} is not a fixed-rate JSCC codec "
                             f"(AKB codecs run with testbed.akb.runtime.AkbCodec)")
        paths = {}
        for role in ("encoder", "decoder"):
            p = self.dir / self.card.__dict__[role]["file"]
            if not p.exists():
                raise ModelError(f"{p}: {role} graph missing (named in {self.dir / CARD_NAME})")
            if verify:
                digest = sha256_file(p)
                if digest != self.card.__dict__[role]["sha256"]:
                    raise ModelError(
                        f"{p}: sha256 {digest[:16]}... does not match the model card "
                        f"({self.card.__dict__[role]['sha256'][:16]}...); the graph and card are mismatched"
                    )
            paths[role] = p
        opts = session_options(threads, spinning)
        try:
            self.enc = ort.InferenceSession(str(paths["encoder"]), opts, providers=["CPUExecutionProvider"])
            self.dec = ort.InferenceSession(str(paths["decoder"]), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelError(f"{self.dir}: cannot load ONNX graphs ({e})") from None
        self._check_contract(paths)
        self.name = self.card.name
        self.sha256 = self.card.sha256
        self.max_symbols = self.card.max_symbols_per_location
        self.snr_range = tuple(self.card.snr_range_db)

    def _check_contract(self, paths) -> None:
        want = {"encoder": ["image", "snr_db", "symbols_per_location"],
                "decoder": ["symbols", "snr_db", "image_size"]}
        for role, sess in (("encoder", self.enc), ("decoder", self.dec)):
            names = [i.name for i in sess.get_inputs()]
            if names != want[role]:
                raise ModelError(f"{paths[role]}: inputs {names}, expected {want[role]} for a {role} graph")

    # -- rates ---------------------------------------------------------------------------------
    def symbols_for_cbr(self, cbr: float | None) -> int:
        """Symbols per 16x16 block for a nominal CBR (None: the highest operating point)."""
        if cbr is None:
            return max(p["symbols_per_location"] for p in self.card.operating_points)
        k = round(cbr * sym.STRIDE * sym.STRIDE * 3)
        if not 1 <= k <= self.max_symbols:
            lo = 1 / (sym.STRIDE ** 2 * 3)
            hi = self.max_symbols / (sym.STRIDE ** 2 * 3)
            raise ModelError(f"CBR {cbr:g} is outside this model's range {lo:.4f}..{hi:.4f} ({self.dir})")
        if not math.isclose(k / (sym.STRIDE ** 2 * 3), cbr, rel_tol=0.02):
            log.warning("CBR %g is not a multiple of 1/768; using %d symbols per block (CBR %.5f)",
                        cbr, k, k / 768)
        return k

    def check_snr(self, snr_db: float) -> None:
        warn_outside_snr_range(snr_db, self.snr_range, self.name)

    # -- coding --------------------------------------------------------------------------------
    def encode(self, image: np.ndarray, snr_db: float, k: int) -> np.ndarray:
        """[H, W, 3] uint8 -> complex64 [k*h*w] symbols (Es = 1)."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
        out = self.enc.run(None, {
            "image": image[None],
            "snr_db": np.array([snr_db], np.float32),
            "symbols_per_location": np.array([k], np.int64),
        })[0][0]
        return (out[:, 0] + 1j * out[:, 1]).astype(np.complex64)

    def decode(self, symbols: np.ndarray, snr_db: float, height: int, width: int) -> np.ndarray:
        """complex [n] received symbols -> [H, W, 3] uint8."""
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
