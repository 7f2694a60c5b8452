"""The ids the agent layer builds: report, event and decision ids (re-exported by messages)."""
from __future__ import annotations


def report_id(node_id: str, job_id: str, seq: int) -> str:
    """A QoS report's id: unique per node, job and image."""
    return f"{node_id}:{job_id}:{seq}"


def event_id(node_id: str, job_id: str, state: str, n: int) -> str:
    """A job-state event's id: ``n`` counts the node's events."""
    return f"{node_id}:{job_id}:{state}:{n}"


def decision_number(decision_id: str) -> int:
    """``n`` of a decision id ``d<n>`` (a later decision has a larger number); -1 if it is none."""
    try:
        return int(decision_id.lstrip("d"))
    except ValueError:
        return -1
