"""The digital baselines as codecs: :class:`DigitalCodec` (built-in codecs ``jpeg2000-ldpc`` and
``jpeg-ldpc``, registered in :mod:`testbed.zoo`), following :class:`testbed.core.codecs.Codec`.

A digital codec needs no model folder. Its rate is a symbol budget like a fixed-rate JSCC
codec's (``symbols_per_location`` symbols per 16 x 16 pixels: CBR = k / 768, the frame header's
field), and its option ``mcs`` an MCS name or ``auto`` (:mod:`testbed.digital.mcs`; ``auto``
is chosen per image from the SNR the transmitter is given). The MCS travels as the frame's
``mode`` (its index + 1), so the receiver needs nothing else.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.card import CardBase
from ..core.wire import BLOCK_PIXELS, block_grid
from ..core.codecs import Encoded, ModelError, Rate, refuse_options
from . import ldpc_codes, link
from .evaluation import load_evaluation, record_evaluation
from .mcs import AUTO, MCS_TABLE, TABLE, Mcs, choose
from .mcs import mcs as mcs_named

SYMBOL_DIVISOR = BLOCK_PIXELS * BLOCK_PIXELS * 3   # CBR = symbols per location / 768, as for the JSCC codecs
MAX_SYMBOLS = 255                         # the frame header's u8
DEFAULT_SYMBOLS = 48                      # CBR 0.0625
ERASURE_NOISE_VAR = 1e6                   # a lost symbol's noise variance: LLRs of about 0
SOURCES = {"jpeg2000-ldpc": "jpeg2000", "jpeg-ldpc": "jpeg"}


@dataclass(kw_only=True)
class DigitalCard(CardBase):
    """What a digital codec says about itself (built in code; there is no card file)."""
    KIND = "digital"
    WHAT = "a digital (separation) codec"
    source: str
    channel_code: str
    mcs_table_sha256: str


def _grid(height: int, width: int) -> int:
    hb, wb = block_grid(height, width)
    return hb * wb


def _mode(m: Mcs) -> int:
    """The frame-header mode of an MCS (its index + 1; 0 is no mode)."""
    return MCS_TABLE.index(m) + 1


def _mcs_of(mode: int, codec_name: str) -> Mcs:
    if not 1 <= int(mode) <= len(MCS_TABLE):
        raise ValueError(f"frame mode {mode}: not an MCS of {codec_name} (1..{len(MCS_TABLE)})")
    return MCS_TABLE[int(mode) - 1]


class DigitalCodec:
    card_class = DigitalCard
    variable_rate = False
    OPTIONS = ("mcs",)

    def __init__(self, name: str, threads: int = 0, spinning: bool = True, **_):
        if name not in SOURCES:
            raise ModelError(f"{name}: not a digital codec (known: {', '.join(SOURCES)})")
        self.name, self.source = name, SOURCES[name]
        self.dir = Path(__file__).resolve().parent
        table = TABLE.read_bytes() if TABLE.is_file() else b""
        ident = hashlib.sha256()
        for part in (name, "802.11n-1944", *(ldpc_codes.PROTOTYPES[r] for r in ldpc_codes.RATES)):
            ident.update(part.encode())
        ident.update(table)
        self.sha256 = ident.hexdigest()
        self.snr_range = (-10.0, 40.0)
        self.card = DigitalCard(name=name, codec=DigitalCard.KIND, sha256=self.sha256, snr_range_db=list(self.snr_range),
                                opset=0, parameters=0, git_commit="", training={}, source=self.source,
                                channel_code="IEEE 802.11n LDPC, N=1944, CRC-32 per block",
                                mcs_table_sha256=hashlib.sha256(table).hexdigest(),
                                evaluation=load_evaluation(name, self.sha256))
        self._last: link.Received | None = None

    # -- rates ---------------------------------------------------------------------------------
    def record_evaluation(self, key: str, result: dict) -> Path:
        """Keep an evaluation (``testbed eval --record-in-card``): there is no card file, so in
        the digital codecs' table (:mod:`testbed.digital.evaluation`)."""
        path = record_evaluation(self.name, self.sha256, key, result)
        self.card.evaluation[key] = result
        return path

    def cbr_range(self) -> tuple[float, float]:
        return 1 / SYMBOL_DIVISOR, MAX_SYMBOLS / SYMBOL_DIVISOR

    def rate(self, cbr: float | None = None, symbols_per_location: int | None = None, mcs: str | None = None,
             **options) -> Rate:
        refuse_options(self.name, self.OPTIONS, options)
        if symbols_per_location:
            k = int(symbols_per_location)
        elif cbr is None:
            k = DEFAULT_SYMBOLS
        else:
            k = round(float(cbr) * SYMBOL_DIVISOR)
        if not 1 <= k <= MAX_SYMBOLS:
            lo, hi = self.cbr_range()
            raise ModelError(f"CBR {k / SYMBOL_DIVISOR:g} is outside {self.name}'s range {lo:.4f}..{hi:.4f}")
        name = AUTO if mcs is None else str(mcs)
        if name != AUTO:
            mcs_named(name)                            # a clear error for an unknown MCS
        return Rate(cbr=k / SYMBOL_DIVISOR, symbols_per_location=k, options={"mcs": name})

    def check_snr(self, snr_db: float) -> None:
        if not np.isfinite(snr_db):
            raise ValueError(f"SNR {snr_db!r} dB is not a number")

    # -- coding --------------------------------------------------------------------------------
    def encode(self, image: np.ndarray, snr_db: float, rate: Rate, previous: Encoded | None = None) -> Encoded:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        k = rate.symbols_per_location
        name = rate.options.get("mcs", AUTO)
        m = choose(snr_db) if name == AUTO else mcs_named(name)
        n = k * _grid(h, w)
        sent = link.transmit(image, n, self.source, m)
        return Encoded(symbols=sent.symbols, cbr=n / (h * w * 3), symbols_per_location=k,
                       mode=_mode(m),
                       fields={"symbols_per_location": k, "mcs": m.name, "code_blocks": sent.fields["code_blocks"],
                               "codestream_bytes": sent.fields["codestream_bytes"],
                               "bits_sent": sent.fields["bits_sent"]},
                       detail=sent)

    def decode(self, symbols: np.ndarray, snr_db: float, height: int, width: int, side=None,
               mode: int = 0, symbol_snr_db: np.ndarray | None = None) -> np.ndarray:
        """``symbol_snr_db`` (per symbol, NaN: lost) or else ``snr_db`` sets the demapper's noise
        variance (unit-energy symbols); a lost symbol is an erasure (LLRs of about 0)."""
        m = _mcs_of(mode, self.name)
        snr = None if symbol_snr_db is None else np.asarray(symbol_snr_db, dtype=np.float64).reshape(-1)
        if snr is not None and snr.size == np.size(symbols) and np.isfinite(snr).any():
            noise_var = np.where(np.isfinite(snr), 10.0 ** (-np.nan_to_num(snr) / 10.0), ERASURE_NOISE_VAR)
        else:
            noise_var = 10.0 ** (-float(snr_db) / 10.0)
        self._last = link.receive(symbols, noise_var, m, self.source, height, width)
        return self._last.image

    def decoded_fields(self, sent: Encoded | None = None) -> dict:
        rx = self._last
        if rx is None:
            return {}
        f = {"mcs": rx.fields["mcs"], "blocks_failed": rx.fields["blocks_failed"], "bler": rx.fields["bler"]}
        if sent is not None and isinstance(sent.detail, link.Sent):
            f.update(link.error_fields(sent.detail, rx))
        return f

    def reference_fields(self, reference: np.ndarray, symbols_per_location: int, mode: int) -> dict:
        rx = self._last
        if rx is None or reference.shape != rx.image.shape:
            return {}
        h, w = reference.shape[:2]
        try:
            sent = link.transmit(reference, symbols_per_location * _grid(h, w), self.source, _mcs_of(mode, self.name))
        except ValueError:          # (an unknown mode, or a budget the image no longer fits)
            return {}
        return link.error_fields(sent, rx)

    # -- what the receiver asks ----------------------------------------------------------------
    def n_symbols(self, symbols_per_location: int, side, height: int, width: int) -> int:
        return symbols_per_location * _grid(height, width)

    def received_fields(self, symbols_per_location: int, side, height: int, width: int) -> dict:
        return {"symbols_per_location": symbols_per_location, "kb_index": -1}

    def check_side(self, side) -> str | None:
        return None if side is None else "a digital codec takes no side information"

