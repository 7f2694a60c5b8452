"""Jobs on the nodes, controller side: jobs, updates and cancels re-sent until the node confirms
them, the job states the nodes report, the two ends of a link split over two nodes, and nodes
that go offline (given up on after the grace period).

:class:`JobTracker` is a part of :class:`~testbed.agent.controller.Controller`: its state lives on
the controller and is guarded by the controller's lock.
"""
from __future__ import annotations

import dataclasses
import logging
import time

from . import messages as M
from . import topics as T
from .intents import LinkPlan

log = logging.getLogger(__name__)


class JobTracker:
    def _init_jobs(self) -> None:
        self.nodes: dict[str, M.NodeStatus] = {}
        self.pending: dict[str, tuple[str, object, float]] = {}    # key -> (node, message, last sent)
        self.seen_events: set[str] = set()
        self.offline_since: dict[str, float] = {}                  # node -> when it went offline
        self._job_keys: dict[str, set] = {}         # job id -> its keys in pending (some maybe gone)
        self.joining: dict[str, LinkPlan] = {}     # split links whose receiver finished: last halves due

    # ---- delivery ------------------------------------------------------------------------------
    def _publish_job(self, node: str, msg) -> None:
        """Published (on the controller's ops connection, with the intents) once the journal
        records that led to it are in their file: at once, before their fsync (see
        :class:`~testbed.agent.journal.GroupCommit`)."""
        topic, payload = T.to(node, "job"), M.encode(msg)
        self.durable.when_written(lambda: self.olink.publish(topic, payload))

    def _send(self, node: str, msg, key: str | None = None) -> None:
        """Publish to a node's job topic and re-send until the node confirms (a job state for a
        job, 'switched' for an update, a final state for a cancel): the broker keeps nothing for
        a node that is reconnecting."""
        with self.lock:
            self.pending[key or msg.job_id] = (node, msg, time.monotonic())
            self._job_keys.setdefault(msg.job_id, set()).add(key or msg.job_id)
        self._publish_job(node, msg)

    def _resend_pending(self, node: str | None = None) -> None:
        """Publish every unconfirmed message again (to ``node`` only, if given)."""
        for to, msg, _ in list(self.pending.values()):
            if node is None or to == node:
                self._publish_job(to, msg)

    def _resend_due(self, now: float) -> None:
        """Re-send what a node online has not confirmed within ``resend_s``."""
        for key, (node, msg, t) in list(self.pending.items()):
            st = self.nodes.get(node)
            if st is not None and not st.online:
                continue             # re-sent when it is back online (see _node_status)
            if now - t > self.opts.resend_s:
                self.pending[key] = (node, msg, now)
                self._publish_job(node, msg)

    def _pending_keys(self, job_id: str, kinds=("", "#cancel", "#update")) -> list[str]:
        """The keys in :attr:`pending` of a job's assignment (""), cancel and updates, from the
        job's key index (no scan of everything pending; keys removed since are skipped)."""
        keys = self._job_keys.get(job_id)
        if not keys:
            return []
        keys.intersection_update(self.pending)
        return [k for k in keys if (k == job_id and "" in kinds) or
                ("#" in k and k[len(job_id):].split(":", 1)[0] in kinds)]

    def _drop_pending(self, job_id: str) -> None:
        """The job reached a final state: stop re-sending its assignment, updates and cancel."""
        for key in self._pending_keys(job_id):
            del self.pending[key]
        self._job_keys.pop(job_id, None)

    def _send_update(self, lp: LinkPlan, upd: M.JobUpdate) -> None:
        """Whole link: to its node. Split link: to the receiver first; the transmitter gets it when
        the receiver reports it holds the model ('switched'), so no image is sent in a model the
        receiver cannot decode."""
        for job_id in {lp.job_id, lp.rx_job or lp.job_id}:
            for key in self._pending_keys(job_id, kinds=("#update",)):
                del self.pending[key]   # superseded: a node must not get an older decision after this one
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
        if lp.end_status(bool(lp.rx_job) and node == lp.rx_node) in M.FINAL_STATES:
            return                      # that end has finished: nothing would ever confirm it
        job = lp.sent_jobs.get(node)
        if job is not None:
            lp.sent_jobs[node] = dataclasses.replace(job, model=upd.model, model_sha256=upd.model_sha256,
                                                     cbr=upd.cbr, snr_db=upd.snr_db, decision=upd.decision)
        self._send(node, upd, key=f"{upd.job_id}#update:{upd.decision}")

    # ---- nodes ---------------------------------------------------------------------------------
    def _node_status(self, st: M.NodeStatus) -> None:
        """A node's (retained) status: online again (it gets what it may have missed), or its last will."""
        with self.lock:
            was = self.nodes.get(st.node_id)
            self.nodes[st.node_id] = st
            self.dirty = True
            if st.online:
                self.offline_since.pop(st.node_id, None)     # back within the grace period: carries on
            for job_id in st.jobs:
                if job_id not in self.job_index:
                    self._cancel_orphan(st.node_id, job_id)
            if st.online and (was is None or not was.online):
                log.info("controller: node %s online (%s, %s, models %s)", st.node_id, st.role, st.radio,
                         ", ".join(st.models))
                self._resend_pending(st.node_id)        # messages it may have missed
                for lp in self._links_on(st.node_id):     # its unfinished jobs (a restarted node re-runs them;
                    if st.node_id in lp.busy_nodes() and lp.tx_hold is None:   # reports are de-duplicated)
                        job = lp.sent_jobs.get(st.node_id)     # as it stands after the updates sent since
                        if job is not None and job.job_id not in st.jobs:
                            self._publish_job(st.node_id, job)
                self._serve_queue()
            elif not st.online and was is not None and was.online:
                busy = self._node_busy(st.node_id)
                log.warning("controller: node %s went offline%s", st.node_id,
                            f"; its job(s) fail unless it is back within {self.opts.offline_grace_s:g} s"
                            if busy else "")
                self.offline_since[st.node_id] = time.monotonic()

    def _cancel_orphan(self, node: str, job_id: str) -> None:
        """A node runs a job this controller never planned: sent before its journal line reached
        the disk and lost with it in a crash of the machine (or planned by a controller with
        another run folder). Cancelled, so that it frees the node; never adopted."""
        key = f"{job_id}#cancel"
        if key not in self.pending:
            log.warning("controller: node %s runs job %s, which is not in %s; cancelling it", node, job_id,
                        self.journal.path)
            self._send(node, M.JobCancel(job_id, "not in the controller's journal"), key=key)

    def _check_offline(self, now: float) -> None:
        """Give up on the nodes offline for longer than the grace period."""
        for node, since in list(self.offline_since.items()):
            if now - since > self.opts.offline_grace_s:
                del self.offline_since[node]
                st = self.nodes.get(node)
                if st is not None and not st.online:
                    self._give_up_on(node, now - since)

    def _give_up_on(self, node: str, offline_s: float) -> None:
        """``node`` stayed offline past the grace period: its unfinished link ends fail, the peer
        of a split link is cancelled, the intents fail. Should it come back, it is told to cancel."""
        for lp in self._links_on(node):
            if node not in lp.busy_nodes():
                continue
            reason = f"node {node} offline for {offline_s:.0f} s (grace {self.opts.offline_grace_s:g} s)"
            for is_rx in ([False] if lp.node == node else []) + ([True] if lp.rx_job and lp.rx_node == node else []):
                job_id = lp.rx_job if is_rx else lp.job_id
                if lp.end_status(is_rx) in M.FINAL_STATES:
                    continue
                self._drop_pending(job_id)
                if not is_rx and lp.tx_hold is not None:     # never sent: nothing to cancel on the node
                    lp.tx_hold = None
                else:
                    self._send(node, M.JobCancel(job_id, reason), key=f"{job_id}#cancel")   # delivered if it returns
                lp.set_end_status(is_rx, "failed")
                lp.pending_tx.clear()
                self._decide(lp.intent.intent_id, lp.link_id, "fail", f"{reason}: job {job_id} given up",
                             node=node, job_id=job_id)
                self._end_finished(lp, is_rx, "failed", node, reason)
            self._save_link(lp)
            self._update_intent(lp.intent.intent_id)
        self.dirty = True
        self._serve_queue()

    # ---- job states ----------------------------------------------------------------------------
    def _job_state(self, js: M.JobState) -> str | None:
        """A job state a node reported (already acknowledged); returns why it is rejected, if it is."""
        with self.lock:
            if js.event_id in self.seen_events:      # re-sent after a lost ack
                return None
            self.seen_events.add(js.event_id)
            p = self.pending.get(js.job_id)
            if p is not None and p[0] == js.node_id:
                del self.pending[js.job_id]          # the node has its assignment
            lp = self.links.get(self.job_index.get(js.job_id, ""))
            if lp is None:
                if js.state in M.FINAL_STATES:
                    self._drop_pending(js.job_id)        # an orphan's cancel, confirmed
                else:
                    self._cancel_orphan(js.node_id, js.job_id)
                return None
            is_rx = js.job_id == lp.rx_job
            if js.node_id != (lp.rx_node if is_rx else lp.node):
                return f"job state for {js.job_id} from {js.node_id}, which does not run it"
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
            cur = lp.end_status(is_rx)
            if js.state in ("running",) + M.FINAL_STATES and cur not in M.FINAL_STATES:   # never out of a final state
                lp.set_end_status(is_rx, js.state)
                if js.state in M.FINAL_STATES:
                    lp.images_done["rx" if is_rx else "tx"] = js.images_done
                    self._end_finished(lp, is_rx, js.state, js.node_id, js.error)
            self._save_link(lp)
            self._update_intent(lp.intent.intent_id)
            if lp.status in M.FINAL_STATES or js.state in M.FINAL_STATES:
                self._serve_queue()          # nodes are free again
            self.dirty = True
        return None

    def _cancel_link(self, lp: LinkPlan, reason: str) -> None:
        """Cancel the unfinished ends of ``lp`` (a split link's transmitter job not sent yet is
        withdrawn); the nodes confirm with their final state."""
        if lp.tx_hold is not None and lp.tx_status not in M.FINAL_STATES:
            lp.tx_hold, lp.tx_status = None, "cancelled"
        for is_rx in (False, True) if lp.rx_job else (False,):
            job_id, node = (lp.rx_job, lp.rx_node) if is_rx else (lp.job_id, lp.node)
            if lp.end_status(is_rx) not in M.FINAL_STATES:
                self._send(node, M.JobCancel(job_id, reason), key=f"{job_id}#cancel")
        lp.pending_tx.clear()
        self._save_link(lp)

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
            self.joining[lp.link_id] = lp
