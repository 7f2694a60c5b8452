"""The topic layout (one place). ``<root>`` is ``testbed/v1`` unless a deployment changes it.

====================================  ==========  =====  ========  ===================================
topic                                 publisher   QoS    retained  message
====================================  ==========  =====  ========  ===================================
<root>/node/<id>/status               node        1      yes       node_status (last will: offline)
<root>/node/<id>/qos                  node        1      no        qos_report (one per image)
<root>/node/<id>/job_state            node        1      no        job_state
<root>/node/<id>/model_request        node        1      no        model_request (response topic)
<root>/to/<id>/job                    controller  1      no        job, job_update, job_cancel
<root>/to/<id>/ack                    controller  1      no        qos_ack
<root>/to/<id>/model                  controller  1      no        model_chunk (correlation data)
<root>/models/<name>                  controller  1      yes       model_announce
<root>/intents                        operator    1      no        intent, status_request (response
                                                                  topic + correlation data)
<root>/reply/<client>                 controller  1      no        intent_reply / controller_status
<root>/controller/decisions           controller  1      no        decision
<root>/controller/status              controller  0      yes       controller_status
====================================  ==========  =====  ========  ===================================

A node publishes only under ``node/<its id>/`` and reads only ``to/<its id>/`` and ``models/``:
the ACL (``testbed broker init``) enforces that with the node id as MQTT user name.
"""
from __future__ import annotations

ROOT = "testbed/v1"


def publish_qos(what: str) -> int:
    """The MQTT QoS a node publishes its ``what`` sub-topic with. QoS reports go at 0: the node
    keeps each one until the controller's own acknowledgement (sent once the report is on disk)
    and the controller subscribes to them at QoS 0, so a broker PUBACK would guarantee nothing
    more and cost a packet each way per report. Job states and the rest go at 1."""
    return 0 if what == "qos" else 1


def node(node_id: str, what: str, root: str = ROOT) -> str:
    return f"{root}/node/{node_id}/{what}"


def to(node_id: str, what: str, root: str = ROOT) -> str:
    return f"{root}/to/{node_id}/{what}"


def model(name: str, root: str = ROOT) -> str:
    return f"{root}/models/{name}"


def intents(root: str = ROOT) -> str:
    return f"{root}/intents"


def reply(client: str, root: str = ROOT) -> str:
    return f"{root}/reply/{client}"


def decisions(root: str = ROOT) -> str:
    return f"{root}/controller/decisions"


def controller_status(root: str = ROOT) -> str:
    return f"{root}/controller/status"


def controller_presence(root: str = ROOT) -> str:
    return f"{root}/controller/presence"


def controller_probe(root: str = ROOT) -> str:
    return f"{root}/controller/probe"


def parse_node_topic(topic: str, root: str = ROOT) -> tuple[str, str] | None:
    """``<root>/node/<id>/<what>`` -> (id, what); None for any other topic."""
    parts = topic.split("/")
    r = root.split("/")
    if len(parts) != len(r) + 3 or parts[:len(r)] != r or parts[len(r)] != "node":
        return None
    return parts[len(r) + 1], parts[len(r) + 2]
