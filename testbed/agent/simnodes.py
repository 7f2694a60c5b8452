"""Simulated edge nodes for the control-plane benchmark (:mod:`testbed.agent.bench`): many nodes
in one process, each its own MQTT 3.1.1 connection (its own user name under the broker's ACL,
its own last will; :mod:`testbed.agent.simmqtt`, a small client that costs the machine a
fraction of paho's CPU), all driven by one selector loop: no thread per node. The benchmark runs
several such processes (:func:`worker_main`).

A simulated node speaks the protocol of :mod:`testbed.agent.node` with the message classes of
:mod:`testbed.agent.messages`: a retained status with the models it holds (last will: offline);
jobs accepted and run (job states ``accepted``, ``running``, ``done``; ``switched`` confirms an
update, ``cancelled`` a cancel, a re-sent assignment is answered with the job's state); one QoS
report per image (``max_images`` x ``repeat`` of the job); every report and job state kept until
the controller acknowledges it and re-sent after a reconnect and every ``resend_s`` (in memory:
no disk, no codec, no radio). A job's reports are one validated :func:`~messages.encode` of a
:class:`~messages.QosReport` with ``seq``, ``report_id``, ``image`` and ``ts`` set per image, so
that the harness spends little CPU beside the controller; the controller validates every one.

The first letter of an intent id picks how its job reports (``phases``): ``r`` (rounds) at
``report_hz``, ``f`` (flood) held until the ``go`` command and then at ``flood_hz``, ``p``
(probe) at once.
"""
from __future__ import annotations

import dataclasses
import gc
import heapq
import json
import logging
import os
import random
import selectors
import time

from . import messages as M
from . import topics as T
from .simmqtt import SimClient

log = logging.getLogger(__name__)
R, W = selectors.EVENT_READ, selectors.EVENT_WRITE


