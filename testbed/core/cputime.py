"""CPU time of this process's threads, to see where a flowgraph's CPU goes (Linux ``/proc``).

GNU Radio's thread-per-block scheduler names each block's thread after the block (the kernel
keeps 15 characters: ``jscc_decoder37``, ``header_payload2``, ``sc_detector24``), so a thread's
CPU time is one block's. Python threads (the encoder's ``send`` runs in the caller's) and
onnxruntime's keep the process name. Where ``/proc`` is missing (not Linux) only the process
total is reported.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field

_TASKS = "/proc/self/task"
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_stat(text: str) -> tuple[str, float]:
    """(thread name, user + system CPU seconds) from a ``/proc/<pid>/task/<tid>/stat`` line.

    The name sits in parentheses and may itself hold spaces and ')', so it runs to the last ')'."""
    a, b = text.index("("), text.rindex(")")
    fields = text[b + 2:].split()
    # after the name: state(0) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime(11) stime(12)
    return text[a + 1:b], (int(fields[11]) + int(fields[12])) / _TICK


def threads() -> dict[int, tuple[str, float]]:
    """{thread id: (name, CPU seconds so far)} for every live thread of this process."""
    out = {}
    try:
        tids = os.listdir(_TASKS)
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"{_TASKS}/{tid}/stat") as f:
                out[int(tid)] = parse_stat(f.read())
        except (OSError, ValueError, IndexError):   # the thread ended meanwhile
            continue
    return out


@dataclass
class Snapshot:
    process_s: float = field(default_factory=time.process_time)
    by_tid: dict = field(default_factory=threads)


class Sampler:
    """The latest CPU time of every thread seen while sampling, so that threads that end before
    the measurement does (a flowgraph whose source finished) still count: call :meth:`sample`
    now and then while the work runs, then :meth:`snapshot` at the end."""

    def __init__(self):
        self.seen: dict[int, tuple[str, float]] = {}

    def sample(self) -> None:
        for tid, (name, s) in threads().items():
            prev = self.seen.get(tid)
            if prev is None or prev[0] != name or s >= prev[1]:
                self.seen[tid] = (name, s)

    def snapshot(self) -> Snapshot:
        self.sample()
        return Snapshot(by_tid=dict(self.seen))


def usage(before: Snapshot, after: Snapshot | None = None, top: int = 12) -> dict:
    """CPU used between two snapshots: ``cpu_s`` (the whole process, threads that ended
    included) and ``cpu_by_thread`` {name: seconds}, the ``top`` busiest names (threads of the
    same name added up) and ``(other)`` for the rest, busiest first; empty without ``/proc``."""
    after = after or Snapshot()
    per_name: Counter = Counter()
    for tid, (name, s) in after.by_tid.items():
        prev = before.by_tid.get(tid)
        # a thread id re-used by a new thread counts from zero
        base = prev[1] if prev is not None and prev[0] == name and prev[1] <= s else 0.0
        if s - base > 0:
            per_name[name] += s - base
    ranked = per_name.most_common()
    by_thread = {n: round(s, 3) for n, s in ranked[:top]}
    rest = sum(s for _, s in ranked[top:])
    if rest > 0:
        by_thread["(other)"] = round(rest, 3)
    return {"cpu_s": round(after.process_s - before.process_s, 3), "cpu_by_thread": by_thread}


def format_usage(u: dict, wall_s: float) -> str:
    """One log line: total CPU, cores used on average, the busiest threads."""
    cores = u["cpu_s"] / wall_s if wall_s > 0 else float("nan")
    parts = ", ".join(f"{n} {s:.2f}" for n, s in u["cpu_by_thread"].items())
    return f"CPU {u['cpu_s']:.2f} s over {wall_s:.2f} s ({cores:.2f} cores); by thread (s): {parts}"
