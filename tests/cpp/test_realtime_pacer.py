"""The real-time pacer (``testbed loopback --realtime``): the air at the sample rate, what a slow
receiver loses counted and attributed to the frames on air, a late transmitter's zeros counted
as an underflow."""
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from testbed.gr import cpp_blocks

HERE = Path(__file__).resolve().parent
RATE = 1e6


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    assert cpp_blocks.module() is not None, f"gr-testbedphy not installed: {cpp_blocks.unavailable_reason()}"
    out = tmp_path_factory.mktemp("pacer") / "runs.pkl"
    p = subprocess.run([sys.executable, str(HERE / "pacer_run.py"), str(out)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    with open(out, "rb") as f:
        return pickle.load(f)


def test_a_receiver_that_keeps_up_loses_nothing(runs):
    c, written, wall, burst_samples = runs["fast"]
    assert c["dropped"] == c["overflows"] == 0 and c["underflow"] == 0
    assert c["air"] == written                      # every due sample went out
    assert written <= RATE * wall + 1000            # never faster than the clock
    assert written >= burst_samples                 # all frames, then idle air
    assert c["idle"] == written - burst_samples


def test_a_slow_receiver_loses_samples_and_they_are_counted(runs):
    c, written, wall = runs["slow"]
    assert c["dropped"] > 0 and c["overflows"] > 0
    assert c["air"] == written + c["dropped"]       # sent + dropped = due: nothing vanishes uncounted
    assert c["air"] <= RATE * wall + 1000
    assert 0 < c["dropped_tx"] <= c["dropped"]
    overflows = [e for e in c["events"] if e[0]]
    assert sum(e[2] for e in overflows) == c["dropped"]
    hit = {f for e in overflows for f in e[3]}
    assert hit and hit <= {(7, i) for i in range(6)}


def test_a_late_transmitter_is_an_underflow(runs):
    c, x = runs["underflow"]
    assert c["underflow"] > 0 and c["underflows"] >= 1 and c["dropped"] == 0
    start = int(np.argmax(x != 0))                  # idle air until the source's first sample
    assert c["idle"] == start
    assert np.all(x[start:start + 500] == 1) and np.all(x[start + 500:] == 0)
    ev = [e for e in c["events"] if not e[0]]
    assert ev[0][1] == start + 500 and all(e[3] == [(3, 5)] for e in ev)
    assert sum(e[2] for e in ev) == c["underflow"]
