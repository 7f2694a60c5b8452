"""One interface for every codec kind, and the registry that maps a card's ``codec:`` to it.

A codec kind is a card class (:class:`testbed.core.card.CardBase`) and a runtime class that
follows :class:`Codec`; it is added with one call, ``register_codec(CardClass, RuntimeClass)``
(the built-in kinds are registered in :mod:`testbed.zoo`). Experiments, GNU Radio blocks and
agents use a codec only through :class:`Codec`, so they never ask which kind it is.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from .card import CARD_NAME, CardBase, ModelCardError
from .configfile import ConfigError, load_yaml
from .wire import SideInfo


class ModelError(ValueError):
    """A model folder that cannot be used (missing or mismatched graphs, wrong kind, bad CBR)."""


# command-line spelling of the codec options, for messages that name what the user gave
OPTION_FLAGS = {"ckb": "--no-ckb", "skb": "--no-skb", "allocation": "--allocation", "figures": "--figures",
                "mcs": "--mcs"}
OPTION_DEFAULTS = {"ckb": True, "skb": True, "allocation": "entropy", "figures": False, "mcs": None}
# the codecs that have each option, for messages that refuse it
OPTION_OWNERS = {"ckb": "an AKB codec", "skb": "an AKB codec", "allocation": "an AKB codec",
                 "figures": "an AKB codec", "mcs": "a digital codec (jpeg2000-ldpc, jpeg-ldpc)"}


@dataclass(frozen=True)
class Rate:
    """An operating point, checked by the codec (:meth:`Codec.rate`)."""
    cbr: float                     # nominal CBR
    symbols_per_location: int      # frame-header field: k of a fixed-rate codec; 0: a rate map per image
    options: dict = field(default_factory=dict)   # the kind's options (e.g. ckb, skb, allocation)


@dataclass
class Encoded:
    """One image as channel symbols."""
    symbols: np.ndarray            # complex64, unit mean power, importance-major
    cbr: float                     # channel symbols (side information included) / (H * W * 3)
    symbols_per_location: int      # frame-header field (see :class:`Rate`)
    side: SideInfo | None = None   # side information the header carries (variable-rate kinds)
    mode: int = 0                  # the kind's frame-header mode (the digital kinds' MCS); 0: none
    fields: dict = field(default_factory=dict)   # the kind's log columns for this image
    detail: Any = None             # the kind's own view of the image (figures, policy memory)


@runtime_checkable
class Codec(Protocol):
    """What every codec runtime offers (onnxruntime only; no torch)."""
    card_class: ClassVar[type]     # its :class:`CardBase` subclass
    variable_rate: ClassVar[bool]  # a rate map per image (side information) or a fixed k
    name: str
    sha256: str
    dir: Path
    card: CardBase
    snr_range: tuple[float, float]

    def cbr_range(self) -> tuple[float, float]: ...

    def rate(self, cbr: float | None = None, **options) -> Rate:
        """The operating point for a nominal ``cbr`` (None: the kind's default) and options;
        refuses a CBR outside the model's range and options of another kind, naming them."""

    def check_snr(self, snr_db: float) -> None: ...

    def encode(self, image: np.ndarray, snr_db: float, rate: Rate, previous: Encoded | None = None) -> Encoded:
        """[H, W, 3] uint8 -> :class:`Encoded`; ``previous``: the last image of the same stream."""

    def decode(self, symbols: np.ndarray, snr_db: float, height: int, width: int,
               side: SideInfo | None = None, mode: int = 0, symbol_snr_db: np.ndarray | None = None) -> np.ndarray:
        """Received symbols (missing tail zero-filled) -> [H, W, 3] uint8; ``mode`` as the frame
        header carried it (:attr:`Encoded.mode`); ``symbol_snr_db``: the receiver's SNR estimate
        per symbol (its frame's; NaN where the frame was lost), for kinds that use it (the
        digital codecs' demapper: lost symbols become erasures); the others take ``snr_db``."""

    def decoded_fields(self, sent: Encoded | None = None) -> dict:
        """The kind's log columns for the image :meth:`decode` returned last (e.g. the digital
        kinds' block error rate); given what was sent (a symbol-level run), also the bit error
        rates. ``{}`` for kinds without such columns."""

    def reference_fields(self, reference: np.ndarray, symbols_per_location: int, mode: int) -> dict:
        """For a receiver that knows the image sent (loopback; ota and replay with their image
        list): columns comparing the image :meth:`decode` returned last with what the transmitter
        sent for ``reference`` (the digital kinds re-encode it at the header's budget and MCS: bit
        error rates). ``{}`` for kinds without such columns."""

    def n_symbols(self, symbols_per_location: int, side: SideInfo | None, height: int, width: int) -> int:
        """Channel symbols of an image as announced by its frame header (and side information)."""

    def received_fields(self, symbols_per_location: int, side: SideInfo | None, height: int, width: int) -> dict:
        """The kind's log columns for a received image (before it is decoded)."""

    def check_side(self, side: SideInfo | None) -> str | None:
        """Why this receiver cannot decode an image with ``side`` (e.g. another source KB), or None."""


def warn_outside_snr_range(snr_db: float, snr_range, name: str) -> None:
    """A warning (not an error) for an SNR outside a model's trained range."""
    lo, hi = snr_range
    if not lo <= snr_db <= hi:
        logging.getLogger(__name__).warning("SNR %g dB is outside the model's trained range %g..%g dB (%s); "
                    "results are extrapolated", snr_db, lo, hi, name)


def rate_for(codec: "Codec", cbr: float | None, option: str = "--cbr", **options) -> Rate:
    """``codec.rate(cbr, **options)``, where a CBR the model cannot run at is an error naming the
    command-line ``option`` (the model's default CBR with the same options works: the CBR is what
    is wrong)."""
    try:
        return codec.rate(cbr, **options)
    except ModelError as e:
        if cbr is None:
            raise
        try:
            codec.rate(None, **options)
        except (ModelError, ValueError):
            raise e from None
        raise ModelError(f"{option}: {e}") from None


def check_no_mode(mode: int, codec_name: str) -> None:
    """A kind without frame-header modes refuses an image that came with one."""
    if mode:
        raise ValueError(f"frame mode {mode}: {codec_name} has no modes (an image of a digital codec?)")


def refuse_options(codec_name: str, supported: tuple[str, ...], options: dict) -> None:
    """Options a codec kind does not have, when set to other than their defaults, are refused,
    naming the command-line flags given."""
    given, owners = [], set()
    for k, v in options.items():
        if k in supported:
            continue
        if k not in OPTION_DEFAULTS:
            raise ValueError(f"unknown codec option {k!r}")
        if v != OPTION_DEFAULTS[k]:
            given.append(OPTION_FLAGS[k] + (f" {v}" if k in ("allocation", "mcs") else ""))
            owners.add(OPTION_OWNERS[k])
    if given:
        owners = sorted(owners)
        raise ValueError(f"{' '.join(given)}: need {' or '.join(owners)}; {codec_name} does not take "
                         f"{'it' if len(given) == 1 else 'them'}")


# -- the registry -----------------------------------------------------------------------------------

_KINDS: dict[str, tuple[type, type]] = {}
_BUILTIN: dict[str, Any] = {}      # name -> factory of a codec that needs no model folder


def register_codec(card_class: type, runtime_class: type) -> None:
    """Add a codec kind: cards with ``codec: <card_class.KIND>`` load as ``card_class`` and run
    as ``runtime_class``."""
    kind = card_class.KIND
    if not kind:
        raise ValueError(f"{card_class.__name__}: KIND is empty")
    if kind in _KINDS and _KINDS[kind] != (card_class, runtime_class):
        raise ValueError(f"codec kind {kind!r} is already registered")
    _KINDS[kind] = (card_class, runtime_class)


def register_builtin(name: str, factory) -> None:
    """Add a codec that needs no model folder (the digital baselines): ``--model name`` opens
    ``factory(threads=..., spinning=...)`` unless a folder or shipped model of that name exists."""
    if name in _BUILTIN and _BUILTIN[name] is not factory:
        raise ValueError(f"built-in codec {name!r} is already registered")
    _BUILTIN[name] = factory


def builtin_codecs() -> list[str]:
    return sorted(_BUILTIN)


def codec_kinds() -> list[str]:
    return sorted(_KINDS)


def load_card(path: str | Path) -> CardBase:
    """A validated card of any registered kind (by its ``codec:`` key)."""
    p = Path(path)
    try:
        data = load_yaml(p, "model card")
    except ConfigError as e:
        raise ModelCardError(str(e)) from None
    kind = data.get("codec")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ModelCardError(f"{p}: key 'codec': {kind!r} is not a known codec kind "
                             f"(known: {', '.join(codec_kinds())})")
    return _KINDS[kind][0].from_dict(p, data)


def write_card(path: str | Path, card: CardBase) -> None:
    card.write(path)


def resolve_model_dir(model: str | Path, models_dir: str | Path | None = None) -> Path:
    """Accept a model folder, its card or one of its graphs; also a model name found on the
    model search path (:mod:`testbed.core.paths`)."""
    from .paths import find_model, models_dir as default_dir

    p = Path(model)
    if p.is_file():
        p = p.parent
    if not p.exists():
        found = find_model(str(model), models_dir)
        if found is None:
            where = models_dir or default_dir()
            raise ModelError(f"{model}: no such model folder (and no model of that name in {where})")
        p = found
    if not (p / CARD_NAME).exists():
        raise ModelError(f"{p}: not a model folder ({CARD_NAME} missing)")
    return p


def open_codec(model: str | Path, threads: int = 0, spinning: bool = True, models_dir: str | Path | None = None,
               **kwargs) -> Codec:
    """The runtime of the model's kind. ``spinning=False`` for codecs that run inside a flowgraph
    (see :mod:`testbed.core.ortsession`)."""
    if str(model) in _BUILTIN and not Path(model).exists():
        from .paths import find_model

        if find_model(str(model), models_dir) is None:
            return _BUILTIN[str(model)](threads=threads, spinning=spinning, **kwargs)
    d = resolve_model_dir(model, models_dir)
    try:
        card = load_card(d / CARD_NAME)
    except ModelCardError as e:
        raise ModelError(str(e)) from None
    try:
        return _KINDS[card.codec][1](d, threads=threads, spinning=spinning, **kwargs)
    except (ModelError, ModelCardError, ValueError):   # already named (ValueError: bad options)
        raise
    except Exception as e:   # a file of the model folder its runtime cannot read (e.g. a corrupt kb.npz)
        raise ModelError(f"{d}: cannot open the model ({type(e).__name__}: {e})") from None
