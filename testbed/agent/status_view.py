"""The controller's status (``controller/status``, ``testbed status``) and its ``summary.json``.

:class:`StatusView` is a part of :class:`~testbed.agent.controller.Controller`: it reads the
state of the intent planner, the job tracker and the QoS store under the controller's lock.
"""
from __future__ import annotations

import time

import numpy as np

from ..core.configfile import to_mapping
from ..core.runlog import write_json_atomic
from . import messages as M


class StatusView:
    def status(self, finished_links: int | None = 50) -> M.ControllerStatus:
        """Nodes, intents and links: the active links and the ``finished_links`` most recent
        finished ones (None: all), and the intents of those links and the queued ones. The
        lock is held only to pick them (built from the indexes of live links and queued
        intents); the rows are built after, so that handlers never wait for a large status."""
        with self.lock:
            if len(self._node_order) != len(self.nodes):
                self._node_order = sorted(self.nodes)
            nodes = [(n, self.nodes[n]) for n in self._node_order]
            if finished_links is None:
                lps = list(self.links.values())
                its = list(self.intents.items())
            else:                         # the recent finished ones, oldest first, then the live ones
                live = self._live_links()
                ids = {lp.link_id for lp in live}
                recent = []
                for lp in reversed(self.links.values()):
                    if len(recent) >= finished_links:
                        break
                    if lp.link_id not in ids and lp.status in ("done", "failed", "cancelled"):
                        recent.append(lp)
                lps = recent[::-1] + live
                shown = {lp.intent.intent_id for lp in lps} | {it["intent"].intent_id for it in self._queued()}
                its = sorted(((k, self.intents[k]) for k in shown if k in self.intents), key=lambda kv: kv[1]["order"])
            reports, rejected = len(self.qos.seen), self.rejected
        return M.ControllerStatus(
            nodes=[{"node_id": n, "online": s.online, "role": s.role, "radio": s.radio, "models": list(s.models),
                    "jobs": list(s.jobs), "snr_db": s.snr_db} for n, s in nodes],
            links=[{"link_id": lp.link_id, "intent_id": lp.intent.intent_id, "node": lp.node, "status": lp.status,
                    "model": lp.op.model, "cbr": lp.op.cbr, "decision": lp.decision, "snr_db": lp.state.snr_db,
                    "reports": lp.reports, "met": lp.met, "psnr_target_db": lp.intent.qos.psnr_db,
                    "content_offset_db": round(lp.state.offset_db, 2)} for lp in lps],
            intents=[{"intent_id": k, "state": v["state"], "links": list(v["links"]),
                      "priority": v["intent"].priority} for k, v in its],
            reports=reports, rejected=rejected, ts=time.time())

    @property
    def rejected(self) -> int:
        """Messages rejected (schema, authorisation or consistency), on both connections."""
        return self.link.rejected + self.olink.rejected + self.tlink.rejected + self.qos_rejected

    def _write_summary(self) -> float:
        """summary.json: every node, link and intent, and the intent timings; returns the
        seconds it took (the periodic summary waits 50 times that, so that a controller with
        many links does not spend its time on it)."""
        t0 = time.perf_counter()
        s = to_mapping(self.status(finished_links=None))
        for key, v in (("intent_handling_ms", self.intent_ms), ("intent_to_reply_ms", self.intent_reply_ms)):
            if v:
                v = np.asarray(v)
                s[key] = {"n": len(v), "p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99)),
                          "max": float(v.max())}
        write_json_atomic(self.out / "summary.json", s)
        return time.perf_counter() - t0

