"""``testbed controller``: the agent controller (AgentNet's three functions).

* task and environment cognition: intents (task, priority, PSNR/latency targets, bandwidth
  budget) and the nodes' status and measured SNR;
* agent adaptation: :class:`~testbed.agent.policy.Policy` picks model and CBR per link from the
  model cards and the measured SNR, learning each link's content offset from its QoS reports;
* resource orchestration: assigns links to free nodes, re-plans (model/CBR/encoder SNR) when a
  target is missed or the SNR moves, and serves models to nodes that lack them.

Every decision is published on ``controller/decisions`` with its reason and inputs and appended
to ``decisions.jsonl``; every QoS report is acknowledged, de-duplicated and appended to
``qos.csv`` in the run folder (re-read on restart, so a re-sent report is never counted twice).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.runlog import CsvLog, _truncate_torn_tail, write_json_atomic
from . import messages as M
from . import topics as T
from .broker import CONTROLLER_USER, OPERATOR_USER
from .mqttlink import MqttLink
from .policy import Choice, LinkState, OperatingPoint, Policy, load_catalogue
from .transfer import announce, chunks, pack

log = logging.getLogger(__name__)

QOS_FIELDS = ["report_id", "node_id", "job_id", "intent_id", "link_id", "seq", "image", "model", "cbr",
              "snr_tx_db", "snr_est_db", "psnr_db", "latency_ms", "frames_sent", "frames_decoded", "encode_ms",
              "decode_ms", "decision", "part", "peer_id", "peer_report_id", "psnr_target_db", "met", "received_at"]


@dataclass
class LinkPlan:
    link_id: str
    intent: M.Intent
    node: str
    job_id: str
    op: OperatingPoint
    snr_plan: float
    decision: str                      # the decision whose operating point the link uses now
    state: LinkState = field(default_factory=LinkState)
    ops_by_decision: dict = field(default_factory=dict)
    reports: int = 0
    met: int = 0
    rx_node: str = ""                  # a link split over two nodes: the receiving node and its job
    rx_job: str = ""
    tx_status: str = "assigned"
    rx_status: str = "assigned"
    halves: dict = field(default_factory=dict)        # seq -> {"tx": report, "rx": report}
    pending_tx: dict = field(default_factory=dict)    # decision -> JobUpdate for the transmitter
    tx_hold: object = None                            # the transmitter's job, sent once the receiver runs
    rx_finished_at: float | None = None
    final_joined: bool = False
    sent_jobs: dict = field(default_factory=dict)     # node -> its Job, with the updates sent to it applied

    @property
    def status(self) -> str:
        """assigned, running, done, failed or cancelled, from the states of the link's end(s)."""
        ends = [self.tx_status] + ([self.rx_status] if self.rx_job else [])
        if "failed" in ends:
            return "failed"
        if all(e in M.FINAL_STATES for e in ends):
            return "cancelled" if "cancelled" in ends else "done"
        return "running" if "running" in ends else "assigned"

    def busy_nodes(self) -> list[str]:
        """Nodes whose end of this link has not finished."""
        out = [self.node] if self.tx_status not in M.FINAL_STATES else []
        if self.rx_job and self.rx_status not in M.FINAL_STATES:
            out.append(self.rx_node)
        return out


@dataclass
class ControllerOptions:
    broker: str
    out: str | None = None
    models_dir: str | None = None      # default: the shipped models/
    username: str = "controller"
    password: str | None = None
    ca_file: str | None = None
    assume_snr_db: float = 10.0        # a link's SNR before anything was measured
    margin_db: float = 0.5
    resend_s: float = 5.0              # re-send an assignment not yet accepted after this long
    status_every_s: float = 1.0
    summary_every_s: float = 5.0       # summary.json (all links) at most this often, and at exit
    drain_s: float = 3.0               # a receiver finishes this long after its last frame once the tx is done
    join_grace_s: float = 2.0          # then lone tx halves wait this long for their rx half before "lost"
    offline_grace_s: float = 30.0      # a node offline (last will) this long mid-job: its end of the link fails


