"""Versioned, validated message schemas of the agent layer (JSON over MQTT).

Every message is a dataclass; on the wire it is a JSON object with a ``schema`` key
(``testbed.<kind>/<version>``) plus the dataclass fields. :func:`decode` checks the schema name
and version, unknown and missing keys, every value's type and the message's own ``validate()``
(the same typed-config machinery as ``firmware_configs/``), and raises :class:`MessageError`
naming the topic and the key. :data:`MESSAGES` is the one registry of message kinds.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

from ..core.configfile import ConfigError, from_mapping, to_mapping
from .ids import decision_number, event_id, report_id  # noqa: F401  (the ids messages carry)
from .model_messages import ModelAnnounce, ModelChunk, ModelRequest
from .msgbase import ID_RE, MAX_COUNT, SNR_RANGE, MessageError  # noqa: F401  (ID_RE: for the controller)
from .msgbase import check_id as _check_id, check_mcs, finite as _finite

SCHEMA_VERSION = 1
ROLES = ("tx", "rx", "txrx")
JOB_STATES = ("accepted", "running", "switched", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")
TASKS = ("image-transmission",)


@dataclass
class NodeStatus:
    """Retained on ``node/<id>/status``; the broker publishes the last will (``online: false``)."""
    node_id: str
    online: bool
    role: str = "txrx"
    radio: str = "loopback"
    models: list[str] = field(default_factory=list)          # names of the models the node holds
    model_sha256: list[str] = field(default_factory=list)    # ... and their sha256, same order
    jobs: list[str] = field(default_factory=list)            # running job ids
    snr_db: float | None = None                              # last estimated SNR at this node's receiver
    medium: str = ""                  # a loopback tx node: where its samples stream (tcp://host:port)
    ts: float = 0.0

    def validate(self):
        _check_id("node_id", self.node_id)
        if self.role not in ROLES:
            raise ConfigError(f"role={self.role!r}: one of {', '.join(ROLES)}")
        if len(self.models) != len(self.model_sha256):
            raise ConfigError("model_sha256: one sha256 per model name")
        _finite("snr_db", self.snr_db, *SNR_RANGE)


@dataclass
class QosTarget:
    psnr_db: float | None = None        # PSNR >= this
    latency_ms: float | None = None     # per-image latency <= this

    def validate(self):
        _finite("psnr_db", self.psnr_db, 0, 100)
        _finite("latency_ms", self.latency_ms, 0, 3.6e6)


@dataclass
class Intent:
    """A user's intent: what to send, how well, within which bandwidth. ``images``: a folder or
    image file paths as seen by the nodes (``samples`` = the shipped sample images)."""
    intent_id: str
    task: str = "image-transmission"
    images: list[str] = field(default_factory=lambda: ["samples"])
    max_images: int = 0                 # 0: all
    repeat: int = 1                     # send the image list this many times
    priority: int = 0                   # higher first
    qos: QosTarget = field(default_factory=QosTarget)
    cbr_max: float | None = None        # bandwidth budget (channel uses per pixel component)
    nodes: list[str] = field(default_factory=list)   # restrict to these nodes ([] = any suitable)
    links: int = 1                      # how many links to run in parallel
    models: list[str] = field(default_factory=list)  # restrict the choice to these models ([] = all)
    mcs: str = ""                       # digital codecs only: an MCS name or auto ("": auto)

    def validate(self):
        _check_id("intent_id", self.intent_id)
        if self.task not in TASKS:
            raise ConfigError(f"task={self.task!r}: one of {', '.join(TASKS)}")
        if not self.images:
            raise ConfigError("images: at least one folder or file")
        for k in ("max_images", "priority"):
            if getattr(self, k) < 0:
                raise ConfigError(f"{k}={getattr(self, k)}: must be >= 0")
        if not 1 <= self.repeat <= 10000:
            raise ConfigError(f"repeat={self.repeat}: must be in 1..10000")
        if not 1 <= self.links <= 64:
            raise ConfigError(f"links={self.links}: must be in 1..64")
        _finite("cbr_max", self.cbr_max, 1e-4, 1.0)
        check_mcs(self.mcs)
        for n in self.nodes:
            _check_id("nodes[]", n)


@dataclass
class IntentReply:
    intent_id: str
    accepted: bool
    reason: str = ""
    links: list[str] = field(default_factory=list)     # link ids


@dataclass
class StatusRequest:
    what: str = "all"


@dataclass
class IntentCancel:
    """Operator -> ``intents``: stop an intent (queued: dropped; running: its jobs are cancelled)."""
    intent_id: str
    reason: str = ""

    def validate(self):
        _check_id("intent_id", self.intent_id)


@dataclass
class Presence:
    """A running controller or node instance (retained ``controller/presence``; on ``.../probe``
    a starting instance's pings and a running one's answers: :mod:`testbed.agent.unique`)."""
    instance: str
    online: bool = True
    ping: bool = False
    pid: int = 0
    host: str = ""
    since: float = 0.0


@dataclass
class Job:
    """Controller -> ``to/<node>/job``: run one part of a link. ``part``: ``link`` (this node is
    transmitter and receiver), ``tx`` or ``rx`` (the peer runs the other part)."""
    job_id: str
    intent_id: str
    link_id: str
    part: str
    model: str
    model_sha256: str
    cbr: float
    snr_db: float                       # the SNR the encoder is told
    images: list[str]
    max_images: int = 0                 # 0: all
    repeat: int = 1
    peer: str = ""                      # the other node of a tx/rx pair
    medium: str = ""                    # tx/rx pairs in loopback: tcp://host:port of the sample stream
    decision: str = ""                  # the decision id this job implements
    mcs: str = ""                       # a digital codec's MCS (name or auto; "": auto)

    def validate(self):
        for k in ("job_id", "intent_id", "link_id"):
            _check_id(k, getattr(self, k))
        check_mcs(self.mcs)
        if self.part not in ("link", "tx", "rx"):
            raise ConfigError(f"part={self.part!r}: one of link, tx, rx")
        _finite("cbr", self.cbr, 1e-4, 1.0)
        _finite("snr_db", self.snr_db, *SNR_RANGE)
        if not re.fullmatch(r"[0-9a-f]{64}", self.model_sha256):
            raise ConfigError("model_sha256: 64 lowercase hex digits")
        if self.part != "link" and not self.peer:
            raise ConfigError(f"peer: a {self.part} job needs the other node's id")


@dataclass
class JobUpdate:
    """Controller -> ``to/<node>/job``: switch model and/or CBR (at the next image boundary)."""
    job_id: str
    model: str
    model_sha256: str
    cbr: float
    snr_db: float
    decision: str = ""
    mcs: str = ""

    def validate(self):
        _check_id("job_id", self.job_id)
        check_mcs(self.mcs)
        _finite("cbr", self.cbr, 1e-4, 1.0)
        _finite("snr_db", self.snr_db, *SNR_RANGE)


@dataclass
class JobCancel:
    """Stop a job; ``drain_s`` > 0 (to a receiver): finish once no frame came for that long."""
    job_id: str
    reason: str = ""
    drain_s: float = 0.0


@dataclass
class JobState:
    """Node -> ``node/<id>/job_state``: accepted, running, done or failed (with the error); kept
    in the node's outbox until acknowledged, like QoS reports."""
    event_id: str                       # unique: <node>:<job>:<state>:<n>
    node_id: str
    job_id: str
    state: str
    images_done: int = 0
    error: str = ""
    decision: str = ""                  # state 'switched': a receiver holds the model of this decision
    ts: float = 0.0

    def validate(self):
        _check_id("node_id", self.node_id)
        if not self.event_id.startswith(f"{self.node_id}:"):
            raise ConfigError(f"event_id={self.event_id!r}: must start with the node id '{self.node_id}:'")
        if self.state not in JOB_STATES:
            raise ConfigError(f"state={self.state!r}: one of {', '.join(JOB_STATES)}")
        if not 0 <= self.images_done <= MAX_COUNT:
            raise ConfigError(f"images_done={self.images_done}: must be in 0..{MAX_COUNT}")


