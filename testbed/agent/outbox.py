"""A node's durable outbox (QoS reports, job-state events): nothing is lost across a broker or
node restart.

Each message is appended (one fsync'ed JSON line: id, sub-topic, payload) to ``outbox.jsonl``
before it is published; acknowledged ids are appended to ``acked.txt``. On start the outbox reloads both, so the
reports still unacknowledged are re-sent after a restart; a torn last line (a kill mid-write)
is cut off on open, so the next message starts on a line of its own. When everything is
acknowledged, or the acknowledged entries far outnumber the pending ones, the files are rewritten
(atomically) to hold only the pending messages.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from ..core.runlog import write_bytes_atomic
from .journal import append_lines, fsync_dir, open_append, read_lines

log = logging.getLogger(__name__)


class Outbox:
    COMPACT_MIN = 256        # rewrite once this many acknowledged entries ...
    COMPACT_RATIO = 4        # ... outnumber the pending ones this many times

    def __init__(self, folder: str | Path):
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.reports_path = self.dir / "outbox.jsonl"
        self.acked_path = self.dir / "acked.txt"
        self.lock = threading.Lock()
        self.pending: dict[str, tuple[str, bytes, float]] = {}   # id -> (sub-topic, payload, last send time)
        acked = set(read_lines(self.acked_path))
        for line in read_lines(self.reports_path):
            try:
                e = json.loads(line)
                rid, what, payload = e["id"], e["what"], e["payload"].encode()
            except (ValueError, KeyError, TypeError, AttributeError):
                log.warning("%s: unreadable line skipped", self.reports_path)
                continue
            if rid not in acked:
                self.pending[rid] = (what, payload, 0.0)
        if self.pending:
            log.info("%s: %d unacknowledged message(s) from a previous run will be re-sent",
                     self.dir, len(self.pending))
        self.acked_lines = len(acked)
        self._reports = open_append(self.reports_path)
        self._acked = open_append(self.acked_path)

    @staticmethod
    def _entry(msg_id: str, what: str, payload: bytes) -> str:
        return json.dumps({"id": msg_id, "what": what, "payload": payload.decode()})

    def add(self, msg_id: str, what: str, payload: bytes) -> None:
        """Keep ``payload`` (to be published on the node's ``what`` sub-topic) until ``msg_id`` is acked."""
        with self.lock:
            append_lines(self._reports, [self._entry(msg_id, what, payload)])
            self.pending[msg_id] = (what, payload, time.monotonic())

    def ack(self, ids) -> int:
        n = 0
        with self.lock:
            done = [rid for rid in dict.fromkeys(ids) if self.pending.pop(rid, None) is not None]
            n = len(done)
            if n:                       # one write and one fsync per acknowledgement batch
                append_lines(self._acked, done)
                self.acked_lines += n
                if not self.pending or (self.acked_lines >= self.COMPACT_MIN and
                                        self.acked_lines > self.COMPACT_RATIO * len(self.pending)):
                    self._compact()
        return n

    def _compact(self) -> None:
        """Rewrite outbox.jsonl with the pending messages only, then empty acked.txt. A crash in
        between leaves acked.txt naming ids no longer in the outbox: harmless."""
        self._reports.close()
        self._acked.close()
        entries = "".join(self._entry(rid, what, payload) + "\n" for rid, (what, payload, _) in self.pending.items())
        write_bytes_atomic(self.reports_path, entries.encode())
        write_bytes_atomic(self.acked_path, b"")
        fsync_dir(self.dir)             # make the renames durable
        self.acked_lines = 0
        self._reports = open(self.reports_path, "a")
        self._acked = open(self.acked_path, "a")

    def due(self, older_than_s: float = 0.0) -> list[tuple[str, bytes]]:
        """(sub-topic, payload) of the messages last sent more than ``older_than_s`` ago, oldest
        first (marked as sent now)."""
        now = time.monotonic()
        out = []
        with self.lock:
            for rid, (what, payload, t) in self.pending.items():
                if now - t >= older_than_s:
                    out.append((what, payload))
                    self.pending[rid] = (what, payload, now)
        return out

    def __len__(self) -> int:
        return len(self.pending)

    def close(self) -> None:
        with self.lock:
            self._reports.close()
            self._acked.close()
