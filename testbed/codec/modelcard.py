"""Model cards: the YAML file beside each shipped model (``model_card.yaml``).

A card names the graphs and their sha256, the CBR operating points, the SNR range, how the model
was trained (command, data, steps) and what it measured on Kodak. Loading validates every key and
names the file and key of any problem.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..runlog import write_bytes_atomic

CARD_NAME = "model_card.yaml"


class ModelCardError(ValueError):
    pass


@dataclass
class ModelCard:
    name: str
    codec: str
    encoder: dict
    decoder: dict
    sha256: str
    operating_points: list[dict]
    max_symbols_per_location: int
    stride: int
    snr_range_db: list[float]
    opset: int
    parameters: int
    git_commit: str
    training: dict
    evaluation: dict = field(default_factory=dict)
    description: str = ""

    def cbrs(self) -> list[float]:
        return [float(p["cbr"]) for p in self.operating_points]


def check_keys(p: Path, data: dict, card_cls) -> None:
    """Unknown and missing keys of a card (``evaluation`` and ``description`` are optional)."""
    names = {f.name for f in fields(card_cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ModelCardError(f"{p}: unknown key(s) {', '.join(unknown)}")
    missing = sorted(names - {"evaluation", "description"} - set(data))
    if missing:
        raise ModelCardError(f"{p}: missing key(s) {', '.join(missing)}")


def _is(v, kind) -> bool:
    if kind is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if kind is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, kind)


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", dict: "a mapping", list: "a list"}


def check_types(p: Path, data: dict, card_cls) -> None:
    """Every key present has the type its dataclass field declares (int, float, str, dict, list
    of numbers); a bool is not a number. Names the file and key."""
    kinds = {"str": str, "int": int, "float": float, "dict": dict, "list[dict]": list,
             "list[int]": list, "list[float]": list}
    for f in fields(card_cls):
        if f.name not in data:
            continue
        t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        kind = kinds.get(t)
        if kind is None:
            continue
        v = data[f.name]
        if not _is(v, kind):
            raise ModelCardError(f"{p}: key '{f.name}' must be {_KIND_NAMES[kind]}, got {v!r}")
        if t in ("list[int]", "list[float]"):
            item = int if t == "list[int]" else float
            bad = [x for x in v if not _is(x, item)]
            if bad:
                raise ModelCardError(f"{p}: key '{f.name}' must hold only "
                                     f"{'integers' if item is int else 'numbers'}, got {bad[0]!r}")


def check_range(p: Path, data: dict, key: str) -> None:
    r = data[key]
    if not (isinstance(r, list) and len(r) == 2 and all(_is(x, float) for x in r) and r[0] < r[1]):
        raise ModelCardError(f"{p}: key '{key}' must be [min, max] (numbers) with min < max, got {r!r}")


def load_card(path: str | Path):
    """A validated card: :class:`ModelCard` (codec v1) or :class:`testbed.akb.card.AkbCard`."""
    from ..configfile import ConfigError, load_yaml

    p = Path(path)
    try:
        data = load_yaml(p, "model card")
    except ConfigError as e:
        raise ModelCardError(str(e)) from None
    if data.get("codec") == "akb-jscc":
        from ..akb.card import validate_card

        return validate_card(p, data)
    check_keys(p, data, ModelCard)
    check_types(p, data, ModelCard)
    if data["max_symbols_per_location"] < 1:
        raise ModelCardError(f"{p}: key 'max_symbols_per_location' must be >= 1, got {data['max_symbols_per_location']}")
    for g in ("encoder", "decoder"):
        if not isinstance(data[g], dict) or not {"file", "sha256"} <= set(data[g]):
            raise ModelCardError(f"{p}: key '{g}' must have 'file' and 'sha256'")
    if not isinstance(data["operating_points"], list) or not data["operating_points"]:
        raise ModelCardError(f"{p}: key 'operating_points' must be a non-empty list")
    for i, op in enumerate(data["operating_points"]):
        if not isinstance(op, dict) or not {"symbols_per_location", "cbr"} <= set(op):
            raise ModelCardError(f"{p}: operating_points[{i}] needs 'symbols_per_location' and 'cbr'")
        k = op["symbols_per_location"]
        if not _is(op["cbr"], float):
            raise ModelCardError(f"{p}: operating_points[{i}].cbr must be a number, got {op['cbr']!r}")
        if not _is(k, int) or not 1 <= k <= data["max_symbols_per_location"]:
            raise ModelCardError(f"{p}: operating_points[{i}].symbols_per_location={k!r} is outside "
                                 f"1..{data['max_symbols_per_location']}")
    check_range(p, data, "snr_range_db")
    return ModelCard(**data)


def write_card(path: str | Path, card) -> None:
    """Write a card atomically (an :class:`testbed.akb.card.AkbCard` in its own layout)."""
    if card.codec == "akb-jscc":
        from ..akb.card import write_card as write_akb_card

        return write_akb_card(path, card)
    d: dict[str, Any] = asdict(card)
    text = "# Model card (written by `testbed export`, evaluation by `testbed eval --record-in-card`)\n"
    text += yaml.safe_dump(d, sort_keys=False, width=100)
    write_bytes_atomic(path, text.encode())
