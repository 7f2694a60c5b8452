"""Lost samples, counted. The real-time pacer (``testbed loopback --realtime``): the air at the
sample rate, what a slow receiver loses counted and attributed to the frames on air, a late
transmitter's zeros counted as an underflow. The radio monitor (``testbed ota``): losses from
gr-uhd's rx_time tags exactly, and from the sample count over wall time as an estimate."""

import numpy as np
import pytest

from tests.cpp import run_flowgraphs

RATE = 1e6


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return run_flowgraphs("air_run.py", tmp_path_factory.mktemp("air"))


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


def test_monitor_counts_the_samples_an_rx_time_tag_says_were_lost(runs):
    m = runs["rx_time"]
    assert m["time_tags"] == 3 and m["exact"] == 2500 and m["estimate"] == 0 and m["samples"] == 20_000
    ((offset, n, exact, t),) = m["gaps"]
    assert (offset, n, exact) == (10_000, 2500, True)
    assert m["t_before"] <= t <= m["t_after"]       # time.monotonic's clock: images on air can be matched


def test_monitor_estimates_a_loss_from_the_sample_count_over_wall_time(runs):
    short, ok = runs["clock_short"], runs["clock_ok"]
    assert short["exact"] == 0 and short["estimate"] > 100_000          # ~0.9 MS/s missing for 0.5 s
    assert all(not g[2] for g in short["gaps"]) and sum(g[1] for g in short["gaps"]) == short["estimate"]
    assert ok["estimate"] == 0 and ok["samples"] > 0
