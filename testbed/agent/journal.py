"""Append-only line files that survive a kill: the node's outbox, the controller's decision log
and intent journal (appended at once and fsync'ed in batches by :class:`GroupCommit`).

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
    """The controller's intent journal and decision log, written in order and fsync'ed in
    batches.

    :meth:`write` appends a line at once, on the calling thread (one ``write`` call, no buffer
    of Python's in between): from then on a controller process killed at any point leaves it in
    the file. A writer thread fsyncs the files in batches, one fsync per file per batch, so
    the threads that handle MQTT never wait for the disk. What may go out once the line is in
    the file (a job, :meth:`when_written`) goes out at once; what promises durability (the
    operator's "accepted", :meth:`after`) waits for the fsync. A job may thus reach its node
    before the fsync, as a Raft leader replicates an entry while it writes it: only a crash of
    the whole machine in those milliseconds loses the line, and then the operator was never told
    "accepted" and the restarted controller cancels the job it does not know
    (:meth:`~testbed.agent.jobs.JobTracker._node_status`).

    An append that fails (a full disk) is cut back and left to the writer thread, with every
    line after it (the order is kept); the writer retries with back-off, as it does a failed
    fsync, and the actions behind those lines wait.
    """

    def __init__(self, name: str = "group-commit"):
        self._log = logging.getLogger(__name__)
        self._queue: "queue.Queue" = queue.Queue()
        self._lock = threading.Lock()          # appends (and the backlog) in one order
        self._backlog = 0                      # lines whose append failed, queued for the writer
        self._idle = threading.Condition()
        self._queued = self._done = 0          # items queued / items handled (for flush)
        self.write_errors = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def write(self, f, line: str) -> None:
        """Append ``line`` (no newline) to the file ``f`` (opened for appending) now; fsync'ed soon."""
        data = (line + "\n").encode()
        with self._lock:
            if not self._backlog and self._append(f, data):
                self._put((f, None))            # to be fsync'ed
            else:
                self._backlog += 1
                self._put((f, data))            # to be appended by the writer, then fsync'ed

    def when_written(self, action) -> None:
        """Run ``action()`` once every line written so far is in its file: now, on this thread,
        unless appends are failing (then after the writer has appended and fsync'ed them)."""
        with self._lock:
            if self._backlog:
                self._put((None, action))
                return
        action()

    def after(self, action) -> None:
        """Run ``action()`` on the writer thread once everything written before it is fsync'ed."""
        self._put((None, action))

    def _put(self, item) -> None:
        with self._idle:
            self._queued += 1
        self._queue.put(item)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything queued so far is fsync'ed and its actions have run."""
        with self._idle:
            target = self._queued
            return self._idle.wait_for(lambda: self._done >= target, timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fsync what is written, run the actions, end the thread."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _append(self, f, data: bytes) -> bool:
        """One ``write`` of ``data`` to ``f``; False (nothing left behind) if it failed."""
        try:
            fd = f.fileno()
        except ValueError:                  # closed under us: nothing can be written to it any more
            self._log.error("%s: closed; a line was not written", f.name)
            return True
        try:
            n = os.write(fd, data)
            if n == len(data):
                return True
            os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_END) - n)    # a partial line: cut back
            raise OSError(f"only {n} of {len(data)} bytes written")
        except OSError as e:
            self.write_errors += 1
            self._log.error("cannot append to %s (%s); retrying", f.name, e)
            return False

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
            delay = 0.2
            while batch and not self._commit(batch):
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

    def _commit(self, batch: list) -> bool:
        """Append the batch's lines that the writers could not (in order), then fsync every file
        of the batch: all are written before any is fsync'ed, so the first fsync commits the file
        system's journal for all of them and the others find little left to do. False if an
        append or an fsync failed (the batch is tried again; what was appended is not again)."""
        files: dict = {}
        with self._lock:
            for i, (f, data) in enumerate(batch):
                if f is None:
                    continue
                files[f] = None
                if data is not None:
                    if not self._append(f, data):
                        return False
                    batch[i] = (f, None)
                    self._backlog -= 1
        for f in files:
            try:
                fd = f.fileno()
            except ValueError:         # closed since it was written (closing flushed it)
                continue
            try:
                os.fsync(fd)
            except OSError as e:
                self.write_errors += 1
                self._log.error("cannot fsync %s (%s); retrying", f.name, e)
                return False
        return True
