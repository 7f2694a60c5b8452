"""``testbed node``: an edge node. It announces itself (retained status, last will), runs the
jobs the controller assigns on its radio or the loopback channel, and reports QoS per image.

* One flowgraph (:class:`testbed.link.session.LinkSession`) stays up for the node's lifetime; a
  job update switches model/CBR at the next image boundary without restarting it.
* QoS reports go through a durable :class:`~testbed.agent.outbox.Outbox`: written to disk first,
  re-sent after every reconnect and every few seconds until the controller acknowledges them.
* Models it lacks are requested from the controller (request/response, chunks with sha256),
  verified, stored under ``<state>/models/<name>/`` and opened (graph hashes checked) before use.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import messages as M
from . import topics as T
from .mqttlink import MqttLink
from .outbox import Outbox
from .transfer import Assembler, TransferError, unpack

log = logging.getLogger(__name__)


def parse_snr_schedule(spec: str | None) -> list[tuple[int, float]]:
    """``"20"`` or ``"20,5@30"``: 20 dB, then 5 dB from the node's 30th image on."""
    if not spec:
        return []
    out = []
    for i, part in enumerate(spec.split(",")):
        try:
            snr, _, at = part.partition("@")
            out.append((int(at) if at else 0, float(snr)))
        except ValueError:
            raise ValueError(f"--channel-snr {spec!r}: item {part!r} is not SNR[@IMAGE]") from None
        if not -10 <= out[-1][1] <= 60 or out[-1][0] < 0:
            raise ValueError(f"--channel-snr {spec!r}: item {part!r}: SNR must be in -10..60 dB, IMAGE >= 0")
        if i == 0 and out[0][0] != 0:
            out.insert(0, (0, float("nan")))
    return sorted(out)


@dataclass
class _Transfer:
    """A model this node asked the controller for: the chunks so far, and how it ended."""
    asm: Assembler | None = None
    complete: bool = False              # all chunks in (or failed): later chunks are ignored
    error: Exception | None = None
    done: threading.Event = field(default_factory=threading.Event)


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
    model_timeout_s: float = 60.0
    models_dir: str | None = None      # models installed on the node (default: the shipped models/)
    medium: str | None = None          # role tx on the loopback channel: the ZeroMQ address it streams
                                       # samples on (default tcp://127.0.0.1:<free port>)


