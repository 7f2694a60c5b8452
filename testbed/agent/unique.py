"""One controller per broker, one process per node id.

Every process connects with a client id of its own (``controller-<instance>``,
``node-<id>-<instance>``), so two processes never take over each other's MQTT session. A
starting process then makes sure that no other *running* instance holds its role:

1. it subscribes to its presence topic (retained: the controller's ``controller/presence``, a
   node's ``node/<id>/status``; the broker publishes the last will, ``online: false``, when a
   process dies) and to its probe topic, and publishes a ping on the probe topic: when its own
   ping comes back, any retained presence has arrived before it;
2. presence online (another instance, or a stale message the broker kept across its own
   restart): it waits ``answer_s`` for an answer to its ping. A running instance answers every
   ping that is not its own (:func:`answer_pings`), so an answer means refuse to start; silence
   means the presence was stale.

Where the broker's ACL does not let a node read its own topics (a broker folder written before
this check existed), nothing comes back and the check is skipped with a warning.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from . import messages as M

log = logging.getLogger(__name__)


def new_instance() -> str:
    return uuid.uuid4().hex[:12]


def presence(instance: str, since: float, online: bool = True, ping: bool = False) -> M.Presence:
    return M.Presence(instance=instance, online=online, ping=ping, pid=os.getpid(), host=socket.gethostname(),
                      since=since)


class UniqueError(ConnectionError):
    """Another running instance holds this role on the broker."""


def answer_pings(link, probe_topic: str, me: M.Presence) -> None:
    """Answer the pings of starting instances on ``probe_topic`` (and say so in the log)."""
    def on_probe(msg: M.Presence, topic, props) -> None:
        if msg.ping and msg.instance != me.instance:
            log.warning("%s: another instance (pid %d on %s) tried to start; told it this one runs",
                        link.client_id, msg.pid, msg.host)
            link.publish(probe_topic, presence(me.instance, me.since))
    link.subscribe(probe_topic, on_probe, expect=M.Presence)


def check_unique(link, presence_topic: str, probe_topic: str, is_online, what: str, instance: str,
                 echo_s: float = 3.0, answer_s: float = 1.5) -> None:
    """Raise :class:`UniqueError` if a running instance of ``what`` answers (see the module)."""
    echoed, answered = threading.Event(), []
    seen: list = []

    def on_presence(msg, topic, props) -> None:
        if not echoed.is_set():
            seen.append(msg)

    def on_probe(msg: M.Presence, topic, props) -> None:
        if msg.instance == instance and msg.ping:
            echoed.set()
        elif not msg.ping:
            answered.append(msg)
    link.subscribe(presence_topic, on_presence, expect=(M.NodeStatus, M.Presence))
    link.subscribe(probe_topic, on_probe, expect=M.Presence)
    link.publish(probe_topic, presence(instance, time.time(), ping=True))
    if not echoed.wait(echo_s):
        log.warning("%s: cannot read %s back (a broker ACL written before this check?): not checking that "
                    "no other %s runs", link.client_id, probe_topic, what)
        return
    if not (seen and is_online(seen[-1])):
        return
    t_end = time.monotonic() + answer_s
    while time.monotonic() < t_end and not answered:
        time.sleep(0.02)
    if answered:
        o = answered[0]
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(o.since)) if o.since else "?"
        raise UniqueError(f"{what} is already running on this broker (pid {o.pid} on {o.host}, since {since}); "
                          f"stop it first")
    log.info("%s: the presence on %s was stale (no answer within %g s)", link.client_id, presence_topic, answer_s)
