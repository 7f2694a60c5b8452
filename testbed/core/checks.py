"""Checks of the numbers a user gives, made where they enter, with messages that name them.

* :func:`check_number` — a value from a config file, a card or an options dataclass: a finite
  number (an integer where asked) within its range, else a :class:`ValueError` ``NAME: must be
  ..., got VALUE``.
* :func:`number` — the same check as an ``argparse`` ``type=``: argparse then names the option
  (``argument --cbr: must be a finite number in (0, 1], got 'nan'``) and exits with code 2.
* :func:`number_list` — comma-separated numbers (``--snr-db 0,5,10``), each checked.

NaN, infinities, huge values and values of the wrong sign are refused before anything runs;
the ranges several commands share are the constants below.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable

# ranges several commands share (inclusive unless noted)
SNR_DB = (-50.0, 100.0)          # SNRs in dB: beyond these the arithmetic over- or underflows
SEED = (0, 2 ** 32 - 1)          # numpy's and GNU Radio's seeds
THREADS = (0, 1024)              # onnxruntime / torch threads (0: the default)
CBR = (0.0, 1.0)                 # channel bandwidth ratio, (0, 1]
SAMP_RATE = (0.0, 1e9)           # S/s, (0, 1e9]


def _describe(integer: bool, lo, hi, lo_open: bool, hi_open: bool) -> str:
    what = "an integer" if integer else "a finite number"
    if lo is not None and hi is not None:
        if integer and not lo_open and not hi_open:
            return f"{what} in {lo}..{hi}"
        return f"{what} in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{what} {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{what} {'<' if hi_open else '<='} {hi:g}"
    return what


def _in_range(v, lo, hi, lo_open: bool, hi_open: bool) -> bool:
    if lo is not None and (v <= lo if lo_open else v < lo):
        return False
    if hi is not None and (v >= hi if hi_open else v > hi):
        return False
    return True


def show(value, limit: int = 60) -> str:
    """``repr(value)`` for a message, shortened (a huge integer or a long string stays readable)."""
    try:
        r = repr(value)
    except ValueError:           # an int beyond Python's digit limit
        return f"an integer of about {value.bit_length() * 3 // 10} digits"
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _valid(value, lo, hi, lo_open: bool, hi_open: bool, integer: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    if not integer:
        try:
            if not math.isfinite(value):
                return False
        except OverflowError:    # an int too large for a float
            return False
    return _in_range(value, lo, hi, lo_open, hi_open)


def check_number(name: str, value, *, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False,
                 integer: bool = False):
    """``value`` if it is a finite number (``integer``: an int; a bool is neither) within
    ``lo``..``hi`` (``lo_open``/``hi_open``: the end excluded), else ValueError naming ``name``."""
    if not _valid(value, lo, hi, lo_open, hi_open, integer):
        raise ValueError(f"{name}: must be {_describe(integer, lo, hi, lo_open, hi_open)}, got {show(value)}")
    return value


def number(kind: type = float, *, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False) -> Callable:
    """An ``argparse`` ``type=`` for a number option: ``kind`` (int or float), finite, within
    ``lo``..``hi``; anything else is an :class:`argparse.ArgumentTypeError` (argparse names the
    option and exits with code 2)."""
    integer = kind is int

    def parse(text: str):
        try:
            v = int(text) if integer else float(text)
        except ValueError:
            v = None
        if v is None or not _valid(v, lo, hi, lo_open, hi_open, integer):
            raise argparse.ArgumentTypeError(f"must be {_describe(integer, lo, hi, lo_open, hi_open)}, got {show(text)}")
        return v

    parse.__name__ = kind.__name__
    parse.bounds = {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "integer": integer}   # for tests
    return parse


def is_valid(value, bounds: dict) -> bool:
    """Whether ``value`` passes a :func:`number` type's ``bounds``."""
    return _valid(value, bounds["lo"], bounds["hi"], bounds["lo_open"], bounds["hi_open"], bounds["integer"])


def number_list(text: str, option: str, *, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False,
                unit: str = "") -> list[float]:
    """Comma-separated numbers of ``option`` (each finite, within the range, given once)."""
    try:
        vals = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option}: expected comma-separated numbers{unit}, got {show(text)}") from None
    if not vals:
        raise ValueError(f"{option}: no value given")
    for v in vals:
        check_number(option, v, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open)
    from collections import Counter

    twice = sorted(v for v, n in Counter(vals).items() if n > 1)
    if twice:
        raise ValueError(f"{option}: {twice[0]:g} is given more than once")
    return vals


def read_input(path, what: str, error: type = ValueError) -> bytes:
    """The bytes of an input file; a missing file, a folder or an unreadable file is an
    ``error`` naming the file and calling it ``what`` (e.g. "config file")."""
    from pathlib import Path

    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise error(f"{p}: {what} not found") from None
    except IsADirectoryError:
        raise error(f"{p}: is a folder, not a {what}") from None
    except OSError as e:
        raise error(f"{p}: cannot read the {what} ({e.strerror or e})") from None
