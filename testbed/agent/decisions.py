"""The controller's decision log: every decision (assign, queue, replan, disseminate, fail,
reject) with its reason and inputs, one fsync'ed JSON line in ``decisions.jsonl`` (with a
:class:`~testbed.agent.journal.GroupCommit`, in its next batch).

Decision ids are ``d<n>`` and never repeat: a restarted controller continues after the highest
id in the file, and a torn last line (a kill mid-write) is cut off before the next one.
"""
from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

from . import messages as M
from .journal import GroupCommit, append_lines, open_append, read_lines


def last_decision_number(lines) -> int:
    """The highest ``d<n>`` decision id in the lines of a decisions.jsonl (0: none)."""
    last = 0
    for line in lines:
        try:
            did = json.loads(line).get("decision_id", "")
            if did.startswith("d"):
                last = max(last, M.decision_number(did))
        except (ValueError, AttributeError):
            continue
    return last


class DecisionLog:
    def __init__(self, path: str | Path, commit: GroupCommit | None = None):
        self.path = Path(path)
        self.commit = commit        # None: each line written (and fsync'ed) at once
        self.counter = itertools.count(last_decision_number(read_lines(self.path)) + 1)
        self.file = open_append(self.path)

    def number(self) -> int:
        """The next number of the sequence decision ids are drawn from (the controller also
        orders intents by it)."""
        return next(self.counter)

    def record(self, intent_id: str, link_id: str, action: str, reason: str, model: str = "",
               cbr: float | None = None, inputs: dict | None = None) -> tuple[str, bytes]:
        """Append a new decision; its id and the encoded :class:`~testbed.agent.messages.Decision`."""
        d = M.Decision(decision_id=f"d{self.number()}", intent_id=intent_id, link_id=link_id, action=action,
                       model=model, cbr=cbr, reason=reason, inputs=inputs or {}, ts=time.time())
        payload = M.encode(d)
        if self.commit is not None:
            self.commit.write(self.file, payload.decode())
        else:
            append_lines(self.file, [payload.decode()])
        return d.decision_id, payload

    def close(self) -> None:
        if self.commit is not None:
            self.commit.flush()          # what is queued for this file first
        self.file.close()
