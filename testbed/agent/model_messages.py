"""The model-dissemination messages (:mod:`testbed.agent.serving`, :mod:`testbed.agent.receiving`);
registered with the others in :data:`testbed.agent.messages.MESSAGES`."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..core.configfile import ConfigError
from .msgbase import check_id


@dataclass
class ModelAnnounce:
    """Retained on ``models/<name>``: a model the controller can send (a tar of the folder)."""
    name: str
    sha256: str                         # the model's sha256 (card key ``sha256``)
    archive_sha256: str                 # sha256 of the transferred tar
    size: int
    chunk_size: int
    chunks: int
    codec: str
    cbrs: list[float] = field(default_factory=list)
    snr_range_db: list[float] = field(default_factory=list)


@dataclass
class ModelRequest:
    """Node -> ``node/<id>/model_request`` with a response topic and correlation data."""
    node_id: str
    name: str
    sha256: str


@dataclass
class ModelChunk:
    """Controller -> the request's response topic (QoS 1, correlation data of the request)."""
    name: str
    sha256: str
    archive_sha256: str
    index: int
    count: int
    data: str                           # base64

    def validate(self):
        check_id("name", self.name)        # it becomes a folder name on the node
        if not 0 <= self.index < self.count:
            raise ConfigError(f"index={self.index}: must be in 0..count-1 ({self.count})")
