"""The controller's intent journal: every accepted intent and every link it planned, as fsync'ed
JSON lines in ``intents.jsonl`` of the run folder, so that a controller restarted with the same
``--out`` resumes them (:meth:`IntentJournal.restore`).

Records (the last one of an id wins):

* ``{"e": "intent", ...}``: the intent, its state (queued, running, done, failed, cancelled),
  its links, its queue order, why; written before the operator is told "accepted";
* ``{"e": "link", ...}``: a link's plan and the state of each end: the node(s), the jobs as sent
  (with the updates applied), the operating point of every decision it used, whether a split
  link's transmitter job was sent, the end states, and the images a finished end reported done;
  written before a job goes out and after every change.

A torn last line (a kill mid-write) is skipped and cut off (:mod:`testbed.agent.journal`).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
from pathlib import Path

from ..core.configfile import ConfigError, from_mapping, to_mapping
from . import messages as M
from .intents import LinkPlan
from .journal import GroupCommit, append_lines, open_append, read_lines
from .policy import OperatingPoint

log = logging.getLogger(__name__)

JOURNAL = "intents.jsonl"


@functools.lru_cache(maxsize=4096)
def _op_dict(op: OperatingPoint) -> dict:
    """(Operating points are frozen and shared by many links: converted once each; the dict
    is only ever encoded, never changed.)"""
    return dataclasses.asdict(op)


def _op(d: dict) -> OperatingPoint:
    return OperatingPoint(model=d["model"], sha256=d["sha256"], cbr=float(d["cbr"]), snr_db=tuple(d["snr_db"]),
                          psnr_db=tuple(d["psnr_db"]), mcs=d.get("mcs", ""))


def link_record(lp: LinkPlan) -> dict:
    return {"e": "link", "link_id": lp.link_id, "intent_id": lp.intent.intent_id, "node": lp.node,
            "job_id": lp.job_id, "op": _op_dict(lp.op), "snr_plan": lp.snr_plan, "decision": lp.decision,
            "ops": {d: _op_dict(op) for d, op in lp.ops_by_decision.items()}, "rx_node": lp.rx_node,
            "rx_job": lp.rx_job, "tx_status": lp.tx_status, "rx_status": lp.rx_status,
            "tx_sent": lp.tx_hold is None, "images_done": dict(lp.images_done),
            "jobs": {n: to_mapping(j) for n, j in lp.sent_jobs.items()}}


def intent_record(it: dict) -> dict:
    return {"e": "intent", "intent": to_mapping(it["intent"]), "state": it["state"],
            "links": list(it["links"]), "order": it["order"], "accepted_at": it["accepted_at"],
            "reason": it.get("reason", ""), "cancel": it.get("cancel", "")}


class IntentJournal:
    def __init__(self, folder: str | Path, commit: GroupCommit | None = None):
        self.path = Path(folder) / JOURNAL
        self.commit = commit        # None: each record written (and fsync'ed) at once
        self.records = self._read()
        self.file = open_append(self.path)
        self._last: dict[str, str] = {}      # id -> the last line written for it (no repeats)

    def _read(self) -> list[dict]:
        out = []
        for i, line in enumerate(read_lines(self.path)):
            try:
                rec = json.loads(line)
            except ValueError:
                log.error("%s: line %d is not JSON; skipped", self.path, i + 1)
                continue
            if isinstance(rec, dict) and rec.get("e") in ("intent", "link"):
                out.append(rec)
        return out

    def write(self, rec: dict) -> None:
        key = rec["e"] + ":" + (rec.get("link_id") or rec["intent"]["intent_id"])
        line = json.dumps(rec, separators=(",", ":"), allow_nan=False)
        if self._last.get(key) != line:
            if self.commit is not None:
                self.commit.write(self.file, line)
            else:
                append_lines(self.file, [line])
            self._last[key] = line

    def close(self) -> None:
        if self.commit is not None:
            self.commit.flush()          # what is queued for this file first
        self.file.close()

    def restore(self) -> tuple[dict[str, dict], dict[str, LinkPlan]]:
        """(intents, links) as the journal last recorded them; records that do not parse are
        named and skipped (the rest is restored)."""
        last: dict[str, dict] = {}
        for rec in self.records:
            last[rec["e"] + ":" + (rec.get("link_id") or rec.get("intent", {}).get("intent_id", ""))] = rec
        intents: dict[str, dict] = {}
        for key, rec in last.items():
            if rec["e"] != "intent":
                continue
            try:
                intent = from_mapping(M.Intent, rec["intent"], f"{self.path}: intent")
                intents[intent.intent_id] = {"intent": intent, "links": list(rec["links"]), "state": rec["state"],
                                             "order": int(rec["order"]), "accepted_at": float(rec["accepted_at"]),
                                             "reason": rec.get("reason", ""), "cancel": rec.get("cancel", "")}
            except (ConfigError, KeyError, TypeError, ValueError) as e:
                log.error("%s: an intent record is unusable (%s); skipped", self.path, e)
        links: dict[str, LinkPlan] = {}
        for key, rec in last.items():
            if rec["e"] != "link":
                continue
            it = intents.get(rec.get("intent_id", ""))
            try:
                if it is None:
                    raise KeyError(f"intent {rec.get('intent_id')!r} not in the journal")
                jobs = {n: from_mapping(M.Job, j, f"{self.path}: job") for n, j in rec["jobs"].items()}
                lp = LinkPlan(rec["link_id"], it["intent"], rec["node"], rec["job_id"], _op(rec["op"]),
                              float(rec["snr_plan"]), rec["decision"],
                              ops_by_decision={d: _op(o) for d, o in rec["ops"].items()}, rx_node=rec["rx_node"],
                              rx_job=rec["rx_job"], tx_status=rec["tx_status"], rx_status=rec["rx_status"],
                              sent_jobs=jobs, images_done=dict(rec.get("images_done", {})))
                if not rec["tx_sent"]:
                    lp.tx_hold = jobs[lp.node]
            except (ConfigError, KeyError, TypeError, ValueError) as e:
                log.error("%s: link record %s is unusable (%s); skipped", self.path, rec.get("link_id"), e)
                continue
            links[lp.link_id] = lp
            if lp.link_id not in it["links"]:          # planned, then killed before the intent's record
                it["links"].append(lp.link_id)
                if it["state"] == "queued":
                    it["state"] = "running"
        return intents, links
