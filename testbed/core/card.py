"""The model card every codec kind has (``model_card.yaml`` beside its graphs): :class:`CardBase`.

A card names the codec kind, the model's identity (sha256 over its graphs), the SNR range, how it
was trained (``training.lineage``: a list of stages, each with its command, steps and result) and
what it measured. Each codec kind subclasses :class:`CardBase` with its own fields and checks
(``codec/modelcard.py``, ``akb/card.py``) and registers it in :mod:`testbed.zoo`. Loading checks
every key and names the file and key of any problem.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .runlog import write_bytes_atomic

CARD_NAME = "model_card.yaml"


class ModelCardError(ValueError):
    pass


def _is(v, kind) -> bool:
    if kind is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if kind is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, kind)


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", dict: "a mapping", list: "a list"}
_TYPES = {"str": str, "int": int, "float": float, "dict": dict, "list[dict]": list, "list[int]": list,
          "list[float]": list}


@dataclass(kw_only=True)
class CardBase:
    """Fields every card has; a subclass adds its own and overrides :meth:`check`."""
    KIND: ClassVar[str] = ""           # the card's ``codec:`` value
    WHAT: ClassVar[str] = "a codec"    # the kind in words, for messages
    HEADER: ClassVar[str] = "# Model card"
    GRAPH_ROLES: ClassVar[tuple[str, ...]] = ()   # graphs that must be present
    OPTIONAL: ClassVar[tuple[str, ...]] = ("evaluation", "description")

    name: str
    codec: str
    sha256: str                  # model identity: sha256 over the graphs' sha256
    snr_range_db: list[float]
    opset: int
    parameters: int
    git_commit: str
    training: dict
    evaluation: dict = field(default_factory=dict)
    description: str = ""

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, p: Path, data: dict) -> "CardBase":
        """A validated card from the YAML mapping ``data`` read from ``p``."""
        if data.get("codec") != cls.KIND:
            raise ModelCardError(f"{p}: codec {data.get('codec')!r} is not {cls.WHAT} (codec: {cls.KIND})")
        check_keys(p, data, cls)
        check_types(p, data, cls)
        check_range(p, data, "snr_range_db")
        check_training(p, data["training"])
        cls.check(p, data)
        check_files(p, data)
        check_evaluation(p, data.get("evaluation", {}))
        return cls(**data)

    @classmethod
    def check(cls, p: Path, data: dict) -> None:
        """Kind-specific checks beyond the field types (names the file and key)."""

    # -- what every kind answers ---------------------------------------------------------------
    def graphs_by_role(self) -> dict[str, dict]:
        """Role -> ``{file, sha256}`` of every ONNX graph of the model."""
        raise NotImplementedError

    def cbrs(self) -> list[float]:
        """The CBRs the model runs at: its operating points, or the ends of its range."""
        raise NotImplementedError

    def write(self, path: str | Path) -> None:
        """Write the card atomically: name and codec first, the kind's fields, then the rest."""
        d: dict[str, Any] = asdict(self)
        base = [f.name for f in fields(CardBase)]
        order = ["name", "codec"] + [k for k in d if k not in base] + [k for k in base if k not in ("name", "codec")]
        text = self.HEADER + "\n" + yaml.safe_dump({k: d[k] for k in order}, sort_keys=False, width=100)
        write_bytes_atomic(path, text.encode())


def check_keys(p: Path, data: dict, card_cls) -> None:
    """Unknown and missing keys of a card (the class's ``OPTIONAL`` keys may be missing)."""
    names = {f.name for f in fields(card_cls)}
    unknown = sorted(map(str, set(data) - names))
    if unknown:
        raise ModelCardError(f"{p}: unknown key(s) {', '.join(unknown)}")
    missing = sorted(names - set(card_cls.OPTIONAL) - set(data))
    if missing:
        raise ModelCardError(f"{p}: missing key(s) {', '.join(missing)}")


def check_types(p: Path, data: dict, card_cls) -> None:
    """Every key present has the type its dataclass field declares (int, float, str, dict, list
    of numbers); a bool is not a number. Names the file and key."""
    for f in fields(card_cls):
        if f.name not in data:
            continue
        t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        kind = _TYPES.get(t)
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
    if not (isinstance(r, list) and len(r) == 2 and all(_finite(x) for x in r) and r[0] < r[1]):
        raise ModelCardError(f"{p}: key '{key}' must be [min, max] (numbers) with min < max, got {r!r}")


def check_graphs(p: Path, key: str, graphs: dict, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    """``key`` maps each graph role to ``{file, sha256}``; every required role is there."""
    for role in required:
        if role not in graphs:
            raise ModelCardError(f"{p}: {key}.{role} missing")
    for role, v in graphs.items():
        if role not in required + optional:
            raise ModelCardError(f"{p}: {key}.{role}: unknown graph role (valid: {', '.join(required + optional)})")
        if not isinstance(v, dict) or not {"file", "sha256"} <= set(v):
            raise ModelCardError(f"{p}: {key}.{role} must have 'file' and 'sha256'")


def _finite(v) -> bool:
    """A finite number (a bool is not one; an int too large for a float is not finite)."""
    try:
        return _is(v, float) and math.isfinite(v)
    except OverflowError:
        return False


HEX64 = re.compile(r"^[0-9a-f]{64}$")


def check_files(p: Path, data: dict) -> None:
    """The top-level ``sha256`` and every ``{file, sha256}`` mapping of the card (the graphs, the
    KB): ``file`` a relative path inside the model folder, ``sha256`` 64 hexadecimal digits; and
    every number outside ``training`` and ``evaluation`` finite."""
    from .checks import show

    if not HEX64.match(data["sha256"]):
        raise ModelCardError(f"{p}: key 'sha256' must be 64 lower-case hexadecimal digits, got {show(data['sha256'])}")

    def walk(v, key: str) -> None:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not _finite(v):
            raise ModelCardError(f"{p}: {key} must be a finite number, got {show(v)}")
        if isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, f"{key}[{i}]")
        if not isinstance(v, dict):
            return
        if "file" in v:
            f = v["file"]
            if not (isinstance(f, str) and f.strip() and not Path(f).is_absolute() and ".." not in Path(f).parts):
                raise ModelCardError(f"{p}: {key}.file must be a file name inside the model folder, got {show(f)}")
            if "sha256" in v and not (isinstance(v["sha256"], str) and HEX64.match(v["sha256"])):
                raise ModelCardError(f"{p}: {key}.sha256 must be 64 lower-case hexadecimal digits, "
                                     f"got {show(v['sha256'])}")
        for k, x in v.items():
            walk(x, f"{key}.{k}")

    for k, v in data.items():
        if k not in ("training", "evaluation"):
            walk(v, k)


