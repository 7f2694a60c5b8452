"""The controller's QoS store: every QoS report as a row of ``qos.csv``, acknowledged to its node
only once it is on disk. The counterpart of the node's :mod:`~testbed.agent.outbox`: together they
make sure that no report is lost and none is counted twice.

* :meth:`QosStore.put` queues a row with the (node, report id) pairs it stands for; a writer
  thread appends what is queued in batches (one fsync each), then acknowledges those reports.
* Acknowledgements are coalesced per node: a node gets at most one ack every ``ack_every_s``
  (0.5 s), in a slot of its own, naming every report of it written since; the nodes' slots are
  spread over the interval. A node sending 5 reports a second gets 2 acks instead of 5: fewer
  messages for the controller to publish, the broker to pass on and the nodes to read. The node
  keeps a report until its ack and re-sends it only after 5 s, so the wait costs nothing but
  that half second.
* Report ids are de-duplicated, also across restarts: on start every report id already in
  ``qos.csv`` (and the peer report of each joined row) counts as seen and written, so a report
  re-sent after a lost acknowledgement is acknowledged again but never written twice.
* An I/O error (e.g. a full disk) is retried with back-off: the writer thread never dies, and the
  reports stay unacknowledged (the nodes keep and re-send them) until they are written.
"""
from __future__ import annotations

import dataclasses
import heapq
import json
import logging
import math
import queue
import threading
import time
import zlib
from pathlib import Path
from typing import Callable

from ..core.runlog import CsvLog, read_csv_rows
from . import messages as M

log = logging.getLogger(__name__)

QOS_FIELDS = ["report_id", "node_id", "job_id", "intent_id", "link_id", "seq", "image", "model", "cbr",
              "snr_tx_db", "snr_est_db", "psnr_db", "latency_ms", "frames_sent", "frames_decoded", "encode_ms",
              "decode_ms", "decision", "part", "peer_id", "peer_report_id", "psnr_target_db", "met", "received_at"]


_ACK_SCHEMA = M.schema_name(M.Ack)


def ack_payload(report_ids: list[str]) -> bytes:
    """The encoded :class:`~testbed.agent.messages.Ack` of reports already validated on the
    way in (their ids): the same bytes as ``M.encode(M.Ack(ids))`` without validating them again."""
    return json.dumps({"schema": _ACK_SCHEMA, "ids": report_ids}, separators=(",", ":")).encode()


_FROM_REPORT = [k for k in QOS_FIELDS if k in {f.name for f in dataclasses.fields(M.QosReport)}]


def qos_row(r: M.QosReport, psnr_target_db: float | None) -> dict:
    """The qos.csv row of a report, with the link's PSNR target and whether it was met."""
    row = {k: getattr(r, k) for k in _FROM_REPORT}
    row.update(psnr_target_db=psnr_target_db, met=None if psnr_target_db is None else
               int(r.psnr_db is not None and r.psnr_db >= psnr_target_db))
    return row


def join_halves(tx: M.QosReport | None, rx: M.QosReport | None, link_id: str, rx_node: str) -> M.QosReport:
    """One report for an image of a link split over two nodes, from its transmitter's and its
    receiver's halves (latency = rx done - tx sent); a lone half is an image lost on the air
    (tx) or one whose tx half never came (rx)."""
    first = tx or rx
    return M.QosReport(
        report_id=first.report_id, node_id=rx_node, job_id=first.job_id, intent_id=first.intent_id,
        link_id=link_id, seq=first.seq, image=first.image, model=first.model, model_sha256=first.model_sha256,
        cbr=tx.cbr if tx else 0.0, snr_tx_db=first.snr_tx_db, snr_est_db=rx.snr_est_db if rx else None,
        psnr_db=rx.psnr_db if rx else None,
        latency_ms=(rx.t_done - tx.t_sent) * 1e3 if tx and rx and tx.t_sent and rx.t_done else None,
        frames_sent=tx.frames_sent if tx else rx.frames_sent, frames_decoded=rx.frames_decoded if rx else 0,
        encode_ms=tx.encode_ms if tx else None, decode_ms=rx.decode_ms if rx else None,
        decision=tx.decision if tx else "", part="tx+rx" if tx and rx else (first.part + " only"))


