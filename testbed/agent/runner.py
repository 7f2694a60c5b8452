"""Jobs on a node: its flowgraph and the images of its jobs.

* One flowgraph (:class:`testbed.link.session.LinkSession`, or ``TxSession`` / ``RxSession`` for
  the two ends of a split link) stays up for the node's lifetime; a job update switches model/CBR
  at the next image boundary without restarting it.
* A whole link or a transmitter reports QoS per image it sends; a receiver per image it decodes.
* On the loopback channel, ``--channel-snr 20,5@30`` makes the channel fade at an image boundary.

:class:`JobRunner` is a part of :class:`~testbed.agent.node.Node`: its state lives on the node.
"""
from __future__ import annotations

import logging
import queue
import time

import numpy as np

from . import messages as M

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


def _fmt(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else "-"


class JobRunner:
    def _images(self, job: M.Job):
        """The job's images, loaded; refused if they exceed the image ids of one job."""
        from ..core.images import list_images, load_rgb
        from ..core.paths import samples_dir

        files = []
        for entry in job.images:
            files += list_images(samples_dir() if entry == "samples" else entry)
        if job.max_images:
            files = files[:job.max_images]
        images = [(f, load_rgb(f)) for f in files]
        if len(images) * job.repeat > 0x10000:
            raise ValueError(f"job {job.job_id}: {len(images)} images x repeat {job.repeat} exceeds the 65536 image "
                             f"ids of one job (16-bit header field); split the intent")
        return images

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

    def _session(self, part: str, codec, cbr, snr_db, medium: str = "", mcs: str | None = None):
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
                                         ofdm=self.radio_cfg.ofdm, medium=self.medium, mcs=mcs)
            else:
                self.session = LinkSession(codec, cbr=cbr, snr_db=snr_db, frontend=self.frontend,
                                           ofdm=self.radio_cfg.ofdm, mcs=mcs)
        else:
            self.session.set_operating_point(codec, cbr, snr_db, mcs)
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

    def _started(self, job: M.Job) -> None:
        self._job_state(job.job_id, "running")
        self.publish_status()

    def _switched(self, job: M.Job, upd: M.JobUpdate, done: int) -> None:
        """An update took effect (or, on a receiver, its model is held) after ``done`` images."""
        self.applied.setdefault(job.job_id, set()).add(M.decision_number(upd.decision))
        self._job_state(job.job_id, "switched", done, decision=upd.decision)

    def _run_tx(self, job: M.Job) -> int | None:
        """A whole link (part ``link``: QoS measured here) or the transmitting half (part ``tx``)."""
        images = self._images(job)
        codec = self.receiver.codec_for(job.model, job.model_sha256)
        model, sha, cbr, snr, decision = job.model, job.model_sha256, job.cbr, job.snr_db, job.decision
        sess = self._session(job.part, codec, cbr, snr, mcs=job.mcs or None)
        self._started(job)
        seq = 0
        for _ in range(job.repeat):
            for path, img in images:
                if self._stopped(job, seq):
                    return None
                upd = self.updates.pop(job.job_id, None)
                if upd is not None:          # image boundary: switch here
                    codec = self.receiver.codec_for(upd.model, upd.model_sha256)
                    model, sha, cbr, snr, decision = upd.model, upd.model_sha256, upd.cbr, upd.snr_db, upd.decision
                    sess.set_operating_point(codec, cbr, snr, upd.mcs or None)
                    self._switched(job, upd, seq)
                    log.info("%s: job %s now %s at CBR %.4f, encoder SNR %.1f dB (%s)", self.id, job.job_id,
                             model, cbr, snr, upd.decision)
                self._fade(sess)
                common = dict(report_id=M.report_id(self.id, job.job_id, seq), node_id=self.id, job_id=job.job_id,
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
                             _fmt(row["psnr_db"], ".2f"), _fmt(row["snr_est_db"], ".1f"))
                seq += 1
        if job.part == "tx":
            sess.drain()
        return seq

    def _run_rx(self, job: M.Job) -> int | None:
        """The receiving half: decode what arrives, report QoS per image, until the controller
        says the transmitter finished (then drain) or every image was reported."""
        from ..core.metrics import psnr

        images = self._images(job)
        n_total = len(images) * job.repeat
        codec = self.receiver.codec_for(job.model, job.model_sha256)
        while not self.decoded.empty():
            self.decoded.get_nowait()
        sess = self._session("rx", codec, job.cbr, job.snr_db, medium=job.medium)
        self._started(job)
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
                sess.add_codec(self.receiver.codec_for(upd.model, upd.model_sha256))
                self._switched(job, upd, len(reported))
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
                report_id=M.report_id(self.id, job.job_id, seq), node_id=self.id, job_id=job.job_id,
                intent_id=job.intent_id, link_id=job.link_id, seq=seq, image=path.name,
                model=self.receiver.name_of(sha), model_sha256=sha, cbr=0.0, snr_tx_db=job.snr_db,
                snr_est_db=snr_est, psnr_db=value, latency_ms=None, frames_sent=int(rec.get("frames_expected", 0)),
                frames_decoded=int(rec.get("frames_decoded", 0)), decode_ms=rec.get("decode_ms"), part="rx",
                t_done=time.time(), ts=time.time()))
            log.info("%s: %s received %s PSNR %s dB, SNR est %s dB", self.id, job.job_id, path.name,
                     _fmt(value, ".2f"), _fmt(snr_est, ".1f"))
        return len(reported)