class Node:
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
        self.store = self.state / "models"
        self.store.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(self.state / "outbox")
        self.models: dict[str, tuple[str, Path]] = {}      # name -> (sha256, folder)
        self._scan_models()
        self.codecs: dict[str, object] = {}                # sha256 -> opened codec
        self.jobs: "queue.Queue[M.Job | None]" = queue.Queue()
        self.updates: dict[str, M.JobUpdate] = {}
        self.cancelled: dict[str, M.JobCancel] = {}
        self.final: dict[str, str] = {}                    # job id -> done | failed | cancelled
        self.applied: dict[str, set] = {}                  # job id -> decision numbers applied
        self.decoded: "queue.Queue[tuple[dict, object]]" = queue.Queue()
        self.seen_jobs: set[str] = set()
        self.running: list[str] = []
        self.transfers: dict[str, _Transfer] = {}          # card sha256 -> a model this node asked for
        self.images_sent = 0
        self.events = 0
        self.session = None
        self.last_snr: float | None = None
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.link = MqttLink(f"node-{self.id}", opts.broker, username=opts.username or self.id,
                             password=opts.password, ca_file=opts.ca_file,
                             will=(T.node(self.id, "status"), self._status(online=False)))
        self.link.subscribe(T.to(self.id, "job"), self._on_job, expect=(M.Job, M.JobUpdate, M.JobCancel))
        self.link.subscribe(T.to(self.id, "ack"), self._on_ack, expect=M.Ack)
        self.link.subscribe(T.to(self.id, "model"), self._on_chunk, expect=M.ModelChunk)
        self.link.on_connect(self._on_connected)

    # ---- models -------------------------------------------------------------------------------
    def _scan_models(self) -> None:
        from ..zoo import CARD_NAME, load_card
        from ..core.paths import shipped_models

        if self.opts.models_dir is None:
            found = shipped_models()
        else:
            d = Path(self.opts.models_dir)
            found = {p.name: p for p in sorted(d.iterdir()) if (p / CARD_NAME).is_file()} if d.is_dir() else {}
        found.update({p.name: p for p in sorted(self.store.iterdir()) if (p / CARD_NAME).is_file()})
        for name, d in found.items():
            try:
                self.models[name] = (load_card(d / CARD_NAME).sha256, d)
            except Exception as e:
                log.warning("%s: model %s ignored: %s", self.id, d, e)

    def codec_for(self, name: str, sha256: str):
        """The opened codec ``name`` with card sha256 ``sha256``; fetched from the controller when
        this node does not hold it (blocks up to ``model_timeout_s``)."""
        from ..zoo import open_codec

        if sha256 in self.codecs:
            return self.codecs[sha256]
        held = self.models.get(name)
        if held is None or held[0] != sha256:
            self._fetch(name, sha256)
            if sha256 in self.codecs:        # opened (and verified) by _install
                return self.codecs[sha256]
        codec = open_codec(str(self.models[name][1]), threads=self.opts.threads, spinning=False)
        if codec.card.sha256 != sha256:
            raise TransferError(f"model {name}: opened model has sha256 {codec.card.sha256[:12]}..., "
                                f"the job asks for {sha256[:12]}...")
        self.codecs[sha256] = codec
        return codec

    def _fetch(self, name: str, sha256: str) -> None:
        tr = _Transfer()
        with self.lock:
            self.transfers[sha256] = tr
        log.info("%s: requesting model %s (%s...) from the controller", self.id, name, sha256[:12])
        self.link.publish(T.node(self.id, "model_request"), M.ModelRequest(self.id, name, sha256),
                          response_topic=T.to(self.id, "model"), correlation=sha256.encode())
        got = tr.done.wait(self.opts.model_timeout_s)
        with self.lock:
            self.transfers.pop(sha256, None)
        if not got:
            raise TransferError(f"model {name} ({sha256[:12]}...): not received within {self.opts.model_timeout_s:g} s")
        if tr.error is not None:
            raise tr.error

    def _on_chunk(self, c: M.ModelChunk, topic, props) -> None:
        with self.lock:
            tr = self.transfers.get(c.sha256)
            if tr is None or tr.complete:     # not asked for, or late/duplicate chunks of a finished one
                return
            if tr.asm is None or tr.asm.archive_sha256 != c.archive_sha256:
                tr.asm = Assembler(c.name, c.archive_sha256, c.count)
            asm = tr.asm
        try:
            archive = asm.add(c)
        except TransferError as e:
            self._transfer_done(c, e)
            return
        if archive is not None:      # unpacking and opening take seconds: not on the network thread
            with self.lock:
                if tr.complete:      # a duplicate last chunk (QoS 1) must not start a second install
                    return
                tr.complete = True
            threading.Thread(target=self._install, args=(c, archive), name=f"install-{c.name}", daemon=True).start()

    def _install(self, c: M.ModelChunk, archive: bytes) -> None:
        try:
            dest = unpack(archive, self.store / c.name)
            from ..zoo import open_codec

            codec = open_codec(str(dest), threads=self.opts.threads, spinning=False)   # checks every graph's sha256
            card_sha = codec.card.sha256
            if card_sha != c.sha256:
                raise TransferError(f"model {c.name}: card sha256 {card_sha[:12]}... is not the announced "
                                    f"{c.sha256[:12]}...")
            self.models[c.name] = (card_sha, dest)
            self.codecs[card_sha] = codec
            log.info("%s: model %s received and verified (%d bytes, %d chunks) -> %s", self.id, c.name,
                     len(archive), c.count, dest)
            self.publish_status()
            self._transfer_done(c, None)
        except Exception as e:
            self._transfer_done(c, e)

    def _transfer_done(self, c: M.ModelChunk, error: Exception | None) -> None:
        if error is not None:
            log.error("%s: model transfer failed: %s", self.id, error)
        with self.lock:
            tr = self.transfers.get(c.sha256)
            if tr is None:
                return
            tr.complete = True
            if tr.error is None:     # the first error is the one reported
                tr.error = error
        tr.done.set()

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
            self.link.publish(T.node(self.id, what), payload)

    def _on_ack(self, ack: M.Ack, topic, props) -> None:
        self.outbox.ack(ack.ids)

    PART_OF_ROLE = {"txrx": "link", "tx": "tx", "rx": "rx"}

    def _on_job(self, msg, topic, props) -> None:
        if isinstance(msg, M.Job):
            if msg.job_id in self.seen_jobs:       # a re-sent assignment: say where it stands
                state = self.final.get(msg.job_id) or ("running" if msg.job_id in self.running else "accepted")
                self._job_state(msg.job_id, state, error="(re-sent assignment)")
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
                self._job_state(msg.job_id, self.final[msg.job_id], error="(already finished)",
                                decision=msg.decision)
                return
            n = _decision_number(msg.decision)
            applied = self.applied.get(msg.job_id, set())
            if applied and n <= max(applied):   # re-sent, or superseded by a newer one applied: confirm only
                self._job_state(msg.job_id, "switched", decision=msg.decision)
                return
            cur = self.updates.get(msg.job_id)
            if cur is None or _decision_number(cur.decision) < n:   # the newest decision wins
                self.updates[msg.job_id] = msg
        elif isinstance(msg, M.JobCancel):
            if msg.job_id in self.final:
                self._job_state(msg.job_id, self.final[msg.job_id], error="(already finished)")
                return
            if msg.job_id not in self.seen_jobs:    # never assigned here (or lost in a restart): it is
                self.seen_jobs.add(msg.job_id)      # cancelled before it starts; a late assignment is refused
                self._job_state(msg.job_id, "cancelled", error=f"(cancelled before it was received: {msg.reason})")
                return
            self.cancelled[msg.job_id] = msg

    def _job_state(self, job_id: str, state: str, images_done: int = 0, error: str = "", decision: str = "") -> None:
        if state in M.FINAL_STATES:
            self.final[job_id] = state
        self.events += 1
        ev = M.JobState(event_id=f"{self.id}:{job_id}:{state}:{self.events}", node_id=self.id, job_id=job_id,
                        state=state, images_done=images_done, error=error, decision=decision)
        payload = M.encode(ev)
        self.outbox.add(ev.event_id, "job_state", payload)
        self.link.publish(T.node(self.id, "job_state"), payload)

    def _report(self, rep: M.QosReport) -> None:
        payload = M.encode(rep)
        self.outbox.add(rep.report_id, "qos", payload)
        self.link.publish(T.node(self.id, "qos"), payload)

    # ---- jobs ----------------------------------------------------------------------------------
    def _images(self, job: M.Job):
        from ..core.images import list_images, load_rgb
        from ..core.paths import samples_dir

        files = []
        for entry in job.images:
            files += list_images(samples_dir() if entry == "samples" else entry)
        if job.max_images:
            files = files[:job.max_images]
        return [(f, load_rgb(f)) for f in files]

    def _channel_snr_for(self, n: int) -> float | None:
        snr = None
        for at, s in self.snr_schedule:
            if n >= at and s == s:
                snr = s
        return snr

    def _fade(self, sess) -> None:
        """Apply the loopback channel's SNR schedule at an image boundary."""
        ch = self._channel_snr_for(self.images_sent)
        if ch is not None and getattr(sess, "channel", None) is not None and ch != getattr(self, "_ch", None):
            sess.set_channel_snr(ch)
            self._ch = ch
            log.info("%s: loopback channel SNR now %.1f dB", self.id, ch)

    def _session(self, part: str, codec, cbr, snr_db, medium: str = ""):
        """The node's flowgraph, built at its first job and kept (switched in place) afterwards."""
        from ..link.session import LinkSession, RxSession, TxSession

        if part == "rx":
            if self.session is not None and getattr(self.session, "medium", None) != medium:
                self.session.close()        # another transmitter: connect to its stream
                self.session = None
            if self.session is None:
                self.session = RxSession(codec, frontend=self.frontend, ofdm=self.radio_cfg.ofdm, medium=medium,
                                         on_image=lambda rec, img: self.decoded.put((rec, img)))
                self.session.medium = medium
            else:
                self.session.add_codec(codec)
            return self.session
        if self.session is None:
            if part == "tx":
                self.session = TxSession(codec, cbr=cbr, snr_db=snr_db, frontend=self.frontend,
                                         ofdm=self.radio_cfg.ofdm, medium=self.medium)
            else:
                self.session = LinkSession(codec, cbr=cbr, snr_db=snr_db, frontend=self.frontend,
                                           ofdm=self.radio_cfg.ofdm)
        else:
            self.session.set_operating_point(codec, cbr, snr_db)
        return self.session

    def run_job(self, job: M.Job) -> None:
        done = 0
        self.running.append(job.job_id)
        try:
            if job.part == "rx":
                done = self._run_rx(job)
            else:
                done = self._run_tx(job)
            if done is not None:
                self._job_state(job.job_id, "done", done)
        except Exception as e:
            log.exception("%s: job %s failed", self.id, job.job_id)
            self._job_state(job.job_id, "failed", done or 0, error=f"{type(e).__name__}: {e}")
        finally:
            self.running.remove(job.job_id)
            self.publish_status()

    def _stopped(self, job: M.Job, done: int) -> bool:
        c = self.cancelled.get(job.job_id)
        if self.stopping.is_set() or (c is not None and c.drain_s <= 0):
            self._job_state(job.job_id, "cancelled", done, error=c.reason if c is not None else "node stopping")
            return True
        return False

    def _run_tx(self, job: M.Job) -> int | None:
        """A whole link (part ``link``: QoS measured here) or the transmitting half (part ``tx``)."""
        images = self._images(job)
        _check_count(job, len(images))
        codec = self.codec_for(job.model, job.model_sha256)
        model, sha, cbr, snr, decision = job.model, job.model_sha256, job.cbr, job.snr_db, job.decision
        sess = self._session(job.part, codec, cbr, snr)
        self._job_state(job.job_id, "running")
        self.publish_status()
        seq = 0
        for _ in range(job.repeat):
            for path, img in images:
                if self._stopped(job, seq):
                    return None
                upd = self.updates.pop(job.job_id, None)
                if upd is not None:          # image boundary: switch here
                    codec = self.codec_for(upd.model, upd.model_sha256)
                    model, sha, cbr, snr, decision = upd.model, upd.model_sha256, upd.cbr, upd.snr_db, upd.decision
                    sess.set_operating_point(codec, cbr, snr)
                    self.applied.setdefault(job.job_id, set()).add(_decision_number(decision))
                    self._job_state(job.job_id, "switched", seq, decision=decision)
                    log.info("%s: job %s now %s at CBR %.4f, encoder SNR %.1f dB (%s)", self.id, job.job_id,
                             model, cbr, snr, upd.decision)
                self._fade(sess)
                common = dict(report_id=f"{self.id}:{job.job_id}:{seq}", node_id=self.id, job_id=job.job_id,
                              intent_id=job.intent_id, link_id=job.link_id, seq=seq, image=path.name, model=model,
                              model_sha256=sha, snr_tx_db=snr, decision=decision, part=job.part)
                if job.part == "tx":
                    info = sess.send(img, image_id=seq, name=path.name)
                    self.images_sent += 1
                    self._report(M.QosReport(**common, cbr=round(float(info["cbr"]), 6), snr_est_db=None,
                                             psnr_db=None, latency_ms=None, frames_sent=info["frames"],
                                             frames_decoded=0, encode_ms=info["encode_ms"], t_sent=info["t_sent"],
                                             ts=time.time()))
                    log.info("%s: %s sent %s (%d frames)", self.id, job.job_id, path.name, info["frames"])
                else:
                    row = sess.send(img, name=path.name)
                    self.images_sent += 1
                    if row["snr_est_db"] is not None:
                        self.last_snr = row["snr_est_db"]
                    self._report(M.QosReport(**common, cbr=round(float(row["cbr"]), 6), snr_est_db=row["snr_est_db"],
                                             psnr_db=row["psnr_db"], latency_ms=row["latency_ms"],
                                             frames_sent=row["frames_sent"], frames_decoded=row["frames_decoded"],
                                             encode_ms=row["encode_ms"], decode_ms=row["decode_ms"], ts=time.time()))
                    log.info("%s: %s %s PSNR %s dB, SNR est %s dB", self.id, job.job_id, path.name,
                             f"{row['psnr_db']:.2f}" if row["psnr_db"] is not None else "-",
                             f"{row['snr_est_db']:.1f}" if row["snr_est_db"] is not None else "-")
                seq += 1
        if job.part == "tx":
            sess.drain()
        return seq

    def _run_rx(self, job: M.Job) -> int | None:
        """The receiving half: decode what arrives, report QoS per image, until the controller
        says the transmitter finished (then drain) or every image was reported."""
        from ..core.metrics import psnr

        images = self._images(job)
        _check_count(job, len(images))
        n_total = len(images) * job.repeat
        codec = self.codec_for(job.model, job.model_sha256)
        names = {sha: name for name, (sha, _) in self.models.items()}
        while not self.decoded.empty():
            self.decoded.get_nowait()
        sess = self._session("rx", codec, job.cbr, job.snr_db, medium=job.medium)
        self._job_state(job.job_id, "running")
        self.publish_status()
        reported: set[int] = set()
        t_cancel = None
        while len(reported) < n_total:
            c = self.cancelled.get(job.job_id)
            if self._stopped(job, len(reported)):
                return None
            if c is not None and c.drain_s > 0:
                t_cancel = t_cancel or time.monotonic()
                quiet = time.monotonic() - max(sess.last_activity, t_cancel)
                if quiet > c.drain_s:
                    sess.flush()
                    if self.decoded.empty():
                        break
            upd = self.updates.pop(job.job_id, None)
            if upd is not None:        # hold the new model before the transmitter switches to it
                sess.add_codec(self.codec_for(upd.model, upd.model_sha256))
                names = {sha: name for name, (sha, _) in self.models.items()}
                self.applied.setdefault(job.job_id, set()).add(_decision_number(upd.decision))
                self._job_state(job.job_id, "switched", len(reported), decision=upd.decision)
            try:
                rec, out = self.decoded.get(timeout=0.1)
            except queue.Empty:
                continue
            seq = int(rec["image_id"])
            if seq in reported or seq >= n_total:
                continue
            path, ref = images[seq % len(images)]
            reported.add(seq)
            snr_est = rec.get("snr_est_db")
            snr_est = float(snr_est) if snr_est is not None and np.isfinite(snr_est) else None
            if snr_est is not None:
                self.last_snr = snr_est
            value = psnr(ref, out) if out.shape == ref.shape else None
            sha = rec.get("model_sha256", "")
            self._report(M.QosReport(
                report_id=f"{self.id}:{job.job_id}:{seq}", node_id=self.id, job_id=job.job_id,
                intent_id=job.intent_id, link_id=job.link_id, seq=seq, image=path.name, model=names.get(sha, ""),
                model_sha256=sha, cbr=0.0, snr_tx_db=job.snr_db, snr_est_db=snr_est, psnr_db=value, latency_ms=None,
                frames_sent=int(rec.get("frames_expected", 0)), frames_decoded=int(rec.get("frames_decoded", 0)),
                decode_ms=rec.get("decode_ms"), part="rx", t_done=time.time(), ts=time.time()))
            log.info("%s: %s received %s PSNR %s dB, SNR est %s dB", self.id, job.job_id, path.name,
                     f"{value:.2f}" if value is not None else "-", f"{snr_est:.1f}" if snr_est is not None else "-")
        return len(reported)

    # ---- main loop -----------------------------------------------------------------------------
    def start(self, wait_s: float | None = 10.0) -> "Node":
        self.link.start(wait_s)
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
            if self.link.connected.is_set():
                try:
                    self._resend(self.opts.resend_s)
                except Exception:
                    log.exception("%s: re-send failed", self.id)

    def stop(self) -> None:
        self.stopping.set()
        self.jobs.put(None)
        if getattr(self, "worker", None):
            self.worker.join(30)
        try:
            self.link.publish(T.node(self.id, "status"), self._status(online=False), retain=True).wait_for_publish(2)
        except Exception:
            pass
        self.link.stop()
        if self.session is not None:
            self.session.close()
        self.outbox.close()


def _decision_number(decision: str) -> int:
    """Decision ids are ``d<n>``, increasing: a later decision has a larger number."""
    try:
        return int(decision.lstrip("d"))
    except ValueError:
        return -1


def _check_count(job: M.Job, n_images: int) -> None:
    if n_images * job.repeat > 0x10000:
        raise ValueError(f"job {job.job_id}: {n_images} images x repeat {job.repeat} exceeds the 65536 image ids "
                         f"of one job (16-bit header field); split the intent")
