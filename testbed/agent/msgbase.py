"""What every agent message schema checks with: ids, finite numbers in range, MCS names, and
the error :func:`testbed.agent.messages.decode` raises."""
from __future__ import annotations

import math
import re

from ..core.configfile import ConfigError

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")   # node, intent, job, link ids (also topic levels)
SNR_RANGE = (-50.0, 100.0)              # dB: any SNR a message may carry (the controller clamps hints)
MAX_COUNT = 10**9                       # image sequence numbers, frame and image counts


class MessageError(ValueError):
    """A message that fails validation; the text names the topic and the key."""


def check_id(name: str, value: str) -> None:
    if not ID_RE.match(value):
        raise ConfigError(f"{name}={value!r}: ids are 1-64 of A-Z a-z 0-9 _ . - (no '/', '+', '#', spaces)")


def finite(name: str, value: float | None, lo: float = -math.inf, hi: float = math.inf) -> None:
    if value is not None and not (math.isfinite(value) and lo <= value <= hi):
        raise ConfigError(f"{name}={value}: must be a finite number in [{lo:g}, {hi:g}]")


def check_mcs(value: str) -> None:
    """An MCS of the digital codecs (:mod:`testbed.digital.mcs`), ``auto``, or "" (none asked)."""
    from ..digital.mcs import AUTO, NAMES

    if value and value not in (AUTO, *NAMES):
        raise ConfigError(f"mcs={value!r}: one of {AUTO}, {', '.join(NAMES)}")
