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

from .checks import read_input, show


class ConfigError(ValueError):
    pass


def _check_value(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked (and converted, e.g. a list to a tuple) against the type ``tp``."""
    return _checker(tp)(value, where)


def _is_union(origin) -> bool:
    return origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>")


@functools.lru_cache(maxsize=None)
def _checker(tp: Any):
    """A function ``check(value, where)`` for the type ``tp``, built once per type (taking the
    type apart with ``typing.get_origin`` on every value costs more than the check itself, and
    every MQTT message goes through here)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return lambda value, where: value
    if _is_union(origin):
        optional = type(None) in args
        alts = [_checker(a) for a in args if a is not type(None)]

        def check_union(value, where):
            if value is None and optional:
                return None
            errors = []
            for alt in alts:
                try:
                    return alt(value, where)
                except ConfigError as e:
                    errors.append(str(e))
            raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
        return check_union
    if origin in (list, tuple):
        inner = _checker(args[0] if args else Any)
        as_tuple = origin is tuple

        def check_list(value, where):
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{where}: expected a list, got {show(value)}")
            vals = [inner(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return tuple(vals) if as_tuple else vals
        return check_list
    if dataclasses.is_dataclass(tp):
        def check_dataclass(value, where):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a mapping, got {show(value)}")
            return from_mapping(tp, value, where)
        return check_dataclass
    if tp is bool:
        def check_bool(value, where):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: expected true or false, got {show(value)}")
            return value
        return check_bool
    if tp is int:
        def check_int(value, where):
            if type(value) is int:
                return value
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where}: expected an integer, got {show(value)}")
            return value
        return check_int
    if tp is float:
        return _check_float
    if tp is str:
        def check_str(value, where):
            if not isinstance(value, str):
                raise ConfigError(f"{where}: expected a string, got {show(value)}")
            return value
        return check_str
    return lambda value, where: value


def _check_float(value, where):
    if type(value) is float and math.isfinite(value):
        return value
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


@functools.lru_cache(maxsize=None)
def _schema(cls) -> tuple[dict, dict, list]:
    """Type hints and fields of a dataclass, and per field (name, required, nested dataclass or
    None, value checker): resolving the hints is slow, so this is done once per class."""
    hints, flds = typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}
    plan = [(name, f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
             hints[name] if dataclasses.is_dataclass(hints[name]) else None, _checker(hints[name]))
            for name, f in flds.items()]
    return hints, flds, plan


def from_mapping(cls, data: dict, where: str, path: str = ""):
    """``where``: the file (or a label); ``path``: the key path of this mapping ("" or "ofdm.")."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {path.rstrip('.') or 'top level'}: expected a mapping, got {type(data).__name__}")
    _, flds, plan = _schema(cls)
    if not data.keys() <= flds.keys():
        unknown = sorted(set(data) - set(flds), key=str)
        raise ConfigError(f"{where}: unknown key '{path}{unknown[0]}' (valid keys: {', '.join(flds)})")
    kwargs = {}
    for name, required, nested, check in plan:
        if name not in data:
            if required:
                raise ConfigError(f"{where}: missing key '{path}{name}'")
            continue
        if nested is not None:
            kwargs[name] = from_mapping(nested, data[name], where, f"{path}{name}.")
        else:
            try:
                kwargs[name] = check(data[name], "")
            except ConfigError as e:
                raise ConfigError(f"{where}: {path}{name}{str(e)}") from None
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        try:
            obj.validate()
        except ConfigError as e:
            raise ConfigError(f"{where}: {path}{e}") from None
    return obj


def to_mapping(obj) -> dict:
    """A dataclass's fields as a dict, nested dataclasses as dicts. Unlike
    ``dataclasses.asdict`` it does not copy lists and dicts (the caller serialises the result
    at once; copying is what made ``asdict`` the largest cost of every MQTT message)."""
    _, _, plan = _schema(type(obj))
    return {name: to_mapping(v) if nested is not None and v is not None else v
            for name, _, nested, _ in plan for v in (getattr(obj, name),)}


def load_yaml(path: str | Path, what: str = "config file") -> dict:
    """A YAML file whose top level is a mapping; errors name the file (``what``: how to call it)."""
    p = Path(path)
    raw = read_input(p, what, ConfigError)
    try:
        # UTF-8, or UTF-16 with its byte-order mark (what some Windows editors and shells write)
        text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8")
        data = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text file (UTF-8, or UTF-16 with a byte-order mark)") from None
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data
