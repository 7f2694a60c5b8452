"""Run a ``testbed`` command with every thread under cProfile (the benchmark's
``--profile-controller``): ``python -m testbed.agent.benchprof OUT.txt -- controller ...``.

cProfile sees only the thread that enables it, and the controller's work runs on paho's network
threads, its status ticker and its QoS writer; so each thread gets a profiler of its own. At exit
``OUT.txt`` gets, per thread, its profiled wall time and the functions by own time and by
cumulative time (the time a thread waits in ``select``, ``wait`` or ``get`` shows there as
the own time of that call), and ``OUT.pstats`` holds the merged statistics.
"""
from __future__ import annotations

import cProfile
import io
import pstats
import runpy
import sys
import threading
import time

_profiles: list[tuple[str, cProfile.Profile, list]] = []


def _patch_threads() -> None:
    orig = threading.Thread.run

    def run(self):
        p = cProfile.Profile()
        span = [time.perf_counter(), None]
        _profiles.append((self.name, p, span))
        p.enable()
        try:
            orig(self)
        finally:
            p.disable()
            span[1] = time.perf_counter()
    threading.Thread.run = run


def _dump(out: str) -> None:
    buf = io.StringIO()
    merged = None
    for name, p, (t0, t1) in _profiles:
        try:
            st = pstats.Stats(p, stream=buf)
        except TypeError:            # a thread that never profiled anything
            continue
        merged = st if merged is None else merged.add(st)
        wall = (t1 or time.perf_counter()) - t0
        buf.write(f"\n===== thread {name}: {wall:.1f} s profiled, {st.total_calls} calls =====\n")
        st.sort_stats("tottime").print_stats(18)
        st.sort_stats("cumulative").print_stats(30)
    with open(out, "w") as f:
        f.write(buf.getvalue())
    if merged is not None:
        merged.dump_stats(out.rsplit(".", 1)[0] + ".pstats")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    out, cmd = argv[0], argv[2:]
    _patch_threads()
    p = cProfile.Profile()
    span = [time.perf_counter(), None]
    _profiles.append(("MainThread", p, span))
    sys.argv = ["testbed"] + cmd
    p.enable()
    try:                             # as `python -m testbed ...` (the program, as `python -m cProfile -m` runs it)
        runpy.run_module("testbed", run_name="__main__", alter_sys=True)
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    finally:
        p.disable()
        span[1] = time.perf_counter()
        _dump(out)


if __name__ == "__main__":
    sys.exit(main())
