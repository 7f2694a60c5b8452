"""Models on a node: the ones it holds (installed, or received before) and receiving the ones it
lacks, the node side of the model dissemination (:mod:`testbed.agent.transfer`).

A model a job names and the node does not hold is requested from the controller
(request/response: the node's own response topic, the card's sha256 as correlation data); its
chunks are assembled, the archive's sha256 checked, the folder unpacked under
``<state>/models/<name>/`` and opened (every graph's hash checked) before it is used.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import messages as M
from .transfer import Assembler, TransferError, held_models, unpack

log = logging.getLogger(__name__)


@dataclass
class _Transfer:
    """A model this node asked the controller for: the chunks so far, and how it ended."""
    asm: Assembler | None = None
    complete: bool = False              # all chunks in (or failed): later chunks are ignored
    error: Exception | None = None
    done: threading.Event = field(default_factory=threading.Event)


class ModelReceiver:
    def __init__(self, who: str, store: Path, models_dir: str | None, *, threads: int, timeout_s: float,
                 request: Callable[[str, str], object], on_installed: Callable[[], object]):
        from ..core.paths import shipped_models

        self.who = who                  # the node id, in log messages
        self.store = store              # received models: <store>/<name>/
        self.store.mkdir(parents=True, exist_ok=True)
        self.threads, self.timeout_s = threads, timeout_s
        self.request = request          # request(name, sha256): ask the controller for a model
        self.on_installed = on_installed
        found = shipped_models(models_dir)
        found.update(shipped_models(self.store))
        self.models: dict[str, tuple[str, Path]] = held_models(found, who)     # name -> (sha256, folder)
        self.codecs: dict[str, object] = {}                # sha256 -> opened codec
        self.transfers: dict[str, _Transfer] = {}          # card sha256 -> a model this node asked for
        self.lock = threading.Lock()

    def name_of(self, sha256: str) -> str:
        """The name of the model held with card sha256 ``sha256`` ("" if none)."""
        name = {sha: name for name, (sha, _) in self.models.items()}.get(sha256, "")
        if not name and sha256 in self.codecs:      # a built-in codec this node opened
            name = self.codecs[sha256].name
        return name

    def codec_for(self, name: str, sha256: str):
        """The opened codec ``name`` with card sha256 ``sha256``; fetched from the controller when
        this node does not hold it (blocks up to ``timeout_s``)."""
        from ..zoo import builtin_codecs, open_codec

        if sha256 in self.codecs:
            return self.codecs[sha256]
        if name in builtin_codecs() and name not in self.models:   # every node has it: nothing to fetch
            codec = open_codec(name, threads=self.threads, spinning=False)
            if codec.card.sha256 != sha256:
                raise TransferError(f"built-in codec {name}: this node's version has sha256 {codec.card.sha256[:12]}..., "
                                    f"the job asks for {sha256[:12]}... (the node and controller run different "
                                    f"testbed versions)")
            self.codecs[sha256] = codec
            return codec
        held = self.models.get(name)
        if held is None or held[0] != sha256:
            self._fetch(name, sha256)
            if sha256 in self.codecs:        # opened (and verified) by _install
                return self.codecs[sha256]
        codec = open_codec(str(self.models[name][1]), threads=self.threads, spinning=False)
        if codec.card.sha256 != sha256:
            raise TransferError(f"model {name}: opened model has sha256 {codec.card.sha256[:12]}..., "
                                f"the job asks for {sha256[:12]}...")
        self.codecs[sha256] = codec
        return codec

    def _fetch(self, name: str, sha256: str) -> None:
        tr = _Transfer()
        with self.lock:
            self.transfers[sha256] = tr
        log.info("%s: requesting model %s (%s...) from the controller", self.who, name, sha256[:12])
        self.request(name, sha256)
        got = tr.done.wait(self.timeout_s)
        with self.lock:
            self.transfers.pop(sha256, None)
        if not got:
            raise TransferError(f"model {name} ({sha256[:12]}...): not received within {self.timeout_s:g} s")
        if tr.error is not None:
            raise tr.error

    def on_chunk(self, c: M.ModelChunk, topic=None, props=None) -> None:
        """A chunk on the node's model topic (the MQTT handler)."""
        with self.lock:
            tr = self.transfers.get(c.sha256)
            if tr is None or tr.complete:     # not asked for, or late/duplicate chunks of a finished one
                return
            if tr.asm is None or tr.asm.archive_sha256 != c.archive_sha256:
                tr.asm = Assembler(c.name, c.archive_sha256, c.count)
            asm = tr.asm
        try:
            archive = asm.add(c)
        except TransferError as e:
            self._transfer_done(c, e)
            return
        if archive is not None:      # unpacking and opening take seconds: not on the network thread
            with self.lock:
                if tr.complete:      # a duplicate last chunk (QoS 1) must not start a second install
                    return
                tr.complete = True
            threading.Thread(target=self._install, args=(c, archive), name=f"install-{c.name}", daemon=True).start()

    def _install(self, c: M.ModelChunk, archive: bytes) -> None:
        try:
            dest = unpack(archive, self.store / c.name)
            from ..zoo import open_codec

            codec = open_codec(str(dest), threads=self.threads, spinning=False)   # checks every graph's sha256
            card_sha = codec.card.sha256
            if card_sha != c.sha256:
                raise TransferError(f"model {c.name}: card sha256 {card_sha[:12]}... is not the announced "
                                    f"{c.sha256[:12]}...")
            self.models[c.name] = (card_sha, dest)
            self.codecs[card_sha] = codec
            log.info("%s: model %s received and verified (%d bytes, %d chunks) -> %s", self.who, c.name,
                     len(archive), c.count, dest)
            self.on_installed()
            self._transfer_done(c, None)
        except Exception as e:
            self._transfer_done(c, e)

    def _transfer_done(self, c: M.ModelChunk, error: Exception | None) -> None:
        if error is not None:
            log.error("%s: model transfer failed: %s", self.who, error)
        with self.lock:
            tr = self.transfers.get(c.sha256)
            if tr is None:
                return
            tr.complete = True
            if tr.error is None:     # the first error is the one reported
                tr.error = error
        tr.done.set()
