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

The controller wires its parts to MQTT: :mod:`~testbed.agent.intents` (the intent queue,
planning and re-planning), :mod:`~testbed.agent.jobs` (jobs on the nodes until confirmed, job
states, nodes going offline), :mod:`~testbed.agent.qos_store` (``qos.csv`` and the
acknowledgements), :mod:`~testbed.agent.decisions` (``decisions.jsonl``) and
:mod:`~testbed.agent.serving` (model dissemination).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import messages as M
from . import topics as T
from . import unique
from .broker import CONTROLLER_USER, OPERATOR_USER
from .decisions import DecisionLog
from .intent_journal import IntentJournal
from .journal import GroupCommit
from .ingest import IngestProcess, UrgentGate
from .intents import IntentPlanner, LinkPlan, load_intent  # noqa: F401  (load_intent: for the CLI)
from .jobs import JobTracker
from .mqttlink import MqttLink, response_of
from .policy import Policy, load_catalogue
from .qos_store import QosStore, ack_payload, join_halves, qos_row
from .serving import ModelServer
from .status_view import StatusView

log = logging.getLogger(__name__)


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
    ingest_process: bool = True        # QoS reports received and validated in a child process


class Controller(IntentPlanner, JobTracker, StatusView):
    def __init__(self, opts: ControllerOptions):
        from ..core.paths import models_dir, shipped_models
        from ..core.runlog import default_run_dir

        self.opts = opts
        mdir = Path(opts.models_dir) if opts.models_dir else models_dir()
        self.model_dirs = shipped_models(mdir)
        self.policy = Policy(load_catalogue(self.model_dirs), margin_db=opts.margin_db)
        if not self.policy.catalogue:
            raise ValueError(f"{mdir}: no model with an evaluated card (testbed eval --record-in-card)")
        self.out = Path(opts.out) if opts.out else default_run_dir("controller")
        self.out.mkdir(parents=True, exist_ok=True)
        # acknowledgements go out on the telemetry connection (looked up at each call: tests swap it)
        # acks are QoS 0: a lost one costs a re-sent report (acknowledged again), never a lost
        # one, and a flood of them does not wait for PUBACKs
        self.qos = QosStore(self.out / "qos.csv", lambda acks: self.tlink.publish_many(
            [(T.to(node, "ack"), ack_payload(ids)) for node, ids in acks], qos=0))
        # the journal and the decision log are written in batches off the MQTT threads; what must
        # not get ahead of them (jobs, replies, decisions) goes out once they are on disk
        self.durable = GroupCommit("controller-journal")
        self.decisions = DecisionLog(self.out / "decisions.jsonl", self.durable)   # ids never repeat across restarts
        self.models = ModelServer(self.model_dirs, lambda *a, **kw: self.link.publish(*a, **kw))
        self.lock = threading.RLock()
        self._init_intents()
        self._init_jobs()
        self.journal = IntentJournal(self.out, self.durable)        # intents.jsonl: what an earlier run accepted resumes
        self._restore()
        self.qos_rejected = 0
        self.intent_ms: list[float] = []     # time to handle each intent (receipt to its jobs published)
        self.intent_reply_ms: list[float] = []   # receipt to its reply published (after the journal's fsync)
        self.dirty = True
        self.stopping = threading.Event()
        self.instance, self.since = unique.new_instance(), time.time()
        self.link = MqttLink(f"controller-{self.instance}", opts.broker, username=opts.username,
                             password=opts.password, ca_file=opts.ca_file,
                             will=(T.controller_presence(), unique.presence(self.instance, self.since, online=False)))
        # QoS reports arrive on a second connection (its own network thread), so that a flood of
        # telemetry never queues intents and job states behind it
        # (in a process of its own by default: testbed/agent/ingest.py)
        self.gate = UrgentGate(self.lock)      # intents and job states go before the next run of reports
        telemetry, kw = ((IngestProcess, {"batch_lock": self.gate}) if opts.ingest_process
                         else (MqttLink, {"v5": False}))
        self.tlink = telemetry(f"controller-telemetry-{self.instance}", opts.broker, username=opts.username,
                               password=opts.password, ca_file=opts.ca_file, **kw)
        # intents in, replies and jobs out on a third connection: they neither wait behind the
        # nodes' status and job-state traffic on the socket nor behind its handling
        self.olink = MqttLink(f"controller-ops-{self.instance}", opts.broker, username=opts.username,
                              password=opts.password, ca_file=opts.ca_file)
        self.claimed = threading.Event()

    def _serve(self) -> None:
        """Subscribe to everything a controller handles (once no other controller runs)."""
        # QoS 0 on the broker -> controller hop: a report is kept by its node until the
        # controller's own ack (sent once it is on disk), so a PUBACK per report (and the
        # broker's in-flight window it feeds) would only add a round trip and a syscall
        self.tlink.subscribe(T.node("+", "qos"), self._on_qos, expect=M.QosReport, qos=0)
        self.link.subscribe(T.node("+", "status"), self._on_status, expect=M.NodeStatus)
        self.link.subscribe(T.node("+", "job_state"), self._on_job_state, expect=M.JobState)
        self.link.subscribe(T.node("+", "model_request"), self._on_model_request, expect=M.ModelRequest)
        self.olink.subscribe(T.intents(), self._on_intent, expect=(M.Intent, M.StatusRequest, M.IntentCancel))
        self.link.on_connect(self._on_connected)
        self.olink.on_connect(self._on_ops_connected)

    def _claim(self) -> None:
        """Once connected: refuse to run beside another controller (:mod:`testbed.agent.unique`),
        else announce this one (retained presence; its last will says offline) and serve."""
        while not self.link.connected.wait(0.2):
            if self.stopping.is_set() or self.link.fatal:
                return
        try:
            unique.check_unique(self.link, T.controller_presence(), T.controller_probe(),
                                lambda m: isinstance(m, M.Presence) and m.online, "a controller", self.instance)
        except unique.UniqueError as e:
            self.link.fail(str(e))
            self.claimed.set()
            return
        me = unique.presence(self.instance, self.since)
        unique.answer_pings(self.link, T.controller_probe(), me)
        self.link.publish(T.controller_presence(), me, retain=True)
        self.tlink.start(None)
        self.olink.start(None)
        self._serve()
        self._on_connected()
        self.claimed.set()

    @property
    def fatal(self) -> str | None:
        """Why this controller cannot go on (another one runs, its session was taken over)."""
        return self.link.fatal or self.tlink.fatal or self.olink.fatal

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
        """Log a decision (decisions.jsonl) and publish it on ``controller/decisions``."""
        did, payload = self.decisions.record(intent_id, link_id, action, reason, model, cbr, inputs)
        self.durable.after(lambda: self.link.publish(T.decisions(), payload))
        log.info("decision %s %s %s: %s", did, action, link_id or intent_id, reason)
        self.dirty = True
        return did

    # ---- handlers ------------------------------------------------------------------------------
    def _on_connected(self) -> None:
        self.models.announce_all()
        with self.lock:
            self._resend_pending()

    def _on_ops_connected(self) -> None:
        with self.lock:          # jobs go out on this connection: what it may have lost, again
            self._resend_pending()

    def _on_status(self, st: M.NodeStatus, topic, props) -> None:
        if self._node_of(topic, st.node_id) is not None:
            self._node_status(st)

    def _on_job_state(self, js: M.JobState, topic, props) -> None:
        if self._node_of(topic, js.node_id) is None:
            return
        self.link.publish(T.to(js.node_id, "ack"), M.Ack([js.event_id]), qos=0)   # idempotent: no disk needed
        with self.gate.urgent():
            why = self._job_state(js)
        if why:
            self._reject(topic, why)

    def _on_intent(self, msg, topic, props) -> None:
        t0 = time.perf_counter()
        rt, corr = response_of(props)
        if isinstance(msg, M.StatusRequest):
            reply = self.status()
        elif isinstance(msg, M.IntentCancel):
            with self.gate.urgent():
                reply = self.cancel(msg)
        else:
            with self.gate.urgent():
                reply = self.submit(msg)
        if rt and rt.startswith(T.reply("")):     # "accepted" once the journal is fsync'ed (encoded now)
            payload = M.encode(reply)
            self.durable.after(lambda: self.olink.publish(rt, payload, correlation=corr, expiry_s=60))
        elif rt:
            self._reject(topic, f"response topic {rt!r} is outside {T.reply('')}")
        if isinstance(msg, M.Intent):
            self.intent_ms.append((time.perf_counter() - t0) * 1e3)      # received to its jobs published
            # received to its reply published, the journal fsync'ed
            self.durable.after(lambda: self.intent_reply_ms.append((time.perf_counter() - t0) * 1e3))

    def _on_model_request(self, req: M.ModelRequest, topic, props) -> None:
        if self._node_of(topic, req.node_id) is None:
            return
        rt, corr = response_of(props)
        why = self.models.serve(req, rt, corr, lambda ann: self._decide(
            "", "", "disseminate", f"sending {req.name} to {req.node_id}: {ann.size} bytes in {ann.chunks} chunks",
            req.name, node=req.node_id, archive_sha256=ann.archive_sha256))
        if why:
            self._reject(topic, why)

    def _on_qos(self, r: M.QosReport, topic, props) -> None:
        if self._node_of(topic, r.node_id) is None:
            return
        with self.lock:
            if self.qos.duplicate(r.node_id, r.report_id):   # re-sent after a lost ack
                return
            if self.stopping.is_set():                  # the writer may have its stop marker: not written,
                return                                  # so not seen (the node re-sends it to the next run)
            self.dirty = True
            lp = self.links.get(r.link_id)
            why = self._report_refusal(r, lp)
            if why:       # acknowledged (so that the node stops re-sending it), counted, never stored
                self.qos_rejected += 1
                log.warning("controller: QoS report %s rejected: %s", r.report_id, why)
                self.tlink.publish(T.to(r.node_id, "ack"), M.Ack([r.report_id]), qos=0)
                return
            self.qos.seen.add(r.report_id)
            if r.part == "link":
                self._record(lp, qos_row(r, lp.intent.qos.psnr_db), [(r.node_id, r.report_id)], r)
            else:                                        # half of a split link: join by sequence number
                lp.halves.setdefault(r.seq, {})[r.part] = r
                self._join(lp, r.seq, final=lp.final_joined)

    @staticmethod
    def _report_refusal(r: M.QosReport, lp: LinkPlan | None) -> str | None:
        """Why a (schema-valid) report does not belong to the link it names, if it does not:
        an unknown link, a node or job not on that link, or an image beyond those a finished
        transmitting end reported done."""
        if lp is None:
            return f"link {r.link_id!r} is not one this controller planned"
        is_rx = r.part == "rx"
        if (r.part == "link") != (not lp.rx_job):
            return f"part {r.part!r} does not fit link {lp.link_id} ({'split' if lp.rx_job else 'one node'})"
        node, job = (lp.rx_node, lp.rx_job) if is_rx else (lp.node, lp.job_id)
        if r.node_id != node or r.job_id != job:
            return f"node {r.node_id} / job {r.job_id} is not the {r.part} end of {lp.link_id} ({node} / {job})"
        done = lp.images_done.get("tx")
        if not is_rx and lp.tx_status in M.FINAL_STATES and done is not None and r.seq >= done:
            return f"image {r.seq} of {lp.link_id}, whose transmitter finished after {done} image(s)"
        return None

    def _join(self, lp: LinkPlan, seq: int, final: bool = False) -> None:
        """Both halves of image ``seq`` in: one QoS row (latency = rx done - tx sent). ``final``
        (the receiver finished): a lone tx half is an image lost on the air."""
        h = lp.halves.get(seq, {})
        tx, rx = h.get("tx"), h.get("rx")
        if not ((tx and rx) or final):
            return
        del lp.halves[seq]
        merged = join_halves(tx, rx, lp.link_id, lp.rx_node)
        row = qos_row(merged, lp.intent.qos.psnr_db)
        row["peer_id"] = lp.node
        row["peer_report_id"] = rx.report_id if tx and rx else ""
        self._record(lp, row, [(x.node_id, x.report_id) for x in (tx, rx) if x], merged)

    def _record(self, lp: LinkPlan | None, row: dict, acks: list, r: M.QosReport | None = None) -> None:
        """Queue the row for qos.csv (acks follow the commit) and let the policy learn from it."""
        self.qos.put(row, acks)
        if lp is not None and r is not None:
            self._observe(lp, row["met"], r)

    def _tick(self) -> None:
        next_summary = 0.0
        while not self.stopping.wait(self.opts.status_every_s):
            if not self.claimed.is_set() or self.fatal:     # not serving (yet, or ever)
                continue
            if self.dirty:
                self.dirty = False
                try:
                    self.link.publish(T.controller_status(), self.status(), qos=0, retain=True)
                    if time.monotonic() > next_summary:
                        took = self._write_summary()
                        next_summary = time.monotonic() + max(self.opts.summary_every_s, 50 * took)
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
            self._resend_due(now)
            self._check_offline(now)
            for lp in list(self.joining.values()):
                if lp.final_joined:
                    del self.joining[lp.link_id]
                elif now - lp.rx_finished_at > self.opts.join_grace_s:
                    lp.final_joined = True       # late rx halves arrive on the other connection
                    del self.joining[lp.link_id]
                    for seq in sorted(lp.halves):
                        self._join(lp, seq, final=True)

    def start(self, wait_s: float | None = 10.0) -> "Controller":
        """Connect (waiting up to ``wait_s`` for the broker; None: in the background), check that
        no other controller runs and serve; raises :class:`~testbed.agent.unique.UniqueError` if
        one does (with ``wait_s`` None, :attr:`fatal` says so instead)."""
        self.qos.start()
        self.link.start(wait_s)
        threading.Thread(target=self._claim, name="controller-claim", daemon=True).start()
        if wait_s is not None:
            self.claimed.wait(wait_s + 10)
            if self.fatal:
                self.stop()
                raise unique.UniqueError(self.fatal)
        self.ticker = threading.Thread(target=self._tick, name="controller-status", daemon=True)
        self.ticker.start()
        return self

    def stop(self) -> None:
        with self.lock:                  # _on_qos checks stopping under the lock: no row after the marker
            self.stopping.set()
        if getattr(self, "ticker", None):
            self.ticker.join(5)
        with self.lock:
            self.qos.stop()
        self.qos.join(30)
        if self.claimed.is_set() and not self.fatal and self.link.connected.is_set():
            try:       # offline, retained (the last will covers a kill)
                self.link.publish(T.controller_presence(), unique.presence(self.instance, self.since, online=False),
                                  retain=True).wait_for_publish(2)
            except Exception:
                pass
        self.durable.stop()           # what is queued is written, and its jobs and replies go out
        self.link.stop()
        self.olink.stop()
        self.tlink.stop()
        with self.lock:
            self._write_summary()
            self.qos.close()
            self.decisions.close()
            self.journal.close()