class Controller:
    def __init__(self, opts: ControllerOptions):
        from ..core.runlog import default_run_dir
        from ..core.paths import models_dir

        self.opts = opts
        mdir = Path(opts.models_dir) if opts.models_dir else models_dir()
        from ..core.card import CARD_NAME

        self.model_dirs = {p.name: p for p in sorted(mdir.iterdir()) if (p / CARD_NAME).is_file()} \
            if mdir.is_dir() else {}
        self.policy = Policy(load_catalogue(self.model_dirs), margin_db=opts.margin_db)
        if not self.policy.catalogue:
            raise ValueError(f"{mdir}: no model with an evaluated card (testbed eval --record-in-card)")
        self.out = Path(opts.out) if opts.out else default_run_dir("controller")
        self.out.mkdir(parents=True, exist_ok=True)
        self.seen: set[str] = set()
        qos_path = self.out / "qos.csv"
        if qos_path.exists():
            from ..core.runlog import read_csv_rows

            rows = read_csv_rows(qos_path)
            self.seen = {r["report_id"] for r in rows} | {r.get("peer_report_id") for r in rows
                                                            if r.get("peer_report_id")}
            log.info("controller: %d QoS reports already in %s", len(self.seen), qos_path)
        self.qos_log = CsvLog(qos_path, QOS_FIELDS, resume=True)
        self.committed: set[str] = set(self.seen)
        self.write_errors = 0
        self.qos_q: "queue.Queue[tuple | None]" = queue.Queue()
        dec_path = self.out / "decisions.jsonl"
        last_decision = 0
        if dec_path.exists():
            _truncate_torn_tail(dec_path)        # a kill mid-write: the next decision must not be glued to it
            last_decision = _last_decision_number(dec_path)
        self.decisions_f = open(dec_path, "a")
        self.lock = threading.RLock()
        self.nodes: dict[str, M.NodeStatus] = {}
        self.intents: dict[str, dict] = {}
        self.links: dict[str, LinkPlan] = {}
        self.pending: dict[str, tuple[str, object, float]] = {}    # job id -> (node, message, last sent)
        self.job_index: dict[str, str] = {}                          # job id -> link id
        self.seen_events: set[str] = set()
        self.archives: dict[str, tuple[M.ModelAnnounce, bytes]] = {}
        self.counter = itertools.count(last_decision + 1)    # decision ids never repeat across restarts
        self.offline_since: dict[str, float] = {}                  # node -> when it went offline
        self.streaming: set[tuple[str, str]] = set()                # (node, sha256) model transfers in flight
        self.intent_ms: list[float] = []     # time to handle each intent (receipt to job published)
        self.dirty = True
        self.stopping = threading.Event()
        self.link = MqttLink("controller", opts.broker, username=opts.username, password=opts.password,
                             ca_file=opts.ca_file)
        # QoS reports arrive on a second connection (its own network thread), so that a flood of
        # telemetry never queues intents and job states behind it
        self.tlink = MqttLink("controller-telemetry", opts.broker, username=opts.username, password=opts.password,
                              ca_file=opts.ca_file)
        self.tlink.subscribe(T.node("+", "qos"), self._on_qos, expect=M.QosReport)
        self.link.subscribe(T.node("+", "status"), self._on_status, expect=M.NodeStatus)
        self.link.subscribe(T.node("+", "job_state"), self._on_job_state, expect=M.JobState)
        self.link.subscribe(T.node("+", "model_request"), self._on_model_request, expect=M.ModelRequest)
        self.link.subscribe(T.intents(), self._on_intent, expect=(M.Intent, M.StatusRequest))
        self.link.on_connect(self._on_connected)

    # ---- helpers -------------------------------------------------------------------------------
    def _reject(self, topic: str, why: str) -> None:
        self.link.rejected += 1     # (counted on the control connection)
        log.warning("controller: rejected message on %s: %s", topic, why)

    def _node_of(self, topic: str, claimed: str) -> str | None:
        parsed = T.parse_node_topic(topic)
        if parsed is None or parsed[0] != claimed:
            self._reject(topic, f"node_id {claimed!r} does not match the topic")
            return None
        # the broker's pattern ACL lets every account write under node/<its user name>: the
        # controller and operator accounts must not pass for nodes (broker init refuses such ids)
        if claimed in (CONTROLLER_USER, OPERATOR_USER) or not M.ID_RE.match(claimed):
            self._reject(topic, f"{claimed!r} is not a valid node id (reserved or malformed)")
            return None
        return claimed

    def _decide(self, intent_id: str, link_id: str, action: str, reason: str, model: str = "",
                cbr: float | None = None, **inputs) -> str:
        did = f"d{next(self.counter)}"
        d = M.Decision(decision_id=did, intent_id=intent_id, link_id=link_id, action=action, model=model, cbr=cbr,
                       reason=reason, inputs=inputs, ts=time.time())
        payload = M.encode(d)
        self.decisions_f.write(payload.decode() + "\n")
        self.decisions_f.flush()
        os.fsync(self.decisions_f.fileno())
        self.link.publish(T.decisions(), payload)
        log.info("decision %s %s %s: %s", did, action, link_id or intent_id, reason)
        self.dirty = True
        return did

    def _send(self, node: str, msg, key: str | None = None) -> None:
        """Publish to a node's job topic and re-send until the node confirms (a job state for a
        job, 'switched' for an update, a final state for a cancel): the broker keeps nothing for
        a node that is reconnecting."""
        with self.lock:
            self.pending[key or msg.job_id] = (node, msg, time.monotonic())
        self.link.publish(T.to(node, "job"), msg)

    # ---- handlers ------------------------------------------------------------------------------
    def _on_connected(self) -> None:
        for name in self.model_dirs:
            ann, _ = self._archive(name)
            self.link.publish(T.model(name), ann, retain=True)
        with self.lock:
            for node, msg, _ in list(self.pending.values()):
                self.link.publish(T.to(node, "job"), msg)

    def _archive(self, name: str):
        if name not in self.archives:
            from ..zoo import CARD_NAME, load_card

            d = self.model_dirs[name]
            data = pack(d)
            self.archives[name] = (announce(name, load_card(d / CARD_NAME), data), data)
        return self.archives[name]

    def _on_status(self, st: M.NodeStatus, topic, props) -> None:
        if self._node_of(topic, st.node_id) is None:
            return
        with self.lock:
            was = self.nodes.get(st.node_id)
            self.nodes[st.node_id] = st
            self.dirty = True
            if st.online:
                self.offline_since.pop(st.node_id, None)     # back within the grace period: carries on
            if st.online and (was is None or not was.online):
                log.info("controller: node %s online (%s, %s, models %s)", st.node_id, st.role, st.radio,
                         ", ".join(st.models))
                for node, msg, _ in list(self.pending.values()):   # messages it may have missed
                    if node == st.node_id:
                        self.link.publish(T.to(node, "job"), msg)
                for lp in self.links.values():     # its unfinished jobs (a restarted node re-runs them;
                    if st.node_id in lp.busy_nodes() and lp.tx_hold is None:   # reports are de-duplicated)
                        job = lp.sent_jobs.get(st.node_id)     # as it stands after the updates sent since
                        if job is not None and job.job_id not in st.jobs:
                            self.link.publish(T.to(st.node_id, "job"), job)
                self._serve_queue()
            elif not st.online and was is not None and was.online:
                busy = st.node_id in self._busy()
                log.warning("controller: node %s went offline%s", st.node_id,
                            f"; its job(s) fail unless it is back within {self.opts.offline_grace_s:g} s"
                            if busy else "")
                self.offline_since[st.node_id] = time.monotonic()

    def _on_job_state(self, js: M.JobState, topic, props) -> None:
        if self._node_of(topic, js.node_id) is None:
            return
        self.link.publish(T.to(js.node_id, "ack"), M.Ack([js.event_id]))   # idempotent: no disk needed
        with self.lock:
            if js.event_id in self.seen_events:      # re-sent after a lost ack
                return
            self.seen_events.add(js.event_id)
            p = self.pending.get(js.job_id)
            if p is not None and p[0] == js.node_id:
                del self.pending[js.job_id]          # the node has its assignment
            lp = self.links.get(self.job_index.get(js.job_id, ""))
            if lp is None:
                return
            is_rx = js.job_id == lp.rx_job
            if js.node_id != (lp.rx_node if is_rx else lp.node):
                self._reject(topic, f"job state for {js.job_id} from {js.node_id}, which does not run it")
                return
            if js.state == "switched":
                self.pending.pop(f"{js.job_id}#update:{js.decision}", None)
                upd = lp.pending_tx.pop(js.decision, None) if is_rx else None
                if upd is not None:                  # the receiver holds the new model: now the transmitter
                    self._send_job_update(lp, lp.node, upd)
            if is_rx and js.state == "running" and lp.tx_hold is not None:
                job, lp.tx_hold = lp.tx_hold, None
                self._send(lp.node, job)
            if js.state in M.FINAL_STATES:       # nothing more to tell this job (even if already given up on)
                self._drop_pending(js.job_id)
                lp.pending_tx.clear()            # updates held for the transmitter: moot once an end finished
            cur = lp.rx_status if is_rx else lp.tx_status
            if js.state in ("running",) + M.FINAL_STATES and cur not in M.FINAL_STATES:   # never out of a final state
                if is_rx:
                    lp.rx_status = js.state
                else:
                    lp.tx_status = js.state
                if js.state in M.FINAL_STATES:
                    self._end_finished(lp, is_rx, js.state, js.node_id, js.error)
            self._update_intent(lp.intent.intent_id)
            if lp.status in M.FINAL_STATES or js.state in M.FINAL_STATES:
                self._serve_queue()          # nodes are free again
            self.dirty = True

    def _drop_pending(self, job_id: str) -> None:
        """The job reached a final state: stop re-sending its assignment, updates and cancel."""
        for key in [k for k in self.pending if k == job_id or k.startswith((f"{job_id}#update:", f"{job_id}#cancel"))]:
            del self.pending[key]

    def _end_finished(self, lp: LinkPlan, is_rx: bool, state: str, node: str, error: str = "") -> None:
        """One end of a link reached a final state: tell the other end of a split link."""
        if state == "failed":
            log.error("controller: link %s failed on %s: %s", lp.link_id, node, error)
        if not lp.rx_job:
            return
        if not is_rx and lp.rx_status not in M.FINAL_STATES:
            if state == "done":     # the receiver drains what is still on the air, then finishes
                self._send(lp.rx_node, M.JobCancel(lp.rx_job, "transmitter finished", drain_s=self.opts.drain_s),
                           key=f"{lp.rx_job}#cancel")
            else:
                self._send(lp.rx_node, M.JobCancel(lp.rx_job, f"transmitter {state}"), key=f"{lp.rx_job}#cancel")
        if is_rx:
            if lp.tx_hold is not None:     # the transmitter never got its job: nothing to cancel there
                lp.tx_hold = None
                if lp.tx_status not in M.FINAL_STATES:
                    lp.tx_status = "cancelled"
                    log.info("controller: %s: transmitter job %s withdrawn before it was sent (receiver %s)",
                             lp.link_id, lp.job_id, state)
            elif lp.tx_status not in M.FINAL_STATES and state != "done":
                self._send(lp.node, M.JobCancel(lp.job_id, f"receiver {state}"), key=f"{lp.job_id}#cancel")
            lp.rx_finished_at = time.monotonic()    # lone tx halves become lost images after a grace period

    def _give_up_on(self, node: str, offline_s: float) -> None:
        """``node`` stayed offline past the grace period: its unfinished link ends fail, the peer
        of a split link is cancelled, the intents fail. Should it come back, it is told to cancel."""
        for lp in list(self.links.values()):
            if node not in lp.busy_nodes():
                continue
            reason = f"node {node} offline for {offline_s:.0f} s (grace {self.opts.offline_grace_s:g} s)"
            for is_rx in ([False] if lp.node == node else []) + ([True] if lp.rx_job and lp.rx_node == node else []):
                job_id = lp.rx_job if is_rx else lp.job_id
                if (lp.rx_status if is_rx else lp.tx_status) in M.FINAL_STATES:
                    continue
                if not is_rx and lp.tx_hold is not None:     # never sent: nothing to cancel on the node
                    lp.tx_hold = None
                    self._drop_pending(job_id)
                else:
                    self._drop_pending(job_id)
                    self._send(node, M.JobCancel(job_id, reason), key=f"{job_id}#cancel")   # delivered if it returns
                if is_rx:
                    lp.rx_status = "failed"
                else:
                    lp.tx_status = "failed"
                lp.pending_tx.clear()
                self._decide(lp.intent.intent_id, lp.link_id, "fail", f"{reason}: job {job_id} given up",
                             node=node, job_id=job_id)
                self._end_finished(lp, is_rx, "failed", node, reason)
            self._update_intent(lp.intent.intent_id)
        self.dirty = True
        self._serve_queue()

    def _update_intent(self, intent_id: str) -> None:
        it = self.intents.get(intent_id)
        if it is None or it["state"] != "running":
            return
        states = [self.links[lid].status for lid in it["links"]]
        if all(s in ("done", "failed", "cancelled") for s in states):
            it["state"] = "done" if all(s == "done" for s in states) else "failed"
            self.dirty = True

    def _on_intent(self, msg, topic, props) -> None:
        t0 = time.perf_counter()
        rt = getattr(props, "ResponseTopic", None) if props is not None else None
        corr = getattr(props, "CorrelationData", None) if props is not None else None
        if isinstance(msg, M.StatusRequest):
            reply = self.status()
        else:
            reply = self.submit(msg)
        if rt and rt.startswith(T.reply("")):
            self.link.publish(rt, reply, correlation=corr, expiry_s=60)
        elif rt:
            self._reject(topic, f"response topic {rt!r} is outside {T.reply('')}")
        if isinstance(msg, M.Intent):
            self.intent_ms.append((time.perf_counter() - t0) * 1e3)

    def submit(self, intent: M.Intent) -> M.IntentReply:
        """Plan an intent now if its nodes are free, else queue it (by priority, then arrival);
        refuse it if the online nodes could never carry it."""
        with self.lock:
            if intent.intent_id in self.intents:
                it = self.intents[intent.intent_id]
                return M.IntentReply(intent.intent_id, True, f"already accepted ({it['state']})", list(it["links"]))
            unknown = [m for m in intent.models if m not in self.model_dirs]
            if unknown:
                return self._refuse(intent, f"unknown model(s) {', '.join(unknown)}; this controller has "
                                            f"{', '.join(self.model_dirs)}")
            if not [o for o in self.policy.catalogue if not intent.models or o.model in intent.models]:
                return self._refuse(intent, f"model(s) {', '.join(intent.models)} have no evaluated operating points "
                                            f"in their cards (testbed eval --record-in-card)")
            possible = len(self._ends(intent, busy=set()))
            if possible < intent.links:
                where = f", restricted to {','.join(intent.nodes)}" if intent.nodes else ""
                return self._refuse(intent, f"{intent.links} link(s) wanted, the online nodes can carry {possible} "
                                            f"(txrx nodes or tx/rx pairs{where})")
            self.intents[intent.intent_id] = {"intent": intent, "links": [], "state": "queued",
                                              "accepted_at": time.time(), "order": next(self.counter)}
            self._serve_queue()
            it = self.intents[intent.intent_id]
            if it["state"] == "queued":
                ahead = sum(1 for v in self.intents.values() if v["state"] == "queued") - 1
                why = f"queued: its nodes are busy ({ahead} other intent(s) queued)"
                self._decide(intent.intent_id, "", "queue", why, priority=intent.priority)
                return M.IntentReply(intent.intent_id, True, why, [])
            return M.IntentReply(intent.intent_id, True, it["reason"], list(it["links"]))

    def _busy(self) -> set:
        return {n for lp in self.links.values() for n in lp.busy_nodes()}

    def _ends(self, intent: M.Intent, busy: set) -> list[tuple[str, str]]:
        """Link ends available to ``intent``: (txrx node, "") or (tx node, rx node)."""
        free = [(n, st) for n, st in sorted(self.nodes.items())
                if st.online and n not in busy and (not intent.nodes or n in intent.nodes)]
        rxs = [n for n, st in free if st.role == "rx"]
        pairs = []
        for t in (n for n, st in free if st.role == "tx"):
            loop = self.nodes[t].radio == "loopback"     # a loopback transmitter streams to a loopback receiver
            r = next((r for r in rxs if (self.nodes[r].radio == "loopback") == loop), None)
            if r is not None:
                rxs.remove(r)
                pairs.append((t, r))
        return [(n, "") for n, st in free if st.role == "txrx"] + pairs

    def _serve_queue(self) -> None:
        """Plan queued intents, highest priority first, then in arrival order; an intent that does
        not fit yet holds back the ones behind it (no starvation of large intents)."""
        queued = sorted((v for v in self.intents.values() if v["state"] == "queued"),
                        key=lambda v: (-v["intent"].priority, v["order"]))
        for it in queued:
            intent = it["intent"]
            ends = self._ends(intent, self._busy())
            if len(ends) < intent.links:
                return
            try:
                it["links"] = self._plan(intent, ends[:intent.links])
            except Exception as e:      # never leave a queue head that fails forever
                log.exception("controller: planning intent %s failed", intent.intent_id)
                it["state"] = "failed"
                it["reason"] = f"planning failed: {type(e).__name__}: {e}"
                self._decide(intent.intent_id, "", "reject", it["reason"])
                continue
            it["state"] = "running"
            used = [f"{n}->{r}" if r else n for n, r in ends[:intent.links]]
            it["reason"] = f"assigned to {', '.join(used)}"
            self.dirty = True

    def _plan(self, intent: M.Intent, ends: list[tuple[str, str]]) -> list[str]:
        """Choose operating points and send the jobs of one intent's links."""
        links = []
        for i, (node, rx) in enumerate(ends):
            link_id = f"{intent.intent_id}.L{i}"
            st = LinkState()
            snr = self.nodes[rx or node].snr_db       # measured at the receiving end
            assumed = snr is None
            snr = self.opts.assume_snr_db if assumed else snr
            ch = self.policy.choose(snr, psnr_target=intent.qos.psnr_db, cbr_max=intent.cbr_max,
                                    latency_target=intent.qos.latency_ms, models=intent.models or None, state=st)
            reason = ch.reason + (f" (no SNR measured yet at {rx or node}: assuming {snr:g} dB)" if assumed else "")
            did = self._decide(intent.intent_id, link_id, "assign", reason, ch.op.model, ch.op.cbr, node=node,
                               rx_node=rx or node, snr_db=snr, predicted_psnr_db=round(ch.predicted_db, 2),
                               feasible=ch.feasible, priority=intent.priority)
            base = dict(intent_id=intent.intent_id, link_id=link_id, model=ch.op.model, model_sha256=ch.op.sha256,
                        cbr=ch.op.cbr, snr_db=_hint(snr, ch.op), images=list(intent.images), max_images=intent.max_images,
                        repeat=intent.repeat, decision=did)
            medium = self.nodes[node].medium
            job = M.Job(job_id=f"{link_id}.j" if not rx else f"{link_id}.tx", part="tx" if rx else "link",
                        peer=rx, medium=medium, **base)
            lp = LinkPlan(link_id, intent, node, job.job_id, ch.op, snr, did, st, {did: ch.op})
            self.links[link_id] = lp
            self.job_index[job.job_id] = link_id
            links.append(link_id)
            if rx:     # the receiver first; the transmitter once the receiver runs (nothing sent into the void)
                rjob = M.Job(job_id=f"{link_id}.rx", part="rx", peer=node, medium=medium, **base)
                lp.rx_node, lp.rx_job, lp.tx_hold = rx, rjob.job_id, job
                lp.sent_jobs = {node: job, rx: rjob}
                self.job_index[rjob.job_id] = link_id
                self._send(rx, rjob)
            else:
                lp.sent_jobs = {node: job}
                self._send(node, job)
        return links

    def _refuse(self, intent: M.Intent, why: str) -> M.IntentReply:
        self._decide(intent.intent_id, "", "reject", why)
        return M.IntentReply(intent.intent_id, False, why, [])

    def _on_qos(self, r: M.QosReport, topic, props) -> None:
        if self._node_of(topic, r.node_id) is None:
            return
        with self.lock:
            if r.report_id in self.seen:
                if r.report_id in self.committed:      # re-sent after a lost ack: acknowledge again
                    self.tlink.publish(T.to(r.node_id, "ack"), M.Ack([r.report_id]))
                return                                  # (else its ack follows the pending commit)
            if self.stopping.is_set():                  # the writer may have its stop marker: not written,
                return                                  # so not seen (the node re-sends it to the next run)
            self.seen.add(r.report_id)
            self.dirty = True
            lp = self.links.get(r.link_id)
            ours = lp is not None and r.node_id == (lp.rx_node if r.part == "rx" else lp.node) and \
                (r.part == "link") == (not lp.rx_job)
            if not ours:
                log.info("controller: report %s for a link this controller did not plan; logged only", r.report_id)
                self._record(None, self._row(r, None), [(r.node_id, r.report_id)])
                return
            if r.part == "link":
                self._record(lp, self._row(r, lp), [(r.node_id, r.report_id)], r)
            else:                                        # half of a split link: join by sequence number
                lp.halves.setdefault(r.seq, {})[r.part] = r
                self._join(lp, r.seq, final=lp.final_joined)

    @staticmethod
    def _row(r: M.QosReport, lp: LinkPlan | None) -> dict:
        row = {k: getattr(r, k) for k in QOS_FIELDS if hasattr(r, k)}
        target = lp.intent.qos.psnr_db if lp is not None else None
        row.update(psnr_target_db=target, met=None if target is None else int(r.psnr_db is not None and
                                                                             r.psnr_db >= target))
        return row

    def _join(self, lp: LinkPlan, seq: int, final: bool = False) -> None:
        """Both halves of image ``seq`` in: one QoS row (latency = rx done - tx sent). ``final``
        (the receiver finished): a lone tx half is an image lost on the air."""
        h = lp.halves.get(seq, {})
        tx, rx = h.get("tx"), h.get("rx")
        if not ((tx and rx) or final):
            return
        del lp.halves[seq]
        first = tx or rx
        merged = M.QosReport(
            report_id=first.report_id, node_id=lp.rx_node, job_id=first.job_id, intent_id=first.intent_id,
            link_id=lp.link_id, seq=seq, image=first.image, model=(tx or rx).model, model_sha256=first.model_sha256,
            cbr=tx.cbr if tx else 0.0, snr_tx_db=first.snr_tx_db, snr_est_db=rx.snr_est_db if rx else None,
            psnr_db=rx.psnr_db if rx else None,
            latency_ms=(rx.t_done - tx.t_sent) * 1e3 if tx and rx and tx.t_sent and rx.t_done else None,
            frames_sent=tx.frames_sent if tx else rx.frames_sent, frames_decoded=rx.frames_decoded if rx else 0,
            encode_ms=tx.encode_ms if tx else None, decode_ms=rx.decode_ms if rx else None,
            decision=tx.decision if tx else "", part="tx+rx" if tx and rx else (first.part + " only"))
        row = self._row(merged, lp)
        row["peer_id"] = lp.node
        row["peer_report_id"] = rx.report_id if tx and rx else ""
        self._record(lp, row, [(x.node_id, x.report_id) for x in (tx, rx) if x], merged)

    def _record(self, lp: LinkPlan | None, row: dict, acks: list, r: M.QosReport | None = None) -> None:
        """Queue the row for qos.csv (acks follow the commit) and let the policy learn from it."""
        row["received_at"] = f"{time.time():.3f}"
        self.qos_q.put((row, acks))
        if lp is None or r is None:
            return
        lp.reports += 1
        lp.met += row["met"] or 0
        op = lp.ops_by_decision.get(r.decision)
        if op is None:
            return
        target = lp.intent.qos.psnr_db
        self.policy.observe(lp.state, op, snr_est_db=r.snr_est_db, psnr_db=r.psnr_db, latency_ms=r.latency_ms,
                            psnr_target=target if op is lp.op else None)
        if op is not lp.op:          # sent before the last re-plan took effect
            return
        why = self.policy.should_replan(lp.state, lp.snr_plan)
        if why:
            self._replan(lp, why)

    def _commit(self) -> None:
        """Writer thread: append reports to qos.csv in batches (one fsync each), then acknowledge
        them, so that a report is acknowledged only once it is on disk."""
        while True:
            item = self.qos_q.get()
            batch = [item] if item is not None else []
            while len(batch) < 1000:
                try:
                    nxt = self.qos_q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    item = None
                    break
                batch.append(nxt)
            if batch and not self._append(batch, stopping=item is None):
                batch = []             # not on disk: not acknowledged (the nodes keep and re-send them)
            if batch:
                by_node: dict[str, list[str]] = {}
                for _, acks in batch:
                    for node, rid in acks:
                        by_node.setdefault(node, []).append(rid)
                with self.lock:
                    self.committed.update(rid for _, acks in batch for _, rid in acks)
                for node, ids in by_node.items():
                    self.tlink.publish(T.to(node, "ack"), M.Ack(ids))
            if item is None:
                return

    def _append(self, batch, stopping: bool) -> bool:
        """Write a batch to qos.csv; on an I/O error (e.g. a full disk) retry with back-off, so the
        writer thread never dies and nothing acknowledged is lost. False: not written."""
        delay = 0.5
        while True:
            try:
                self.qos_log.append_many([row for row, _ in batch])
                return True
            except OSError as e:
                self.write_errors += 1
                log.error("controller: cannot append %d QoS rows to %s (%s)%s", len(batch), self.qos_log.path, e,
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

    def _replan(self, lp: LinkPlan, why: str) -> None:
        it = lp.intent
        st = lp.state
        snr = st.snr_db if st.snr_db is not None else lp.snr_plan
        ch: Choice = self.policy.choose(snr, psnr_target=it.qos.psnr_db, cbr_max=it.cbr_max,
                                        latency_target=it.qos.latency_ms, models=it.models or None, state=st)
        moved = abs(snr - lp.snr_plan) > self.policy.snr_jump_db
        st.replanned()
        if ch.op == lp.op and not moved:
            log.debug("controller: %s reviewed (%s): keeping %s", lp.link_id, why, lp.op.key)
            return
        did = self._decide(it.intent_id, lp.link_id, "replan", f"{why}: {ch.reason}", ch.op.model, ch.op.cbr,
                           node=lp.node, snr_db=round(snr, 2), previous=lp.op.key,
                           content_offset_db=round(st.offset_db, 2), predicted_psnr_db=round(ch.predicted_db, 2),
                           feasible=ch.feasible)
        lp.op, lp.snr_plan, lp.decision = ch.op, snr, did
        lp.ops_by_decision[did] = ch.op
        self._send_update(lp, M.JobUpdate(job_id=lp.job_id, model=ch.op.model, model_sha256=ch.op.sha256,
                                          cbr=ch.op.cbr, snr_db=_hint(snr, ch.op), decision=did))

    def _send_update(self, lp: LinkPlan, upd: M.JobUpdate) -> None:
        """Whole link: to its node. Split link: to the receiver first; the transmitter gets it when
        the receiver reports it holds the model ('switched'), so no image is sent in a model the
        receiver cannot decode."""
        for key in [k for k in self.pending if k.startswith((f"{lp.job_id}#update:", f"{lp.rx_job or lp.job_id}#update:"))]:
            del self.pending[key]       # superseded: a node must not get an older decision after this one
        lp.pending_tx.clear()
        if not lp.rx_job:
            self._send_job_update(lp, lp.node, upd)
            return
        if lp.rx_status in M.FINAL_STATES:      # the receiver has finished: it would never confirm it
            return
        lp.pending_tx[upd.decision] = upd
        self._send_job_update(lp, lp.rx_node, dataclasses.replace(upd, job_id=lp.rx_job))

    def _send_job_update(self, lp: LinkPlan, node: str, upd: M.JobUpdate) -> None:
        """Send an update until confirmed; the node's job, as re-sent after a restart, follows it."""
        if (lp.rx_status if lp.rx_job and node == lp.rx_node else lp.tx_status) in M.FINAL_STATES:
            return                      # that end has finished: nothing would ever confirm it
        job = lp.sent_jobs.get(node)
        if job is not None:
            lp.sent_jobs[node] = dataclasses.replace(job, model=upd.model, model_sha256=upd.model_sha256,
                                                     cbr=upd.cbr, snr_db=upd.snr_db, decision=upd.decision)
        self._send(node, upd, key=f"{upd.job_id}#update:{upd.decision}")

    def _on_model_request(self, req: M.ModelRequest, topic, props) -> None:
        if self._node_of(topic, req.node_id) is None:
            return
        rt = getattr(props, "ResponseTopic", None) if props is not None else None
        corr = getattr(props, "CorrelationData", None) if props is not None else None
        if rt != T.to(req.node_id, "model"):
            self._reject(topic, f"response topic {rt!r} is not the node's own {T.to(req.node_id, 'model')}")
            return
        if req.name not in self.model_dirs:
            self._reject(topic, f"node {req.node_id} asked for unknown model {req.name!r}")
            return
        ann, data = self._archive(req.name)
        if ann.sha256 != req.sha256:
            self._reject(topic, f"node {req.node_id} asked for {req.name} {req.sha256[:12]}..., "
                                f"this controller has {ann.sha256[:12]}...")
            return
        key = (req.node_id, req.sha256)
        with self.lock:
            if key in self.streaming:           # one transfer per node and model at a time
                log.info("controller: %s asked again for %s while it is being sent: ignored", req.node_id, req.name)
                return
            self.streaming.add(key)
        try:
            self._decide("", "", "disseminate", f"sending {req.name} to {req.node_id}: {ann.size} bytes in "
                                                f"{ann.chunks} chunks", req.name, node=req.node_id,
                         archive_sha256=ann.archive_sha256)
            threading.Thread(target=self._stream_chunks, args=(rt, corr, ann, data, key), daemon=True).start()
        except BaseException:
            with self.lock:
                self.streaming.discard(key)
            raise

    def _stream_chunks(self, rt, corr, ann, data, key=None) -> None:
        try:
            for c in chunks(ann, data):
                self.link.publish(rt, c, correlation=corr)
        finally:
            if key is not None:
                with self.lock:
                    self.streaming.discard(key)

    # ---- status --------------------------------------------------------------------------------
    def status(self, finished_links: int | None = 50) -> M.ControllerStatus:
        """Nodes, intents and links: the active links and the ``finished_links`` most recent
        finished ones (None: all)."""
        with self.lock:
            nodes = [{"node_id": n, "online": s.online, "role": s.role, "radio": s.radio, "models": list(s.models),
                      "jobs": list(s.jobs), "snr_db": s.snr_db} for n, s in sorted(self.nodes.items())]
            lps = list(self.links.values())
            if finished_links is not None:
                done = [lp for lp in lps if lp.status in ("done", "failed", "cancelled")]
                keep = set(map(id, done[-finished_links:] if finished_links else []))
                lps = [lp for lp in lps if lp.status not in ("done", "failed", "cancelled") or id(lp) in keep]
            links = [{"link_id": lp.link_id, "intent_id": lp.intent.intent_id, "node": lp.node, "status": lp.status,
                      "model": lp.op.model, "cbr": lp.op.cbr, "decision": lp.decision, "snr_db": lp.state.snr_db,
                      "reports": lp.reports,
                      "met": lp.met, "psnr_target_db": lp.intent.qos.psnr_db,
                      "content_offset_db": round(lp.state.offset_db, 2)} for lp in lps]
            shown = {x["link_id"] for x in links}
            intents = [{"intent_id": k, "state": v["state"], "links": list(v["links"]),
                        "priority": v["intent"].priority} for k, v in self.intents.items()
                       if finished_links is None or v["state"] in ("queued", "running") or
                       shown.intersection(v["links"])]
            return M.ControllerStatus(nodes=nodes, links=links, intents=intents, reports=len(self.seen),
                                      rejected=self.rejected, ts=time.time())

    @property
    def rejected(self) -> int:
        """Messages rejected (schema, authorisation or consistency), on both connections."""
        return self.link.rejected + self.tlink.rejected

    def _write_summary(self) -> None:
        s = M.dataclasses.asdict(self.status(finished_links=None))
        if self.intent_ms:
            v = np.asarray(self.intent_ms)
            s["intent_handling_ms"] = {"n": len(v), "p50": float(np.percentile(v, 50)),
                                       "p99": float(np.percentile(v, 99)), "max": float(v.max())}
        write_json_atomic(self.out / "summary.json", s)

    def _tick(self) -> None:
        last_summary = 0.0
        while not self.stopping.wait(self.opts.status_every_s):
            if self.dirty:
                self.dirty = False
                try:
                    self.link.publish(T.controller_status(), self.status(), qos=0, retain=True)
                    if time.monotonic() - last_summary > self.opts.summary_every_s:
                        self._write_summary()
                        last_summary = time.monotonic()
                    else:
                        self.dirty = True    # the summary is still due
                except Exception:
                    log.exception("controller: status publish failed")
            try:
                self._periodic()
            except Exception:
                log.exception("controller: periodic work failed")

    def _periodic(self) -> None:
        """Re-send what is unconfirmed, give up on nodes offline past the grace period, join the
        last halves of finished split links."""
        now = time.monotonic()
        with self.lock:
            for key, (node, msg, t) in list(self.pending.items()):
                st = self.nodes.get(node)
                if st is not None and not st.online:
                    continue             # re-sent when it is back online (see _on_status)
                if now - t > self.opts.resend_s:
                    self.pending[key] = (node, msg, now)
                    self.link.publish(T.to(node, "job"), msg)
            for node, since in list(self.offline_since.items()):
                if now - since > self.opts.offline_grace_s:
                    del self.offline_since[node]
                    st = self.nodes.get(node)
                    if st is not None and not st.online:
                        self._give_up_on(node, now - since)
            for lp in self.links.values():
                if lp.rx_finished_at is not None and not lp.final_joined and \
                        now - lp.rx_finished_at > self.opts.join_grace_s:
                    lp.final_joined = True       # late rx halves arrive on the other connection
                    for seq in sorted(lp.halves):
                        self._join(lp, seq, final=True)

    def start(self, wait_s: float | None = 10.0) -> "Controller":
        self.writer = threading.Thread(target=self._commit, name="controller-qos-writer", daemon=True)
        self.writer.start()
        self.tlink.start(wait_s)
        self.link.start(wait_s)
        self.ticker = threading.Thread(target=self._tick, name="controller-status", daemon=True)
        self.ticker.start()
        return self

    def stop(self) -> None:
        with self.lock:                  # _on_qos checks stopping under the lock: no row after the marker
            self.stopping.set()
        if getattr(self, "ticker", None):
            self.ticker.join(5)
        with self.lock:
            self.qos_q.put(None)
        if getattr(self, "writer", None):
            self.writer.join(30)
        self.link.stop()
        self.tlink.stop()
        with self.lock:
            self._write_summary()
            self.qos_log.close()
            self.decisions_f.close()


def load_intent(path: str) -> M.Intent:
    """An intent from a YAML or JSON file; errors name the file and key."""
    from ..core.configfile import from_mapping, load_yaml

    return from_mapping(M.Intent, load_yaml(path, "intent file"), str(path))


def _last_decision_number(path: Path) -> int:
    """The highest ``d<n>`` decision id in a decisions.jsonl (0: none)."""
    last = 0
    with open(path) as f:
        for line in f:
            try:
                did = json.loads(line).get("decision_id", "")
                if did.startswith("d"):
                    last = max(last, int(did[1:]))
            except (ValueError, AttributeError):
                continue
    return last


def _hint(snr_db: float, op: OperatingPoint) -> float:
    """The SNR the encoder is told: the measured one, within the range the model was trained for."""
    return round(float(min(max(snr_db, op.snr_db[0]), op.snr_db[-1])), 2)
