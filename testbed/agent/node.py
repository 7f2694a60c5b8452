"""``testbed node``: an edge node. It announces itself (retained status, last will), runs the
jobs the controller assigns on its radio or the loopback channel, and reports QoS per image.

* One flowgraph (:class:`testbed.link.session.LinkSession`) stays up for the node's lifetime; a
  job update switches model/CBR at the next image boundary without restarting it
  (:mod:`~testbed.agent.runner`).
* QoS reports go through a durable :class:`~testbed.agent.outbox.Outbox`: written to disk first,
  re-sent after every reconnect and every few seconds until the controller acknowledges them.
* Models it lacks are requested from the controller (request/response, chunks with sha256),
  verified, stored under ``<state>/models/<name>/`` and opened (graph hashes checked) before use
  (:mod:`~testbed.agent.receiving`).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import messages as M
from . import topics as T
from . import unique
from .mqttlink import MqttLink
from .outbox import Outbox
from .receiving import ModelReceiver
from .runner import JobRunner, parse_snr_schedule

log = logging.getLogger(__name__)


@dataclass
class NodeOptions:
    broker: str
    node_id: str
    role: str = "txrx"
    radio: str = "loopback"            # 'loopback' or a firmware_configs/*.yaml path
    state_dir: str | None = None       # default ~/.cache/testbed/node-<id>
    username: str | None = None        # default: the node id
    password: str | None = None
    ca_file: str | None = None
    channel_snr: str | None = None     # loopback only: SNR schedule (see parse_snr_schedule)
    threads: int = 1
    resend_s: float = 5.0
    drain_s: float = 3.0               # at stop: wait this long for the acks of what the outbox holds
    model_timeout_s: float = 60.0
    models_dir: str | None = None      # models installed on the node (default: the shipped models/)
    medium: str | None = None          # role tx on the loopback channel: the ZeroMQ address it streams
                                       # samples on (default tcp://127.0.0.1:<free port>)


class Node(JobRunner):
    def __init__(self, opts: NodeOptions):
        from ..link.configs import LoopbackConfig, load_config
        from ..phy.config import OfdmConfig
        from ..link.frontend import make_frontend

        if not M.ID_RE.match(opts.node_id):
            raise ValueError(f"--id {opts.node_id!r}: 1-64 of A-Z a-z 0-9 _ . - (it is also a topic level)")
        if opts.role not in M.ROLES:
            raise ValueError(f"--role {opts.role!r}: one of {', '.join(M.ROLES)}")
        self.opts = opts
        self.id = opts.node_id
        if opts.radio == "loopback":
            self.radio_cfg = LoopbackConfig(kind="loopback", ofdm=OfdmConfig())
        else:
            self.radio_cfg = load_config(opts.radio)
        self.frontend = make_frontend(self.radio_cfg)
        self.medium = ""
        if opts.role == "tx" and self.radio_cfg.kind == "loopback":
            from .broker import free_port

            self.medium = opts.medium or f"tcp://127.0.0.1:{free_port()}"
        self.snr_schedule = parse_snr_schedule(opts.channel_snr)
        if self.snr_schedule and self.radio_cfg.kind not in ("loopback", "sigmf"):
            raise ValueError(f"--channel-snr: only for the loopback channel, not a {self.radio_cfg.kind} radio")
        if self.snr_schedule and self.snr_schedule[0][1] == self.snr_schedule[0][1]:   # not NaN
            self.frontend.snr_db = self.snr_schedule[0][1]
        self.state = Path(opts.state_dir or Path.home() / ".cache" / "testbed" / f"node-{self.id}")
        self.receiver = ModelReceiver(self.id, self.state / "models", opts.models_dir, threads=opts.threads,
                                      timeout_s=opts.model_timeout_s, request=self._request_model,
                                      on_installed=self.publish_status)
        self.models = self.receiver.models                 # name -> (sha256, folder)
        self.outbox = Outbox(self.state / "outbox")
        self.jobs: "queue.Queue[M.Job | None]" = queue.Queue()
        self.updates: dict[str, M.JobUpdate] = {}
        self.cancelled: dict[str, M.JobCancel] = {}
        self.final: dict[str, str] = {}                    # job id -> done | failed | cancelled
        self.final_images: dict[str, int] = {}             # job id -> images done when it finished
        self.applied: dict[str, set] = {}                  # job id -> decision numbers applied
        self.decoded: "queue.Queue[tuple[dict, object]]" = queue.Queue()
        self.seen_jobs: set[str] = set()
        self.running: list[str] = []
        self.images_sent = 0
        self.events = 0
        self.session = None
        self.last_snr: float | None = None
        self.stopping = threading.Event()
        self.instance, self.since = unique.new_instance(), time.time()
        self.claimed = threading.Event()
        self.link = MqttLink(f"node-{self.id}-{self.instance}", opts.broker, username=opts.username or self.id,
                             password=opts.password, ca_file=opts.ca_file,
                             will=(T.node(self.id, "status"), self._status(online=False)))

    def _claim(self) -> None:
        """Once connected: refuse to run beside a running node of the same id
        (:mod:`testbed.agent.unique`), else subscribe, say it is online and re-send its outbox."""
        while not self.link.connected.wait(0.2):
            if self.stopping.is_set() or self.link.fatal:
                return
        try:
            unique.check_unique(self.link, T.node(self.id, "status"), T.node(self.id, "probe"),
                                lambda m: isinstance(m, M.NodeStatus) and m.online, f"node {self.id}", self.instance)
        except unique.UniqueError as e:
            self.link.fail(str(e))
            self.claimed.set()
            return
        unique.answer_pings(self.link, T.node(self.id, "probe"), unique.presence(self.instance, self.since))
        self.link.subscribe(T.to(self.id, "job"), self._on_job, expect=(M.Job, M.JobUpdate, M.JobCancel))
        self.link.subscribe(T.to(self.id, "ack"), self._on_ack, expect=M.Ack)
        self.link.subscribe(T.to(self.id, "model"), self.receiver.on_chunk, expect=M.ModelChunk)
        self.link.on_connect(self._on_connected)
        self._on_connected()
        self.claimed.set()

    @property
    def fatal(self) -> str | None:
        """Why this node cannot go on (its id runs elsewhere, its session was taken over)."""
        return self.link.fatal

    def _request_model(self, name: str, sha256: str) -> None:
        self.link.publish(T.node(self.id, "model_request"), M.ModelRequest(self.id, name, sha256),
                          response_topic=T.to(self.id, "model"), correlation=sha256.encode())

    # ---- MQTT handlers -------------------------------------------------------------------------
    def _status(self, online: bool = True) -> M.NodeStatus:
        names = sorted(self.models) if hasattr(self, "models") else []
        return M.NodeStatus(node_id=self.id, online=online, role=self.opts.role, radio=self.radio_cfg.kind,
                            models=names, model_sha256=[self.models[n][0] for n in names],
                            jobs=list(getattr(self, "running", [])), snr_db=getattr(self, "last_snr", None),
                            medium=getattr(self, "medium", ""))

    def publish_status(self) -> None:
        self.link.publish(T.node(self.id, "status"), self._status(), retain=True)

    def _on_connected(self) -> None:
        self.publish_status()
        self._resend(0.0)

    def _resend(self, older_than_s: float) -> None:
        due = self.outbox.due(older_than_s)
        if due:
            log.info("%s: re-sending %d unacknowledged QoS report(s)", self.id, len(due))
        for what, payload in due:
            self.link.publish(T.node(self.id, what), payload, qos=T.publish_qos(what))

    def _on_ack(self, ack: M.Ack, topic, props) -> None:
        self.outbox.ack(ack.ids)

    PART_OF_ROLE = {"txrx": "link", "tx": "tx", "rx": "rx"}

    def _on_job(self, msg, topic, props) -> None:
        if isinstance(msg, M.Job):
            if msg.job_id in self.seen_jobs:       # a re-sent assignment: say where it stands
                state = self.final.get(msg.job_id) or ("running" if msg.job_id in self.running else "accepted")
                self._job_state(msg.job_id, state, self.final_images.get(msg.job_id, 0), error="(re-sent assignment)")
                return
            if msg.part != self.PART_OF_ROLE[self.opts.role]:
                self._job_state(msg.job_id, "failed", error=f"part {msg.part!r}: this node's role is "
                                                             f"{self.opts.role!r}")
                return
            self.seen_jobs.add(msg.job_id)
            self._job_state(msg.job_id, "accepted")
            self.jobs.put(msg)
        elif isinstance(msg, M.JobUpdate):
            if msg.job_id in self.final:        # too late: say so, so the controller stops re-sending it
                self._job_state(msg.job_id, self.final[msg.job_id], self.final_images.get(msg.job_id, 0),
                                error="(already finished)",
                                decision=msg.decision)
                return
            n = M.decision_number(msg.decision)
            applied = self.applied.get(msg.job_id, set())
            if applied and n <= max(applied):   # re-sent, or superseded by a newer one applied: confirm only
                self._job_state(msg.job_id, "switched", decision=msg.decision)
                return
            cur = self.updates.get(msg.job_id)
            if cur is None or M.decision_number(cur.decision) < n:   # the newest decision wins
                self.updates[msg.job_id] = msg
        elif isinstance(msg, M.JobCancel):
            if msg.job_id in self.final:
                self._job_state(msg.job_id, self.final[msg.job_id], self.final_images.get(msg.job_id, 0),
                                error="(already finished)")
                return
            if msg.job_id not in self.seen_jobs:    # never assigned here (or lost in a restart): it is
                self.seen_jobs.add(msg.job_id)      # cancelled before it starts; a late assignment is refused
                self._job_state(msg.job_id, "cancelled", error=f"(cancelled before it was received: {msg.reason})")
                return
            self.cancelled[msg.job_id] = msg

    # ---- outgoing, kept in the outbox until acknowledged ----------------------------------------
    def _job_state(self, job_id: str, state: str, images_done: int = 0, error: str = "", decision: str = "") -> None:
        if state in M.FINAL_STATES:
            if job_id not in self.final:
                self.final_images[job_id] = images_done
            self.final[job_id] = state
        self.events += 1
        ev = M.JobState(event_id=M.event_id(self.id, job_id, state, self.events), node_id=self.id, job_id=job_id,
                        state=state, images_done=images_done, error=error, decision=decision)
        self._send_durable(ev.event_id, "job_state", M.encode(ev))

    def _report(self, rep: M.QosReport) -> None:
        self._send_durable(rep.report_id, "qos", M.encode(rep))

    def _send_durable(self, msg_id: str, what: str, payload: bytes) -> None:
        """Publish on the node's ``what`` sub-topic, after writing it to the outbox."""
        self.outbox.add(msg_id, what, payload)
        self.link.publish(T.node(self.id, what), payload, qos=T.publish_qos(what))

    # ---- main loop -----------------------------------------------------------------------------
    def start(self, wait_s: float | None = 10.0) -> "Node":
        """Connect (up to ``wait_s``; None: in the background) and claim the node id; raises
        :class:`~testbed.agent.unique.UniqueError` if it runs elsewhere (with ``wait_s`` None,
        :attr:`fatal` says so instead)."""
        self.link.start(wait_s)
        threading.Thread(target=self._claim, name=f"node-{self.id}-claim", daemon=True).start()
        if wait_s is not None:
            self.claimed.wait(wait_s + 10)
            if self.fatal:
                self.link.stop()
                raise unique.UniqueError(self.fatal)
        self.worker = threading.Thread(target=self._work, name=f"node-{self.id}", daemon=True)
        self.worker.start()
        threading.Thread(target=self._resender, name=f"node-{self.id}-resend", daemon=True).start()
        return self

    def _work(self) -> None:
        while not self.stopping.is_set():
            try:
                job = self.jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            if job is None:
                break
            self.run_job(job)

    def _resender(self) -> None:
        """Unacknowledged reports and job states go out again every ``resend_s``, jobs or not."""
        while not self.stopping.wait(min(1.0, self.opts.resend_s)):
            if self.link.connected.is_set() and self.claimed.is_set() and not self.fatal:
                try:
                    self._resend(self.opts.resend_s)
                except Exception:
                    log.exception("%s: re-send failed", self.id)

    def stop(self) -> None:
        self.stopping.set()
        self.jobs.put(None)
        if getattr(self, "worker", None):
            self.worker.join(30)
        if self.claimed.is_set() and not self.fatal and self.link.connected.is_set() and len(self.outbox):
            # the controller acknowledges each node's reports every 0.5 s: a node stopped just
            # after a job waits for the last ones (kept, and re-sent at the next start, if not)
            log.info("%s: waiting up to %g s for the acknowledgement of %d message(s)", self.id, self.opts.drain_s,
                     len(self.outbox))
            t_end = time.monotonic() + self.opts.drain_s
            while len(self.outbox) and time.monotonic() < t_end and self.link.connected.is_set():
                time.sleep(0.05)
        if self.claimed.is_set() and not self.fatal:    # a refused duplicate must not say the running node is offline
            try:
                self.link.publish(T.node(self.id, "status"), self._status(online=False),
                                  retain=True).wait_for_publish(2)
            except Exception:
                pass
        self.link.stop()
        if self.session is not None:
            self.session.close()
        self.outbox.close()