class SimNode:
    def __init__(self, w: "Worker", node_id: str, password: str):
        self.w, self.id = w, node_id
        c = SimClient(f"sim-{node_id}", node_id, password, keepalive=20,
                      will=(T.node(node_id, "status"), M.encode(M.NodeStatus(node_id, False)), 1, True))
        c.on_connect, c.on_close, c.on_message = self._on_connect, self._on_disconnect, self._on_message
        self.c = c
        self.sock = None
        self.wants_write = False
        self.state = "new"                      # new | connecting | up | down
        self.retry_at = 0.0
        self.pending: dict[str, list] = {}      # outbox: id -> [sub-topic, payload, first sent, last sent, is report]
        self.jobs: dict[str, dict] = {}         # job id -> what it needs to report
        self.final: dict[str, tuple[str, int]] = {}     # job id -> (final state, images done)
        self.events = 0

    # ---- connection --------------------------------------------------------------------------
    def set_state(self, state: str, retry_s: float = 0.0) -> None:
        self.w.n_state[self.state] -= 1
        self.w.n_state[state] += 1
        self.state, self.retry_at = state, time.monotonic() + retry_s

    def connect(self) -> None:
        self.set_state("connecting")
        self.t_connect = time.perf_counter()
        try:
            self.w.sock_open(self, self.c.connect(self.w.host, self.w.port))
        except OSError as e:
            self.w.count("connect_errors")
            log.debug("%s: connect failed: %s", self.id, e)
            self.set_state("down", 0.5)

    def _on_connect(self, return_code: int) -> None:
        if return_code:
            self.w.count("refused")
            log.error("%s: broker refused the connection (CONNACK return code %d)", self.id, return_code)
            self.c.close()
            self.set_state("down", 1.0)
            return
        if self.state == "connecting":
            self.w.rec["connect_s"].append(time.perf_counter() - self.t_connect)
        self.set_state("up")
        self.c.subscribe([(T.to(self.id, "job"), 1), (T.to(self.id, "ack"), 1)])
        self.c.publish(T.node(self.id, "status"), M.encode(M.NodeStatus(
            self.id, True, models=self.w.models, model_sha256=self.w.shas, jobs=sorted(self.jobs))), qos=1, retain=True)
        self.resend(0.0)

    def _on_disconnect(self) -> None:
        self.w.sock_close(self)
        if self.state == "up" and not self.w.stopping:
            self.w.count("disconnects")
            log.warning("%s: disconnected; reconnecting", self.id)
        if not self.w.stopping and self.state != "down":
            self.set_state("down", 0.5)

    # ---- outgoing, kept until acknowledged ----------------------------------------------------
    def send(self, msg_id: str, what: str, payload: bytes, is_report: bool) -> None:
        now = time.perf_counter()
        self.pending[msg_id] = [what, payload, now, now, is_report]
        if self.state == "up":
            self.c.publish(T.node(self.id, what), payload, qos=T.publish_qos(what))
            self.w.touched.add(self)

    def resend(self, older_than_s: float) -> None:
        now = time.perf_counter()
        for e in self.pending.values():
            if now - e[3] >= older_than_s:
                e[3] = now
                self.w.count("resent")
                self.c.publish(T.node(self.id, e[0]), e[1], qos=T.publish_qos(e[0]))

    def job_state(self, job_id: str, state: str, images_done: int = 0, error: str = "", decision: str = "") -> None:
        if state in M.FINAL_STATES and job_id not in self.final:
            self.final[job_id] = (state, images_done)
        self.events += 1
        ev = M.JobState(event_id=M.event_id(self.id, job_id, state, self.events), node_id=self.id, job_id=job_id,
                        state=state, images_done=images_done, error=error, decision=decision)
        self.send(ev.event_id, "job_state", M.encode(ev), False)

    # ---- incoming ------------------------------------------------------------------------------
    def _on_message(self, topic: str, payload: bytes) -> None:
        t = time.perf_counter()
        if not payload:
            return
        try:
            if topic.endswith("/ack"):
                self._on_ack(M.decode(payload, topic, M.Ack), t)
            else:
                self._on_job(M.decode(payload, topic, (M.Job, M.JobUpdate, M.JobCancel)), t)
        except M.MessageError as e:
            self.w.count("rejected")
            log.warning("%s: rejected: %s", self.id, e)

    def _on_ack(self, ack: M.Ack, t: float) -> None:
        for i in ack.ids:
            e = self.pending.pop(i, None)
            if e is not None and e[4]:
                self.w.acked(i, t, t - e[2])

    def _on_job(self, msg, t: float) -> None:
        if isinstance(msg, M.Job):
            if msg.job_id in self.final or msg.job_id in self.jobs:      # re-sent: say where it stands
                self.job_state(msg.job_id, *self.final.get(msg.job_id, ("running", 0)), error="(re-sent assignment)")
                return
            self.w.assigned(msg.intent_id, t)
            self.jobs[msg.job_id] = j = {"job": msg, "seq": 0, "n": max(1, (msg.max_images or 1) * msg.repeat),
                                         "tpl": None}
            self.job_state(msg.job_id, "accepted")
            self.job_state(msg.job_id, "running")
            self.w.start_reports(self, j)
        elif isinstance(msg, M.JobUpdate):
            j = self.jobs.get(msg.job_id)
            if j is None:              # finished (or never seen: failed)
                self.job_state(msg.job_id, *self.final.get(msg.job_id, ("failed", 0)), error="(already finished)",
                               decision=msg.decision)
                return
            cur = j["job"]
            if M.decision_number(msg.decision) > M.decision_number(cur.decision):
                j["job"] = dataclasses.replace(cur, model=msg.model, model_sha256=msg.model_sha256, cbr=msg.cbr,
                                               snr_db=msg.snr_db, decision=msg.decision)
                j["tpl"] = None
            self.job_state(msg.job_id, "switched", decision=msg.decision)
        elif isinstance(msg, M.JobCancel):
            if msg.job_id in self.final:
                self.job_state(msg.job_id, *self.final[msg.job_id], error="(already finished)")
                return
            j = self.jobs.pop(msg.job_id, None)
            self.job_state(msg.job_id, "cancelled", j["seq"] if j else 0, error=msg.reason)

    def report(self, j: dict) -> bool:
        """The job's next QoS report; False once the job is done."""
        job: M.Job = j["job"]
        if self.jobs.get(job.job_id) is not j:          # cancelled
            return False
        seq = j["seq"]
        if j["tpl"] is None:                            # one validated encode per job (and per update)
            j["tpl"] = json.loads(M.encode(M.QosReport(
                report_id=M.report_id(self.id, job.job_id, seq), node_id=self.id, job_id=job.job_id,
                intent_id=job.intent_id, link_id=job.link_id, seq=seq, image=f"synthetic{seq}.png", model=job.model,
                model_sha256=job.model_sha256, cbr=job.cbr, snr_tx_db=job.snr_db, snr_est_db=job.snr_db, psnr_db=30.0,
                latency_ms=50.0, frames_sent=1, frames_decoded=1, decision=job.decision)))
        d = j["tpl"]
        rid = M.report_id(self.id, job.job_id, seq)
        d.update(report_id=rid, seq=seq, image=f"synthetic{seq}.png", ts=time.time())
        self.send(rid, "qos", json.dumps(d, separators=(",", ":")).encode(), True)
        self.w.sent_report(rid)
        j["seq"] = seq = seq + 1
        if seq >= j["n"]:
            del self.jobs[job.job_id]
            self.job_state(job.job_id, "done", seq)
            return False
        return True


