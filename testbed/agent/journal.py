"""Append-only line files that survive a kill: the node's outbox, the controller's decision log
and intent journal (written in batches by :class:`GroupCommit`).

Lines are written whole, flushed and fsync'ed. A torn last line (a kill mid-write) is skipped
when the file is read and cut off before it is appended to, so the next line never gets glued to
the fragment (and lost with it).
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Iterable

from ..core.runlog import _truncate_torn_tail


def read_lines(path: Path) -> list[str]:
    """The complete, non-empty lines of ``path`` (none if it does not exist)."""
    if not path.exists():
        return []
    data = path.read_text()
    lines = data.split("\n")
    if not data.endswith("\n"):     # torn tail
        lines = lines[:-1]
    return [x for x in lines if x]


def open_append(path: Path):
    """``path`` opened for appending, a torn last line cut off first."""
    if path.exists():
        _truncate_torn_tail(path)
    return open(path, "a")


def append_lines(f, lines: Iterable[str]) -> None:
    """Append whole lines with one write, one flush and one fsync."""
    f.write("".join(line + "\n" for line in lines))
    f.flush()
    os.fsync(f.fileno())


def fsync_dir(folder: Path) -> None:
    """Make renames in ``folder`` durable (where the platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


class GroupCommit:
    """One writer thread for several append-only line files (the controller's intent journal
    and decision log): lines queued from any thread are written and fsync'ed in batches, one
    fsync per file per batch, and an action queued with :meth:`after` (send a job, answer
    "accepted") runs once every line queued before it is on disk. So the threads that handle
    MQTT never wait for the disk, and what goes out is never ahead of what a restart finds.

    An I/O error (a full disk) is retried with back-off; the batch's lines are cut back first, so
    a retry never leaves a torn line, and its actions wait until the lines are written.
    """

    def __init__(self, name: str = "group-commit"):
        self._log = logging.getLogger(__name__)
        self._queue: "queue.Queue" = queue.Queue()
        self._idle = threading.Condition()
        self._queued = self._done = 0          # items queued / items handled (for flush)
        self.write_errors = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def write(self, f, line: str) -> None:
        """Append ``line`` (no newline) to the open file ``f``, durably, soon."""
        self._put((f, line))

    def after(self, action) -> None:
        """Run ``action()`` on the writer thread once everything queued before it is on disk."""
        self._put((None, action))

    def _put(self, item) -> None:
        with self._idle:
            self._queued += 1
        self._queue.put(item)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything queued so far is written and its actions have run."""
        with self._idle:
            target = self._queued
            return self._idle.wait_for(lambda: self._done >= target, timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, run its actions, end the thread."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch, last = [], False
            while item is not None:
                batch.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            else:
                last = True
            delay, written = 0.2, set()        # files whose lines of this batch are on disk
            while batch and not self._commit([x for x in batch if x[0] is not None], written):
                if last:
                    break
                time.sleep(delay)
                delay = min(2 * delay, 10.0)
            else:
                for f, action in batch:
                    if f is None:
                        try:
                            action()
                        except Exception:
                            self._log.exception("action after commit failed")
            with self._idle:
                self._done += len(batch)
                self._idle.notify_all()
            if last:
                return

    def _commit(self, lines, written: set) -> bool:
        """Append the batch's lines, every file written before any is fsync'ed: the first fsync
        then commits the file system's journal for all of them and the others find little left
        to do (two files fsync'ed one after the other took two commits, and under load the jobs
        that wait for them waited twice as long)."""
        by_file: dict = {}
        for f, line in lines:
            if f not in written:
                by_file.setdefault(f, []).append(line)
        starts: dict = {}
        try:
            for f, group in by_file.items():
                try:
                    f.flush()
                    start = f.tell()
                except ValueError:         # closed under us: nothing can be written to it any more
                    self._log.error("%s: closed; %d line(s) not written", f.name, len(group))
                    written.add(f)
                    continue
                starts[f] = start
                f.write("".join(line + "\n" for line in group))
                f.flush()
            for f in starts:
                try:
                    fd = f.fileno()
                except ValueError:         # closed since it was written (closing flushed it)
                    continue
                os.fsync(fd)
        except OSError as e:
            self.write_errors += 1
            self._log.error("cannot append %d line(s) to %s (%s); retrying", sum(map(len, by_file.values())),
                            ", ".join(f.name for f in by_file), e)
            for f, start in starts.items():    # no torn line before the retry
                try:
                    f.truncate(start)
                    f.seek(start)
                except OSError:
                    pass
            return False
        written.update(starts)
        return True
