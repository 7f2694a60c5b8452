"""Typed configs: dataclasses filled from YAML mappings, with errors naming the file and key.

``from_mapping(cls, data, where)`` checks unknown keys, missing required keys and the type of
every value (int, float, bool, str, lists/tuples of those, nested dataclasses), then calls the
dataclass's ``validate()`` if it has one. ``where`` names the file; messages read
``FILE: section.key: problem``.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import typing
from pathlib import Path
from typing import Any

import yaml

from .checks import show


class ConfigError(ValueError):
    pass


def _check_value(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {show(value)}")
        inner = args[0] if args else Any
        vals = [_check_value(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(vals) if origin is tuple else vals
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {show(value)}")
        return from_mapping(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {show(value)}")
        return value
    if tp is float:
        if isinstance(value, str):   # YAML 1.1 reads 1e6 / 1.0e6 as strings
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {show(value)}")
        try:
            v = float(value)
        except OverflowError:
            v = math.inf
        if not math.isfinite(v):
            raise ConfigError(f"{where}={show(value)}: must be a finite number")
        return v
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {show(value)}")
        return value
    return value


@functools.lru_cache(maxsize=None)
def _schema(cls) -> tuple[dict, dict]:
    """Type hints and fields of a dataclass (resolving the hints is slow: done once per class)."""
    return typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}


def from_mapping(cls, data: dict, where: str, path: str = ""):
    """``where``: the file (or a label); ``path``: the key path of this mapping ("" or "ofdm.")."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {path.rstrip('.') or 'top level'}: expected a mapping, got {type(data).__name__}")
    hints, flds = _schema(cls)
    unknown = sorted(set(data) - set(flds), key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown key '{path}{unknown[0]}' (valid keys: {', '.join(flds)})")
    kwargs = {}
    for name, f in flds.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing key '{path}{name}'")
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_mapping(tp, data[name], where, f"{path}{name}.")
        else:
            try:
                kwargs[name] = _check_value(data[name], tp, "")
            except ConfigError as e:
                raise ConfigError(f"{where}: {path}{name}{str(e)}") from None
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        try:
            obj.validate()
        except ConfigError as e:
            raise ConfigError(f"{where}: {path}{e}") from None
    return obj


def load_yaml(path: str | Path, what: str = "config file") -> dict:
    """A YAML file whose top level is a mapping; errors name the file (``what``: how to call it)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        # UTF-8, or UTF-16 with its byte-order mark (what some Windows editors and shells write)
        text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8")
        data = yaml.safe_load(text)
    except FileNotFoundError:
        raise ConfigError(f"{p}: {what} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a folder, not a {what}") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the {what} ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text file (UTF-8, or UTF-16 with a byte-order mark)") from None
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data
