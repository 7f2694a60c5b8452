"""The GC pacing of long-running processes (testbed/core/gcpace.py)."""
import gc
import weakref

import pytest

from testbed.core.gcpace import pace, unpace


class _Node:
    def __init__(self):
        self.other = None


@pytest.fixture
def pacer():
    gc.collect()
    gc.unfreeze()
    p = pace(growth=2.0)
    yield p
    unpace(p)
    gc.collect()


def test_full_collections_freeze_their_survivors(pacer):
    gc.collect()
    before = gc.get_freeze_count()
    keep = [[i] for i in range(20000)]          # tracked, alive
    gc.collect()
    assert gc.get_freeze_count() >= before + 20000
    assert pacer.frozen_runs + pacer.complete_runs >= 2
    del keep


def test_cycles_among_frozen_objects_are_reclaimed_once_the_heap_has_doubled(pacer):
    gc.collect()
    a, b = _Node(), _Node()
    a.other, b.other = b, a                     # a cycle: only the collector can free it
    gone = weakref.ref(a)
    gc.collect()                                # survives (referenced) and is frozen
    del a, b
    gc.collect()
    assert gone() is not None, "a frozen cycle is not collected while frozen"
    keep = []
    for _ in range(8):                          # grow the frozen part until it doubles
        keep.append([[i] for i in range(max(gc.get_freeze_count(), 1000))])
        gc.collect()
        if gone() is None:
            break
    gc.collect()
    assert gone() is None, "cyclic garbage among frozen objects was never reclaimed"
    assert pacer.complete_runs >= 1


def test_growth_must_exceed_one():
    with pytest.raises(ValueError, match="growth"):
        pace(growth=1.0)