@dataclass
class QosReport:
    """Node -> ``node/<id>/qos`` (QoS 1), one per image; kept on the node's disk until acknowledged.
    ``part``: ``link`` (one node did both ends), or the ``tx``/``rx`` half of a link split over two
    nodes, which the controller joins by (link, seq): latency = rx ``t_done`` - tx ``t_sent``."""
    report_id: str                      # unique: <node>:<job>:<seq>
    node_id: str
    job_id: str
    intent_id: str
    link_id: str
    seq: int
    image: str
    model: str
    model_sha256: str
    cbr: float
    snr_tx_db: float                    # SNR the encoder was told
    snr_est_db: float | None            # receiver's estimate (None: nothing decoded)
    psnr_db: float | None               # None: the image was lost
    latency_ms: float | None
    frames_sent: int
    frames_decoded: int
    encode_ms: float | None = None
    decode_ms: float | None = None
    decision: str = ""                  # the controller decision whose operating point was used
    part: str = "link"
    t_sent: float | None = None         # wall clock (tx half)
    t_done: float | None = None         # wall clock (rx half)
    ts: float = 0.0

    def validate(self):
        _check_id("node_id", self.node_id)
        if self.part not in ("link", "tx", "rx"):
            raise ConfigError(f"part={self.part!r}: one of link, tx, rx")
        if not self.report_id.startswith(f"{self.node_id}:"):
            raise ConfigError(f"report_id={self.report_id!r}: must start with the node id '{self.node_id}:'")
        _finite("psnr_db", self.psnr_db, 0, 200)
        _finite("snr_est_db", self.snr_est_db, -100, 200)
        _finite("snr_tx_db", self.snr_tx_db, *SNR_RANGE)
        _finite("cbr", self.cbr, 0, 1.0)
        for k in ("latency_ms", "encode_ms", "decode_ms"):
            _finite(k, getattr(self, k), 0, 3.6e6)        # an hour: a report is about one image
        for k in ("seq", "frames_sent", "frames_decoded"):
            if not 0 <= getattr(self, k) <= MAX_COUNT:
                raise ConfigError(f"{k}={getattr(self, k)}: must be in 0..{MAX_COUNT}")
        for k in ("t_sent", "t_done", "ts"):
            _finite(k, getattr(self, k), 0, 1e11)


