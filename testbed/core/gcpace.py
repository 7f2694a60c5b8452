"""Garbage-collector pacing for a long-running, latency-sensitive process (the controller).

CPython's full (generation 2) collection walks every tracked object and holds the GIL while it
does, so every thread of the process stops. A controller that holds thousands of intents and
links ran one each time its heap had grown by a quarter, 20-57 ms each at 3000 intents (the
agent benchmark, 1000 nodes), and every intent that arrived meanwhile waited.

:func:`pace` freezes the survivors of each full collection (:func:`gc.freeze`: later
collections skip them), so that the next one walks only what was allocated since. Cyclic garbage
among frozen objects would never be reclaimed, so once the frozen part has grown ``growth``-fold
since the last complete collection, everything is unfrozen and the next full collection walks it
all (at 2x, 4x, 8x ... the heap: rarer as it grows). Objects freed by reference counting (most of
them) are freed at once either way.
"""
from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


class GcPacer:
    def __init__(self, growth: float = 2.0):
        if not growth > 1:
            raise ValueError(f"growth must be > 1, got {growth!r}")
        self.growth = growth
        self.base = max(gc.get_freeze_count(), 1)   # frozen after the last complete collection
        self.full = False                           # the next full collection walks everything
        self.frozen_runs = self.complete_runs = 0

    def __call__(self, phase: str, info: dict) -> None:
        if phase != "stop" or info.get("generation") != 2:
            return
        if self.full:                  # this one walked everything: its survivors are the new base
            self.full = False
            self.complete_runs += 1
            gc.freeze()
            self.base = max(gc.get_freeze_count(), 1)
            return
        gc.freeze()
        self.frozen_runs += 1
        if gc.get_freeze_count() >= self.growth * self.base:
            gc.unfreeze()              # the next full collection reclaims cycles among them
            self.full = True
            log.debug("gc: %d objects unfrozen for a complete collection", gc.get_count()[2])


def pace(growth: float = 2.0) -> GcPacer:
    """Install the pacing (a :data:`gc.callbacks` entry) and return it; :func:`unpace` removes it."""
    p = GcPacer(growth)
    gc.callbacks.append(p)
    return p


def unpace(p: GcPacer) -> None:
    if p in gc.callbacks:
        gc.callbacks.remove(p)
    gc.unfreeze()
