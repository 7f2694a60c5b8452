"""Parts of the control-plane benchmark (:mod:`testbed.agent.bench`): the worker processes that
run the simulated nodes (:mod:`testbed.agent.simnodes`) and collect what they report, CPU
accounting from ``/proc``, percentiles and rates."""
from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from multiprocessing.connection import wait as mp_wait
from pathlib import Path

import numpy as np

from .simnodes import worker_main


def pct(v, qs=(50, 95, 99)) -> dict:
    v = np.asarray(v, dtype=float)
    if not len(v):
        return {"n": 0}
    return {"n": int(len(v)), **{f"p{q}": round(float(np.percentile(v, q)), 2) for q in qs},
            "max": round(float(v.max()), 2)}


class Workers:
    """The worker processes and what they report (a collector thread reads their pipes)."""

    def __init__(self, url_host: str, port: int, nodes: list, procs: int, models, shas, phases, resend_s: float,
                 nice: int = 0):
        ctx = mp.get_context("spawn")     # the parent has threads (paho): no fork
        self.conns, self.procs = [], []
        self.stats: list[dict] = [{} for _ in range(procs)]
        self.finals: list[dict | None] = [None] * procs
        self.arrivals: dict[str, float] = {}
        self.failed: list[str] = []
        self.ready = 0
        self.lock = threading.Lock()
        for i in range(procs):
            part = nodes[i::procs]
            a, b = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(b, url_host, port, part, models, shas, phases, resend_s, nice),
                            name=f"simnodes-{i}", daemon=True)
            p.start()
            b.close()
            self.conns.append(a)
            self.procs.append(p)
        self.t = threading.Thread(target=self._collect, name="bench-collector", daemon=True)
        self.t.start()

    def _collect(self) -> None:
        live = dict(enumerate(self.conns))
        while live:
            for c in mp_wait(list(live.values()), timeout=0.5):
                i = self.conns.index(c)
                try:
                    what, arg = c.recv()
                except (EOFError, OSError):
                    del live[i]
                    continue
                with self.lock:
                    if what == "stats":
                        for iid, t in arg.pop("assigned"):
                            self.arrivals.setdefault(iid, t)
                        self.stats[i] = arg
                    elif what == "ready":
                        self.ready += 1
                    elif what == "final":
                        self.finals[i] = arg
                        del live[i]
                    elif what == "failed":
                        self.failed.append(arg)
                        del live[i]

    def total(self, key: str) -> int:
        with self.lock:
            return sum(s.get(key, 0) for s in self.stats)

    def send(self, cmd) -> None:
        for c in self.conns:
            try:
                c.send(cmd)
            except (BrokenPipeError, OSError):
                pass

    def stop(self, timeout_s: float = 30.0) -> None:
        self.send(("stop", True))
        t_end = time.monotonic() + timeout_s
        for p in self.procs:
            p.join(max(0.1, t_end - time.monotonic()))
            if p.is_alive():
                p.kill()
        self.t.join(5)


def _stat(pid) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cpu_s(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system) a process has used so far; with ``children``, also its child
    processes (the controller's QoS intake), ended ones included (Linux; 0 elsewhere)."""
    f = _stat(pid)
    if f is None:
        return 0.0
    total = sum(int(x) for x in f[11:15 if children else 13])     # utime, stime (+ of children waited for)
    for d in Path("/proc").iterdir() if children else ():
        if d.name.isdigit() and d.name != str(pid):
            c = _stat(d.name)
            if c is not None and c[1] == str(pid):
                total += sum(int(x) for x in c[11:13])
    return total / os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used (Linux; 0 elsewhere)."""
    try:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")      # all but idle and iowait
    except (OSError, IndexError, ValueError):
        return 0.0


class CpuMeter:
    """CPU the benchmark's processes (and the rest of the machine) use between two readings."""

    def __init__(self, pids: dict, with_children: tuple = ("controller",)):
        self.pids, self.kids = pids, with_children
        self.t0, self.busy0 = time.perf_counter(), _machine_busy_s()
        self.c0 = {k: sum(_cpu_s(p, k in self.kids) for p in v) for k, v in pids.items()}

    def read(self) -> dict:
        wall = time.perf_counter() - self.t0
        use = {k: sum(_cpu_s(p, k in self.kids) for p in v) - self.c0[k] for k, v in self.pids.items()}
        busy = _machine_busy_s() - self.busy0
        return {"wall_s": round(wall, 1), **{f"{k}_cores": round(v / wall, 2) for k, v in use.items()},
                "machine_busy_cores": round(busy / wall, 2),
                "others_cores": round(max(0.0, busy - sum(use.values())) / wall, 2)}


def peak_rate(times: np.ndarray, window_s: float = 1.0) -> float:
    if len(times) == 0:
        return 0.0
    t = np.sort(times)
    j = np.searchsorted(t, t + window_s)
    return float((j - np.arange(len(t))).max() / window_s)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