class Worker:
    """One process's simulated nodes and their selector loop; commands and results go over
    ``conn`` (a multiprocessing connection)."""

    MAX_CONNECTING = 64          # CONNECTs waiting for their CONNACK at a time
    STATS_EVERY_S = 0.1

    def __init__(self, conn, host: str, port: int, nodes: list, models: list, shas: list, phases: dict,
                 resend_s: float = 5.0):
        self.conn, self.host, self.port = conn, host, port
        self.models, self.shas, self.phases, self.resend_s = models, shas, phases, resend_s
        self.sel = selectors.DefaultSelector()
        self.sel.register(conn.fileno(), R, None)
        self.nodes = [SimNode(self, nid, pw) for nid, pw in nodes]
        self.stopping = False
        self.counts = {k: 0 for k in ("sent", "acked", "resent", "disconnects", "connect_errors", "refused",
                                      "rejected", "errors")}
        self.n_state = {"new": len(self.nodes), "connecting": 0, "up": 0, "down": 0}
        self.to_connect = self.nodes[::-1]     # popped from the end: in order
        self.new_assigned: list = []
        self.rec = {k: [] for k in ("sent_ids", "sent_t", "acked_ids", "ack_t", "ack_lat", "connect_s")}
        self.heap: list = []
        self.held: list = []
        self.n = 0
        self.touched: set = set()

    # ---- bookkeeping -----------------------------------------------------------------------------
    def count(self, k: str, n: int = 1) -> None:
        self.counts[k] += n

    def assigned(self, intent_id: str, t: float) -> None:
        self.new_assigned.append((intent_id, t))

    def sent_report(self, rid: str) -> None:
        self.counts["sent"] += 1
        self.rec["sent_ids"].append(rid)
        self.rec["sent_t"].append(time.perf_counter())

    def acked(self, rid: str, t: float, latency_s: float) -> None:
        self.counts["acked"] += 1
        self.rec["acked_ids"].append(rid)
        self.rec["ack_t"].append(t)
        self.rec["ack_lat"].append(latency_s)

    def start_reports(self, node: SimNode, j: dict) -> None:
        kind = self.phases.get(j["job"].intent_id[:1], {"hz": 0.0})
        if kind.get("hold"):
            self.held.append((node, j, kind["hz"]))
            return
        self._schedule(time.perf_counter(), node, j, kind["hz"])

    def _schedule(self, t: float, node: SimNode, j: dict, hz: float) -> None:
        self.n += 1
        heapq.heappush(self.heap, (t, self.n, node, j, hz))

    # ---- sockets -----------------------------------------------------------------------------------
    def sock_open(self, node: SimNode, sock) -> None:
        node.sock, node.wants_write = sock, False
        try:
            self.sel.register(sock, R, node)
        except KeyError:                        # a closed socket's number, reused
            self.sel.modify(sock, R, node)
        self.touched.add(node)

    def sock_close(self, node: SimNode) -> None:
        if node.sock is not None:
            try:
                self.sel.unregister(node.sock)
            except (KeyError, ValueError):
                pass
        node.sock = None

    def _flush(self) -> None:
        """Write what callbacks queued; ask the selector for writability where the socket is full."""
        for node in self.touched:
            if node.sock is None:
                continue
            if node.c.want_write():
                node.c.write()
            want = node.sock is not None and node.c.want_write()
            if want != node.wants_write and node.sock is not None:
                node.wants_write = want
                self.sel.modify(node.sock, R | W if want else R, node)
        self.touched.clear()

    # ---- the loop --------------------------------------------------------------------------------
    def run(self) -> None:
        last_misc = last_stats = 0.0
        while True:
            while self.to_connect and self.n_state["connecting"] < self.MAX_CONNECTING and not self.stopping:
                node = self.to_connect.pop()
                node.connect()
                self.touched.add(node)
            timeout = 0.05
            if self.heap:
                timeout = min(timeout, max(0.0, self.heap[0][0] - time.perf_counter()))
            for key, mask in self.sel.select(timeout):
                node = key.data
                if node is None:
                    if not self._command(self.conn.recv()):
                        return
                    continue
                try:
                    if mask & R:
                        node.c.read()
                    if mask & W and node.sock is not None:
                        node.c.write()
                except Exception:
                    self.counts["errors"] += 1
                    log.exception("%s: network loop failed", node.id)
                self.touched.add(node)
            t = time.perf_counter()
            while self.heap and self.heap[0][0] <= t:
                tdue, _, node, j, hz = heapq.heappop(self.heap)
                if node.report(j):
                    self._schedule(max(tdue + 1.0 / hz, t - 1.0) if hz > 0 else t, node, j, hz)
                self.touched.add(node)
            self._flush()
            now = time.monotonic()
            if now - last_misc >= 1.0:
                last_misc = now
                self._misc(now)
            if now - last_stats >= self.STATS_EVERY_S:
                last_stats = now
                self._send_stats()

    def _misc(self, now: float) -> None:
        """Keep-alives, re-sends of what is unacknowledged, reconnects."""
        for node in self.nodes:
            if node.state == "up":
                node.c.tick(now)
                if node.pending:
                    node.resend(self.resend_s)
                    self.touched.add(node)
            elif node.state == "down" and now >= node.retry_at and not self.stopping and \
                    node not in self.to_connect:
                self.to_connect.append(node)
        self._flush()

    def _pending_states(self) -> int:
        return sum(1 for n in self.nodes for e in n.pending.values() if not e[4])

    def _send_stats(self) -> None:
        self.conn.send(("stats", {**self.counts, "up": self.n_state["up"], "assigned": self.new_assigned,
                                  "pending_states": self._pending_states(),
                                  "busy": sum(len(n.jobs) for n in self.nodes)}))
        self.new_assigned = []

    def _command(self, cmd) -> bool:
        what, arg = cmd
        if what == "go":                        # start the held jobs' reports, spread over one period
            t = time.perf_counter()
            for node, j, hz in self.held:
                self._schedule(t + random.random() / hz if hz > 0 else t, node, j, hz)
            self.held = []
        elif what == "phases":
            self.phases = arg
        elif what == "stop":
            self._stop(arg)
            return False
        return True

    def _stop(self, offline: bool) -> None:
        """Say offline (retained, as a node that stops does), disconnect, send the results."""
        self.stopping = True
        self._send_stats()
        for node in self.nodes:
            if node.state == "up":
                if offline:
                    node.c.publish(T.node(node.id, "status"), M.encode(M.NodeStatus(node.id, False)), qos=1,
                                   retain=True)
                node.c.disconnect()
                self.touched.add(node)
        self._flush()
        t_end = time.monotonic() + 3
        while time.monotonic() < t_end and any(n.sock is not None for n in self.nodes):
            for key, mask in self.sel.select(0.05):
                if key.data is not None and key.data.sock is not None:
                    try:
                        key.data.c.read()
                        key.data.c.write()
                    except Exception:
                        pass
        self.conn.send(("final", {**self.counts, **self.rec}))


def worker_main(conn, host: str, port: int, nodes: list, models: list, shas: list, phases: dict,
                resend_s: float = 5.0, nice: int = 0, log_level: int = logging.WARNING) -> None:
    """A worker process: its simulated nodes until ``stop`` (``nice``: yield the CPU to the SUT)."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s sim: %(message)s")
    if nice:
        os.nice(nice)
    try:
        w = Worker(conn, host, port, nodes, models, shas, phases, resend_s)
        gc.freeze()          # the nodes' clients leave the collector's view: shorter pauses
        conn.send(("ready", len(w.nodes)))
        w.run()
    except Exception as e:
        log.exception("simulated-node worker failed")
        conn.send(("failed", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()
