"""Per-thread CPU accounting (testbed.core.cputime)."""
import sys
import threading
import time

import pytest

from testbed.core import cputime

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_parse_stat_takes_the_name_up_to_the_last_parenthesis():
    tick = cputime._TICK
    line = f"4242 (odd) name) S 1 2 3 0 -1 4194560 10 0 0 0 {3 * tick} {tick} 0 0 20 0 1 0"
    assert cputime.parse_stat(line) == ("odd) name", 4.0)


@linux
def test_a_busy_named_thread_is_charged_its_cpu():
    before = cputime.Snapshot()
    done = threading.Event()

    def spin():
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(15, b"busy_worker", 0, 0, 0)   # PR_SET_NAME: what GNU Radio does per block
        t0 = time.process_time()
        while time.thread_time() < 0.3 and time.process_time() - t0 < 5:
            pass
        done.wait()

    th = threading.Thread(target=spin)
    th.start()
    try:
        while "busy_worker" not in {n for n, _ in cputime.threads().values()}:
            time.sleep(0.01)
        time.sleep(0.5)
        u = cputime.usage(before)
    finally:
        done.set()
        th.join()
    assert u["cpu_by_thread"]["busy_worker"] >= 0.25
    assert u["cpu_s"] >= u["cpu_by_thread"]["busy_worker"] - 0.02
    ranked = [s for n, s in u["cpu_by_thread"].items() if n != "(other)"]
    assert ranked == sorted(ranked, reverse=True)


def test_top_keeps_the_busiest_and_adds_up_the_rest():
    before = cputime.Snapshot(process_s=1.0, by_tid={1: ("a", 1.0), 2: ("b", 0.0), 4: ("old", 5.0)})
    # thread 4's id was re-used by a new thread of another name: it counts from zero
    after = cputime.Snapshot(process_s=9.0, by_tid={1: ("a", 4.0), 2: ("b", 1.0), 3: ("c", 2.0), 4: ("new", 0.5),
                                                   5: ("c", 0.5)})
    u = cputime.usage(before, after, top=2)
    assert u == {"cpu_s": 8.0, "cpu_by_thread": {"a": 3.0, "c": 2.5, "(other)": 1.5}}
    assert "8.00 s over 4.00 s (2.00 cores)" in cputime.format_usage(u, 4.0)


@linux
def test_the_sampler_keeps_threads_that_ended_before_the_measurement():
    """A flowgraph's blocks end when its source is done: sampled while they ran, they still count."""
    before, sampler = cputime.Snapshot(), cputime.Sampler()
    burned, sampled = threading.Event(), threading.Event()

    def spin():
        import ctypes
        import hashlib

        ctypes.CDLL(None).prctl(15, b"short_lived", 0, 0, 0)
        block = bytes(1 << 16)      # hashing large blocks burns CPU outside the GIL
        t0 = time.monotonic()
        while time.thread_time() < 0.3 and time.monotonic() - t0 < 30:
            hashlib.sha256(block).digest()
        burned.set()
        sampled.wait(30)            # sampled once while alive, then it ends

    th = threading.Thread(target=spin)
    th.start()
    assert burned.wait(60)
    sampler.sample()
    sampled.set()
    th.join()
    assert "short_lived" not in cputime.usage(before)["cpu_by_thread"]          # gone with its thread
    assert cputime.usage(before, sampler.snapshot())["cpu_by_thread"]["short_lived"] >= 0.2