class QosStore:
    BATCH = 1000             # rows per write at most
    ACK_TICK_S = 0.05        # the nodes' ack slots are this far apart

    def __init__(self, path: str | Path, ack: Callable[[list[tuple[str, list[str]]]], object],
                 ack_every_s: float = 0.5):
        self.path = Path(path)
        self.ack = ack                  # ack([(node, report ids), ...]): tell nodes these are safe
        self.ack_every_s = ack_every_s  # at most one ack per node this often (0: after every write)
        self.seen: set[str] = set()     # report ids received (written, queued or waiting for their other half)
        self.link_counts: dict[str, tuple[int, int]] = {}   # link id -> (rows, rows that met the target)
        if self.path.exists():
            rows = read_csv_rows(self.path)
            self.seen = {r["report_id"] for r in rows} | {r.get("peer_report_id") for r in rows
                                                            if r.get("peer_report_id")}
            log.info("controller: %d QoS reports already in %s", len(self.seen), self.path)
            for r in rows:     # images and targets met per link, for links a restarted controller resumes
                n, met = self.link_counts.get(r.get("link_id", ""), (0, 0))
                self.link_counts[r.get("link_id", "")] = (n + 1, met + (r.get("met") in ("1", 1)))
        self.log = CsvLog(self.path, QOS_FIELDS, resume=True)
        self.committed: set[str] = set(self.seen)       # report ids on disk
        self.write_errors = 0
        self.queue: "queue.Queue[tuple | None]" = queue.Queue()
        self.lock = threading.Lock()
        self.writer: threading.Thread | None = None

    def duplicate(self, node_id: str, report_id: str) -> bool:
        """True if the report was received before (re-sent after a lost ack): acknowledged again
        if it is on disk, else its ack follows the pending write."""
        if report_id not in self.seen:
            return False
        with self.lock:
            written = report_id in self.committed
        if written:
            self.ack([(node_id, [report_id])])
        return True

    def put(self, row: dict, acks: list[tuple[str, str]]) -> None:
        """Queue ``row`` for qos.csv; the reports ``acks`` ((node, report id) pairs) are
        acknowledged once it is written."""
        row["received_at"] = f"{time.time():.3f}"
        self.queue.put((row, acks))

    def start(self) -> "QosStore":
        self.writer = threading.Thread(target=self._commit, name="controller-qos-writer", daemon=True)
        self.writer.start()
        return self

    def stop(self) -> None:
        """The writer writes and acknowledges what was put before this, then ends; nothing put
        after this is written."""
        self.queue.put(None)

    def join(self, timeout_s: float = 30.0) -> None:
        if self.writer is not None:
            self.writer.join(timeout_s)

    def close(self) -> None:
        self.log.close()

    def _ack_due(self, node: str, now: float) -> float:
        """When ``node`` may next be acknowledged: its own slot in every ``ack_every_s``, on a
        grid of ``ACK_TICK_S`` (a node's slot comes from its id, so the nodes' acks are spread
        over the interval instead of all going out at once, and at most one hand-over of acks
        happens per tick)."""
        every = self.ack_every_s
        if every <= 0:
            return now
        slots = max(1, round(every / self.ACK_TICK_S))
        phase = (zlib.crc32(node.encode()) % slots) * every / slots
        return phase + math.ceil((now - phase) / every) * every

    def _commit(self) -> None:
        """Writer thread: append reports to qos.csv in batches (one fsync each), then acknowledge
        them, so that a report is acknowledged only once it is on disk: each node in its own
        slot of every ``ack_every_s`` (:meth:`_ack_due`), with every report of it written since;
        all that is owed at once when the writer stops."""
        owed: dict[str, list[str]] = {}        # node -> report ids written, not yet acknowledged
        due: list[tuple[float, str]] = []      # (when, node): a heap, one entry per node in owed
        while True:
            try:
                item = self.queue.get(timeout=max(0.0, due[0][0] - time.monotonic()) if due else None)
            except queue.Empty:                # nothing new: only acks are due
                item = ()
            batch = [item] if item else []
            while item is not None and len(batch) < self.BATCH:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    item = None
                    break
                batch.append(nxt)
            if batch and not self._append(batch, stopping=item is None):
                batch = []             # not on disk: not acknowledged (the nodes keep and re-send them)
            now = time.monotonic()
            if batch:
                with self.lock:
                    self.committed.update(rid for _, acks in batch for _, rid in acks)
                for _, acks in batch:
                    for node, rid in acks:
                        ids = owed.get(node)
                        if ids is None:
                            owed[node] = ids = []
                            heapq.heappush(due, (self._ack_due(node, now), node))
                        ids.append(rid)
            out = []
            while due and (due[0][0] <= now or item is None):
                node = heapq.heappop(due)[1]
                out.append((node, owed.pop(node)))
            if out:
                self.ack(out)          # one hand-over for all of them
            if item is None:
                return

    def _append(self, batch, stopping: bool) -> bool:
        """Write a batch to qos.csv; on an I/O error (e.g. a full disk) retry with back-off, so the
        writer thread never dies and nothing acknowledged is lost. False: not written."""
        delay = 0.5
        while True:
            try:
                self.log.append_many([row for row, _ in batch])
                return True
            except OSError as e:
                self.write_errors += 1
                log.error("controller: cannot append %d QoS rows to %s (%s)%s", len(batch), self.log.path, e,
                          "; stopping, the reports stay unacknowledged" if stopping else
                          f"; retrying in {delay:g} s (the reports stay unacknowledged until then)")
                if stopping:
                    return False
                time.sleep(delay)
                delay = min(2 * delay, 30.0)
            except Exception:        # a bug, not the disk: keep the writer alive, say so loudly
                self.write_errors += 1
                log.exception("controller: QoS batch of %d rows not written", len(batch))
                return False