@dataclass
class Ack:
    """Controller -> ``to/<node>/ack``: these QoS reports / job-state events are safely received
    (reports: on the controller's disk); the node drops them from its outbox."""
    ids: list[str]


@dataclass
class Decision:
    """Controller -> ``controller/decisions``: what it decided and why (the audit trail)."""
    decision_id: str
    intent_id: str
    link_id: str
    action: str                         # assign | queue | replan | disseminate | reject
    model: str = ""
    cbr: float | None = None
    reason: str = ""
    inputs: dict = field(default_factory=dict)
    ts: float = 0.0


@dataclass
class ControllerStatus:
    """Retained on ``controller/status`` (refreshed every second while anything changes)."""
    nodes: list[dict] = field(default_factory=list)
    links: list[dict] = field(default_factory=list)
    intents: list[dict] = field(default_factory=list)
    reports: int = 0
    rejected: int = 0
    ts: float = 0.0


MESSAGES = {
    "node_status": NodeStatus, "intent": Intent, "intent_reply": IntentReply, "status_request": StatusRequest,
    "job": Job, "job_update": JobUpdate, "job_cancel": JobCancel, "job_state": JobState,
    "qos_report": QosReport, "ack": Ack, "model_announce": ModelAnnounce, "model_request": ModelRequest,
    "model_chunk": ModelChunk, "decision": Decision, "controller_status": ControllerStatus,
    "intent_cancel": IntentCancel, "presence": Presence,
}
KIND_OF = {cls: kind for kind, cls in MESSAGES.items()}


def schema_name(msg_or_cls) -> str:
    cls = msg_or_cls if isinstance(msg_or_cls, type) else type(msg_or_cls)
    return f"testbed.{KIND_OF[cls]}/{SCHEMA_VERSION}"


def encode(msg) -> bytes:
    """Validate and serialise a message (a dataclass of :data:`MESSAGES`)."""
    if type(msg) not in KIND_OF:
        raise TypeError(f"not a message type: {type(msg).__name__}")
    d = to_mapping(msg)
    if "ts" in d and not d["ts"]:
        d["ts"] = time.time()
    try:    # through the validator, so that nothing invalid ever leaves this process
        from_mapping(type(msg), d, f"outgoing {KIND_OF[type(msg)]}")
    except ConfigError as e:
        raise MessageError(str(e)) from None
    try:
        return json.dumps({"schema": schema_name(msg), **d}, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as e:   # NaN/inf somewhere the schema does not check
        raise MessageError(f"outgoing {KIND_OF[type(msg)]}: {e}") from None


def decode(payload: bytes, where: str = "message", expect: type | tuple | None = None):
    """Parse and validate; ``where`` (the topic) is named in every error."""
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MessageError(f"{where}: not JSON ({e})") from None
    if not isinstance(obj, dict):
        raise MessageError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    schema = obj.pop("schema", None)
    if not isinstance(schema, str) or not re.fullmatch(r"testbed\.[a-z_]+/\d+", schema):
        raise MessageError(f"{where}: key 'schema' is {schema!r}; expected 'testbed.<kind>/<version>'")
    kind, version = schema[len("testbed."):].split("/")
    if kind not in MESSAGES:
        raise MessageError(f"{where}: unknown message kind {kind!r} (known: {', '.join(MESSAGES)})")
    if int(version) != SCHEMA_VERSION:
        raise MessageError(f"{where}: {kind} schema version {version} is not supported (this side speaks "
                           f"{SCHEMA_VERSION})")
    cls = MESSAGES[kind]
    if expect is not None and not (cls is expect or (isinstance(expect, tuple) and cls in expect)):
        names = [KIND_OF[c] for c in (expect if isinstance(expect, tuple) else (expect,))]
        raise MessageError(f"{where}: a {kind} message where {' or '.join(names)} was expected")
    try:
        return from_mapping(cls, obj, where)
    except ConfigError as e:
        raise MessageError(str(e)) from None
