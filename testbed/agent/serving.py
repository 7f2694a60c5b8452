"""Model serving, controller side of the model dissemination (:mod:`testbed.agent.transfer`):
a retained announcement per model, and the model's chunks to a node that asks for it
(request/response: the node's own response topic and its correlation data).

One transfer per node and model runs at a time; a node asking again while its transfer is under
way is ignored.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable

from . import messages as M
from . import topics as T
from .transfer import announce, chunks, pack

log = logging.getLogger(__name__)


class ModelServer:
    def __init__(self, dirs: dict[str, Path], publish: Callable):
        self.dirs = dirs                # model name -> folder
        self.publish = publish          # publish(topic, message, **options), e.g. MqttLink.publish
        self.archives: dict[str, tuple[M.ModelAnnounce, bytes]] = {}
        self.streaming: set[tuple[str, str]] = set()     # (node, sha256) model transfers in flight
        self.lock = threading.Lock()

    def archive(self, name: str) -> tuple[M.ModelAnnounce, bytes]:
        """The announcement and tar archive of model ``name`` (packed once)."""
        if name not in self.archives:
            from ..zoo import CARD_NAME, load_card

            d = self.dirs[name]
            data = pack(d)
            self.archives[name] = (announce(name, load_card(d / CARD_NAME), data), data)
        return self.archives[name]

    def announce_all(self) -> None:
        """Publish every model's announcement, retained."""
        for name in self.dirs:
            ann, _ = self.archive(name)
            self.publish(T.model(name), ann, retain=True)

    def serve(self, req: M.ModelRequest, response_topic: str | None, correlation: bytes | None,
              on_send: Callable[[M.ModelAnnounce], object]) -> str | None:
        """Stream the model ``req`` asks for to ``response_topic`` (in a thread of its own),
        calling ``on_send(announcement)`` first. Returns why the request is refused (None: it is
        served, or already being served)."""
        if response_topic != T.to(req.node_id, "model"):
            return f"response topic {response_topic!r} is not the node's own {T.to(req.node_id, 'model')}"
        if req.name not in self.dirs:
            return f"node {req.node_id} asked for unknown model {req.name!r}"
        ann, data = self.archive(req.name)
        if ann.sha256 != req.sha256:
            return (f"node {req.node_id} asked for {req.name} {req.sha256[:12]}..., "
                    f"this controller has {ann.sha256[:12]}...")
        key = (req.node_id, req.sha256)
        with self.lock:
            if key in self.streaming:           # one transfer per node and model at a time
                log.info("controller: %s asked again for %s while it is being sent: ignored", req.node_id, req.name)
                return None
            self.streaming.add(key)
        try:
            on_send(ann)
            threading.Thread(target=self._stream, args=(response_topic, correlation, ann, data, key),
                             daemon=True).start()
        except BaseException:
            with self.lock:
                self.streaming.discard(key)
            raise
        return None

    def _stream(self, response_topic: str, correlation, ann: M.ModelAnnounce, data: bytes, key) -> None:
        try:
            for c in chunks(ann, data):
                self.publish(response_topic, c, correlation=correlation)
        finally:
            with self.lock:
                self.streaming.discard(key)
