"""Intents and links, controller side: the intent queue, which nodes carry an intent's links,
and the operating point (model, CBR, encoder SNR) of each link, chosen and re-chosen by the
:class:`~testbed.agent.policy.Policy` from the QoS the link reports.

:class:`IntentPlanner` is a part of :class:`~testbed.agent.controller.Controller`: its state
lives on the controller and is guarded by the controller's lock; it sends jobs and updates through
the controller's :class:`~testbed.agent.jobs.JobTracker` and records decisions in its log.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from . import messages as M
from .policy import Choice, LinkState, OperatingPoint

log = logging.getLogger(__name__)


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
    images_done: dict = field(default_factory=dict)   # "tx" / "rx" -> images a finished end reported done

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

    def end_status(self, is_rx: bool) -> str:
        """The state of the receiving end (``is_rx``) or of the transmitting end (or whole link)."""
        return self.rx_status if is_rx else self.tx_status

    def set_end_status(self, is_rx: bool, state: str) -> None:
        if is_rx:
            self.rx_status = state
        else:
            self.tx_status = state


def load_intent(path: str) -> M.Intent:
    """An intent from a YAML or JSON file; errors name the file and key."""
    from ..core.configfile import from_mapping, load_yaml

    return from_mapping(M.Intent, load_yaml(path, "intent file"), str(path))


def _hint(snr_db: float, op: OperatingPoint) -> float:
    """The SNR the encoder is told: the measured one, within the range the model was trained for."""
    return round(float(min(max(snr_db, op.snr_db[0]), op.snr_db[-1])), 2)


class IntentPlanner:
    def _init_intents(self) -> None:
        self.intents: dict[str, dict] = {}
        self.links: dict[str, LinkPlan] = {}
        self.job_index: dict[str, str] = {}                          # job id -> link id
        # indexes, so that planning costs the same after 100 000 intents as after 10; both are
        # pruned lazily, which is safe because a final state is never left
        self.live: dict[str, LinkPlan] = {}     # links that may still occupy a node
        self.node_links: dict[str, list[LinkPlan]] = {}    # node -> its links that may still occupy it
        self.queued: dict[str, dict] = {}       # intents that may still be queued
        self._saved: dict[tuple, tuple] = {}    # ("link"|"intent", id) -> what its last journal record held
        self._node_order: list[str] = []        # node ids, sorted (nodes are never forgotten)

    def known_models(self) -> list[str]:
        """The model folders this controller serves and the built-in codecs every node has."""
        from ..zoo import builtin_codecs

        return sorted(set(self.model_dirs) | set(builtin_codecs()))

    @staticmethod
    def _takes_mcs(model: str) -> bool:
        from ..zoo import builtin_codecs, open_codec

        return model in builtin_codecs() and "mcs" in getattr(open_codec(model), "OPTIONS", ())

    def submit(self, intent: M.Intent) -> M.IntentReply:
        """Plan an intent now if its nodes are free, else queue it (by priority, then arrival);
        refuse it if the online nodes could never carry it."""
        with self.lock:
            if intent.intent_id in self.intents:
                it = self.intents[intent.intent_id]
                return M.IntentReply(intent.intent_id, True, f"already accepted ({it['state']})", list(it["links"]))
            known = self.known_models()
            unknown = [m for m in intent.models if m not in known]
            if unknown:
                return self._refuse(intent, f"unknown model(s) {', '.join(unknown)}; this controller has "
                                            f"{', '.join(known)}")
            if intent.mcs and not (intent.models and all(self._takes_mcs(m) for m in intent.models)):
                return self._refuse(intent, f"mcs {intent.mcs}: needs models that are all digital codecs "
                                            f"(jpeg2000-ldpc, jpeg-ldpc), got {', '.join(intent.models) or 'any'}")
            if not [o for o in self.policy.catalogue if not intent.models or o.model in intent.models]:
                return self._refuse(intent, f"model(s) {', '.join(intent.models)} have no evaluated operating points "
                                            f"in their cards (testbed eval --record-in-card)")
            possible = len(self._ends(intent, busy=lambda n: False, need=intent.links))
            if possible < intent.links:
                where = f", restricted to {','.join(intent.nodes)}" if intent.nodes else ""
                return self._refuse(intent, f"{intent.links} link(s) wanted, the online nodes can carry {possible} "
                                            f"(txrx nodes or tx/rx pairs{where})")
            it = self.intents[intent.intent_id] = {"intent": intent, "links": [], "state": "queued",
                                                   "accepted_at": time.time(), "order": self.decisions.number()}
            self.queued[intent.intent_id] = it
            self._save_intent(intent.intent_id)     # on disk before the operator hears "accepted"
            self._serve_queue()
            if it["state"] == "queued":
                ahead = len(self._queued()) - 1
                why = f"queued: its nodes are busy ({ahead} other intent(s) queued)"
                self._decide(intent.intent_id, "", "queue", why, priority=intent.priority)
                return M.IntentReply(intent.intent_id, True, why, [])
            return M.IntentReply(intent.intent_id, True, it["reason"], list(it["links"]))

    def cancel(self, c: M.IntentCancel) -> M.IntentReply:
        """Stop an intent: a queued one is dropped, a running one's unfinished jobs are cancelled
        (its state becomes ``cancelled`` once every link end has stopped)."""
        with self.lock:
            it = self.intents.get(c.intent_id)
            if it is None:
                return M.IntentReply(c.intent_id, False, "no such intent")
            if it["state"] in ("done", "failed", "cancelled"):
                return M.IntentReply(c.intent_id, False, f"already {it['state']}", list(it["links"]))
            it["cancel"] = reason = c.reason or "cancelled by the operator"
            self._decide(c.intent_id, "", "cancel", reason)
            if it["state"] == "queued":
                it["state"] = "cancelled"
                self._save_intent(c.intent_id)
                self.dirty = True
                return M.IntentReply(c.intent_id, True, "cancelled (it was queued)", [])
            self._save_intent(c.intent_id)
            for lid in it["links"]:
                self._cancel_link(self.links[lid], reason)
            self._update_intent(c.intent_id)
            self._serve_queue()
            self.dirty = True
            return M.IntentReply(c.intent_id, True, f"cancelling {len(it['links'])} link(s)", list(it["links"]))

    # ---- the journal (intents.jsonl) -------------------------------------------------------------
    def _save_intent(self, intent_id: str) -> None:
        """Journal the intent, unless its record would repeat the last one."""
        from .intent_journal import intent_record

        it = self.intents[intent_id]
        key = (it["state"], tuple(it["links"]), it.get("reason", ""), it.get("cancel", ""))
        if self._saved.get(("intent", intent_id)) != key:
            self.journal.write(intent_record(it))
            self._saved[("intent", intent_id)] = key

    def _save_link(self, lp: LinkPlan) -> None:
        """Journal the link, unless nothing its record holds changed since it was last written
        (most job states, e.g. ``accepted``, change nothing: the record is not even built)."""
        from .intent_journal import link_record

        key = (lp.tx_status, lp.rx_status, lp.tx_hold is None, tuple(sorted(lp.images_done.items())), lp.decision,
               len(lp.ops_by_decision), tuple((n, j.decision) for n, j in lp.sent_jobs.items()))
        if self._saved.get(("link", lp.link_id)) != key:
            self.journal.write(link_record(lp))
            self._saved[("link", lp.link_id)] = key

    def _restore(self) -> None:
        """Intents and links of an earlier run in this folder: queued ones wait for nodes again,
        unfinished link ends get their jobs re-sent until their nodes say where they stand
        (a node still running one answers 'running'; one that finished it, its final state)."""
        intents, links = self.journal.restore()
        self.intents.update(intents)
        self.links.update(links)
        for lp in links.values():
            self._track(lp)
        self.queued.update((k, it) for k, it in intents.items() if it["state"] == "queued")
        for lp in links.values():
            self.job_index[lp.job_id] = lp.link_id
            if lp.rx_job:
                self.job_index[lp.rx_job] = lp.link_id
            if lp.tx_status not in M.FINAL_STATES and lp.tx_hold is None:
                self.pending[lp.job_id] = (lp.node, lp.sent_jobs[lp.node], 0.0)
                self._job_keys[lp.job_id] = {lp.job_id}
            if lp.rx_job and lp.rx_status not in M.FINAL_STATES:
                self.pending[lp.rx_job] = (lp.rx_node, lp.sent_jobs[lp.rx_node], 0.0)
                self._job_keys[lp.rx_job] = {lp.rx_job}
            lp.reports, lp.met = self.qos.link_counts.get(lp.link_id, (0, 0))
        for intent_id in intents:
            self._update_intent(intent_id)
        if intents:
            n = {s: sum(v["state"] == s for v in intents.values()) for s in ("queued", "running")}
            log.info("controller: resumed %d intent(s) from %s (%d queued, %d running, %d link(s))", len(intents),
                     self.journal.path, n["queued"], n["running"], len(links))

    def _refuse(self, intent: M.Intent, why: str) -> M.IntentReply:
        self._decide(intent.intent_id, "", "reject", why)
        return M.IntentReply(intent.intent_id, False, why, [])

    def _live_links(self) -> list[LinkPlan]:
        """The links with an end still on a node (finished ones leave :attr:`live` here)."""
        for k in [k for k, lp in self.live.items() if not lp.busy_nodes()]:
            del self.live[k]
        return list(self.live.values())

    def _queued(self) -> list[dict]:
        """The queued intents (planned or cancelled ones leave :attr:`queued` here)."""
        for k in [k for k, it in self.queued.items() if it["state"] != "queued"]:
            del self.queued[k]
        return list(self.queued.values())

    def _track(self, lp: LinkPlan) -> None:
        """Index a planned (or restored) link under its nodes, while it occupies any."""
        if lp.busy_nodes():
            self.live[lp.link_id] = lp
            for n in {lp.node, lp.rx_node or lp.node}:
                self.node_links.setdefault(n, []).append(lp)

    def _links_on(self, node: str) -> list[LinkPlan]:
        """The links with an unfinished end on ``node``."""
        lps = self.node_links.get(node)
        if not lps:
            return []
        lps[:] = [lp for lp in lps if node in lp.busy_nodes()]
        return list(lps)

    def _node_busy(self, node: str) -> bool:
        return bool(self._links_on(node))

    def _busy(self) -> set:
        """Every node with an unfinished link end."""
        return {n for lp in self._live_links() for n in lp.busy_nodes()}

    def _ends(self, intent: M.Intent, busy, need: int | None = None) -> list[tuple[str, str]]:
        """Link ends available to ``intent``: (txrx node, "") or (tx node, rx node); ``busy(node)``
        says whether a node is taken. With ``need``, the search may stop once the first ``need``
        ends are certain (txrx nodes come first)."""
        if len(self._node_order) != len(self.nodes):
            self._node_order = sorted(self.nodes)
        names = sorted(n for n in set(intent.nodes) if n in self.nodes) if intent.nodes else self._node_order
        txrx, txs, rxs = [], [], []
        for n in names:
            st = self.nodes[n]
            if not st.online or busy(n):
                continue
            {"txrx": txrx, "tx": txs, "rx": rxs}.get(st.role, []).append(n)
            if need is not None and len(txrx) >= need:
                break
        pairs = []
        for t in txs:
            loop = self.nodes[t].radio == "loopback"     # a loopback transmitter streams to a loopback receiver
            r = next((r for r in rxs if (self.nodes[r].radio == "loopback") == loop), None)
            if r is not None:
                rxs.remove(r)
                pairs.append((t, r))
        return [(n, "") for n in txrx] + pairs

    def _serve_queue(self) -> None:
        """Plan queued intents, highest priority first, then in arrival order; an intent that does
        not fit yet holds back the ones behind it (no starvation of large intents)."""
        queued = sorted(self._queued(), key=lambda v: (-v["intent"].priority, v["order"]))
        taken: set = set()                 # nodes given to intents planned in this call

        def busy(n):
            return n in taken or self._node_busy(n)
        for it in queued:
            intent = it["intent"]
            ends = self._ends(intent, busy, need=intent.links)
            if len(ends) < intent.links:
                return
            try:
                it["links"] = self._plan(intent, ends[:intent.links])
            except Exception as e:      # never leave a queue head that fails forever
                log.exception("controller: planning intent %s failed", intent.intent_id)
                it["state"] = "failed"
                it["reason"] = f"planning failed: {type(e).__name__}: {e}"
                self._decide(intent.intent_id, "", "reject", it["reason"])
                self._save_intent(intent.intent_id)
                continue
            it["state"] = "running"
            used = [f"{n}->{r}" if r else n for n, r in ends[:intent.links]]
            taken.update(n for e in ends[:intent.links] for n in e if n)
            it["reason"] = f"assigned to {', '.join(used)}"
            self._save_intent(intent.intent_id)
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
                                    latency_target=intent.qos.latency_ms, models=intent.models or None, state=st,
                                    mcs=intent.mcs)
            reason = ch.reason + (f" (no SNR measured yet at {rx or node}: assuming {snr:g} dB)" if assumed else "")
            did = self._decide(intent.intent_id, link_id, "assign", reason, ch.op.model, ch.op.cbr, node=node,
                               rx_node=rx or node, snr_db=snr, predicted_psnr_db=round(ch.predicted_db, 2),
                               feasible=ch.feasible, priority=intent.priority)
            base = dict(intent_id=intent.intent_id, link_id=link_id, model=ch.op.model, model_sha256=ch.op.sha256,
                        cbr=ch.op.cbr, snr_db=_hint(snr, ch.op), images=list(intent.images),
                        max_images=intent.max_images, repeat=intent.repeat, decision=did, mcs=intent.mcs)
            medium = self.nodes[node].medium
            job = M.Job(job_id=f"{link_id}.j" if not rx else f"{link_id}.tx", part="tx" if rx else "link",
                        peer=rx, medium=medium, **base)
            lp = LinkPlan(link_id, intent, node, job.job_id, ch.op, snr, did, st, {did: ch.op})
            self.links[link_id] = lp
            self.job_index[job.job_id] = link_id
            links.append(link_id)
            if rx:
                lp.rx_node = rx
            self._track(lp)
            if rx:     # the receiver first; the transmitter once the receiver runs (nothing sent into the void)
                rjob = M.Job(job_id=f"{link_id}.rx", part="rx", peer=node, medium=medium, **base)
                lp.rx_node, lp.rx_job, lp.tx_hold = rx, rjob.job_id, job
                lp.sent_jobs = {node: job, rx: rjob}
                self.job_index[rjob.job_id] = link_id
                self._save_link(lp)         # journalled before any job goes out
                self._send(rx, rjob)
            else:
                lp.sent_jobs = {node: job}
                self._save_link(lp)
                self._send(node, job)
        return links

    def _update_intent(self, intent_id: str) -> None:
        it = self.intents.get(intent_id)
        if it is None or it["state"] != "running":
            return
        states = [self.links[lid].status for lid in it["links"] if lid in self.links]
        if all(s in ("done", "failed", "cancelled") for s in states):
            it["state"] = "cancelled" if it.get("cancel") else ("done" if all(s == "done" for s in states) else "failed")
            self._save_intent(intent_id)
            self.dirty = True

    def _observe(self, lp: LinkPlan, met: int | None, r: M.QosReport) -> None:
        """Count a QoS row of ``lp``, let the policy learn from it and re-plan if it says so."""
        lp.reports += 1
        lp.met += met or 0
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

    def _replan(self, lp: LinkPlan, why: str) -> None:
        it = lp.intent
        st = lp.state
        snr = st.snr_db if st.snr_db is not None else lp.snr_plan
        ch: Choice = self.policy.choose(snr, psnr_target=it.qos.psnr_db, cbr_max=it.cbr_max,
                                        latency_target=it.qos.latency_ms, models=it.models or None, state=st,
                                        mcs=it.mcs)
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
        self._save_link(lp)
        self._send_update(lp, M.JobUpdate(job_id=lp.job_id, model=ch.op.model, model_sha256=ch.op.sha256,
                                          cbr=ch.op.cbr, snr_db=_hint(snr, ch.op), decision=did, mcs=it.mcs))