def check_evaluation(p: Path, evaluation: dict) -> None:
    """``evaluation`` (written by ``testbed eval --record-in-card``, read by the controller): each
    entry a mapping whose ``psnr_db`` and ``ms_ssim`` map SNRs (numbers, as text) to finite
    numbers, ``n_images`` and ``seed`` integers >= 0 and ``command`` a string."""
    from .checks import show

    for key, e in evaluation.items():
        where = f"evaluation.{key}"
        if not isinstance(key, str) or not isinstance(e, dict):
            raise ModelCardError(f"{p}: {where} must be a mapping (command, n_images, seed, psnr_db, ms_ssim), "
                                 f"got {show(e)}")
        for k in ("n_images", "seed"):
            if k in e and not (_is(e[k], int) and e[k] >= 0):
                raise ModelCardError(f"{p}: {where}.{k} must be an integer >= 0, got {show(e[k])}")
        if "command" in e and not isinstance(e["command"], str):
            raise ModelCardError(f"{p}: {where}.command must be a string, got {show(e['command'])}")
        for k in ("psnr_db", "ms_ssim"):
            table = e.get(k, {})
            if not isinstance(table, dict):
                raise ModelCardError(f"{p}: {where}.{k} must be a mapping of SNR (dB) to a number, got {show(table)}")
            for snr, v in table.items():
                try:
                    ok_snr = math.isfinite(float(snr)) and not isinstance(snr, bool)
                except (TypeError, ValueError, OverflowError):
                    ok_snr = False
                if not ok_snr:
                    raise ModelCardError(f"{p}: {where}.{k}: key {show(snr)} is not an SNR in dB")
                if not _finite(v):
                    raise ModelCardError(f"{p}: {where}.{k}.{snr} must be a finite number, got {show(v)}")


# ``training.lineage``: one mapping per training stage, oldest first. Required keys, then the
# optional ones, with their types (a stage is a number or a short name; ``steps`` of a scheduler
# stage counts environment timesteps).
LINEAGE_KEYS = {"stage": (int, str), "command": (str,), "steps": (int,)}
LINEAGE_OPTIONAL = {"init_from": (str,), "run": (str,), "codec": (str,), "resumed": (list,), "shipped": (dict,),
                    "result": (dict,), "entropy_steps": (int,), "minutes": (float,), "notes": (str,)}


def check_training(p: Path, training: dict) -> None:
    """``training.lineage``, when present: a non-empty list of stages, each a mapping with
    ``stage`` (a number or a short name), ``command`` (the ``testbed train ...`` line) and
    ``steps``, and optionally the keys of :data:`LINEAGE_OPTIONAL` (``resumed``: the commands that
    continued the run, each a string). Names the file and key of any problem."""
    lineage = training.get("lineage")
    if lineage is None:
        return
    if not isinstance(lineage, list) or not lineage:
        raise ModelCardError(f"{p}: training.lineage must be a non-empty list of stages")
    kinds = {**LINEAGE_KEYS, **LINEAGE_OPTIONAL}
    for i, st in enumerate(lineage):
        key = f"training.lineage[{i}]"
        if not isinstance(st, dict):
            raise ModelCardError(f"{p}: {key} must be a mapping with {', '.join(LINEAGE_KEYS)}, got {st!r}")
        if not isinstance(st.get("command"), str):   # the one key every stage of every card had
            raise ModelCardError(f"{p}: {key} must be a mapping with a 'command' string")
        missing = [k for k in LINEAGE_KEYS if k not in st]
        if missing:
            raise ModelCardError(f"{p}: {key}: missing key(s) {', '.join(missing)}")
        unknown = sorted(map(str, set(st) - set(kinds)))
        if unknown:
            raise ModelCardError(f"{p}: {key}: unknown key(s) {', '.join(unknown)} "
                                 f"(valid: {', '.join(kinds)})")
        for k, v in st.items():
            if not any(_is(v, t) for t in kinds[k]):
                want = " or ".join(_KIND_NAMES[t] for t in kinds[k])
                raise ModelCardError(f"{p}: {key}.{k} must be {want}, got {v!r}")
        bad = [c for c in st.get("resumed", []) if not isinstance(c, str)]
        if bad:
            raise ModelCardError(f"{p}: {key}.resumed must be a list of command strings, got {bad[0]!r}")


def read_card(path: str | Path, card_cls: type[CardBase]) -> CardBase:
    """The card at ``path`` validated as ``card_cls`` (its ``codec:`` must be that kind); a card
    of any registered kind: :func:`testbed.zoo.load_card`."""
    from .configfile import ConfigError, load_yaml

    p = Path(path)
    try:
        data = load_yaml(p, "model card")
    except ConfigError as e:
        raise ModelCardError(str(e)) from None
    return card_cls.from_dict(p, data)
