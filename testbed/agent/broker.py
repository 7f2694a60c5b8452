"""A mosquitto deployment for the agent layer: config, password file and per-node ACLs
(``testbed broker init``), and a broker process (``testbed broker run``, tests, benchmarks).

ACL: the node id is the MQTT user name; a node may publish only under ``node/<its id>/`` and read
only ``to/<its id>/`` and ``models/``. The ``controller`` user may do everything under the root;
the ``operator`` user submits intents and reads replies, decisions and status.
"""
from __future__ import annotations

import getpass
import logging
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .messages import ID_RE
from .topics import ROOT

log = logging.getLogger(__name__)
CONTROLLER_USER = "controller"
OPERATOR_USER = "operator"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str:
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if cand and Path(cand).exists():
            return cand
    raise FileNotFoundError("mosquitto not found: install it (apt install mosquitto; ./scripts/setup.sh does)")


def acl_text(root: str = ROOT) -> str:
    return (f"# written by `testbed broker init`: node id = user name\n"
            f"user {CONTROLLER_USER}\n"
            f"topic readwrite {root}/#\n\n"
            f"user {OPERATOR_USER}\n"
            f"topic write {root}/intents\n"
            f"topic read {root}/reply/{OPERATOR_USER}/#\n"
            f"topic read {root}/controller/#\n"
            f"topic read {root}/node/+/status\n\n"
            f"# every other user is a node\n"
            f"pattern readwrite {root}/node/%u/#\n"
            f"pattern read {root}/to/%u/#\n"
            f"pattern read {root}/models/#\n")


# mosquitto writes its whole state (sessions, subscriptions, retained and queued messages) in one
# blocking save every ``autosave_interval`` s: with 1000 clients a save took 7-60 ms (strace), in
# which the broker passed on nothing, and at one save a second those stalls were most of the
# control plane's intent-latency p99 (testbed.agent.bench). What a crash loses between saves, the
# agents restore: nodes and controller publish their retained status again on reconnecting,
# models are announced again, and jobs and QoS reports are re-sent until confirmed.
AUTOSAVE_S = 60


def conf_text(folder: Path, port: int, *, auth: bool = True, bind: str = "127.0.0.1", persistence: bool = True,
              tls: dict | None = None, autosave_s: int = AUTOSAVE_S) -> str:
    lines = ["# written by `testbed broker init`",
             f"user {getpass.getuser()}",    # started as root, mosquitto would switch to 'mosquitto'
             f"listener {port} {bind}",
             "per_listener_settings false",
             f"allow_anonymous {'false' if auth else 'true'}",
             "max_inflight_messages 100", "max_queued_messages 100000",
             "set_tcp_nodelay true",   # no Nagle delay on small messages (latency)
             "log_dest stderr", "log_type error", "log_type warning", "log_type notice",
             "connection_messages false"]
    if auth:
        lines += [f"password_file {folder / 'passwd'}", f"acl_file {folder / 'acl'}"]
    if persistence:
        if not isinstance(autosave_s, int) or isinstance(autosave_s, bool) or not 1 <= autosave_s <= 86400:
            raise ValueError(f"--autosave-s {autosave_s!r}: must be a whole number of seconds in 1..86400")
        lines += ["persistence true", f"persistence_location {folder}/", f"autosave_interval {autosave_s}"]
    if tls:   # this listener speaks TLS: clients use mqtts://host:port and --ca-file
        for k in ("certfile", "keyfile"):
            if not tls.get(k):
                raise ValueError(f"TLS needs both --certfile and --keyfile (missing {k})")
        lines += [f"{k} {Path(v).resolve()}" for k, v in tls.items() if v]
    return "\n".join(lines) + "\n"


def check_nodes_and_port(nodes: list[str], port: int) -> None:
    """``--nodes`` (non-empty, valid, distinct, not reserved ids) and ``--port`` (1..65535)."""
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"--port: must be in 1..65535, got {port}")
    if not nodes or any(not n for n in nodes):
        raise ValueError(f"--nodes: a comma-separated list of node ids without empty entries, got {','.join(nodes)!r}")
    for n in nodes:
        if not ID_RE.match(n) or n in (CONTROLLER_USER, OPERATOR_USER):
            raise ValueError(f"--nodes: {n!r} is not a valid node id (reserved or bad characters)")
    dup = sorted({n for n in nodes if nodes.count(n) > 1})
    if dup:
        raise ValueError(f"--nodes: {', '.join(dup)} given more than once")


def init_broker_dir(folder: str | Path, nodes: list[str], *, port: int = 1883, auth: bool = True,
                    bind: str = "127.0.0.1", persistence: bool = True, tls: dict | None = None,
                    force: bool = False, autosave_s: int = AUTOSAVE_S) -> dict[str, str]:
    """Write ``mosquitto.conf``, ``acl``, ``passwd`` and one ``<user>.password`` file per user;
    returns user -> password. A folder that already holds a broker config is refused unless
    ``force`` (:func:`existing_users` says whose passwords that replaces)."""
    check_nodes_and_port(nodes, port)
    conf_text(Path(folder), port, auth=auth, bind=bind, persistence=persistence, autosave_s=autosave_s)  # checks it
    d = Path(folder).resolve()
    if d.exists() and not d.is_dir():
        raise ValueError(f"{folder}: exists and is not a folder")
    old = existing_users(d)
    if (old or (d / "mosquitto.conf").exists()) and not force:
        raise ValueError(f"{folder}: already holds a broker config (passwords of {', '.join(old) or 'no user'}); "
                         "--force writes new passwords for every user (running clients are then refused)")
    d.mkdir(parents=True, exist_ok=True)
    users = [CONTROLLER_USER, OPERATOR_USER] + list(nodes)
    creds = {}
    (d / "passwd").write_text("")
    for u in users:
        pw = secrets.token_urlsafe(18)
        creds[u] = pw
        pf = d / f"{u}.password"
        pf.write_text(pw + "\n")
        pf.chmod(0o600)
        subprocess.run(["mosquitto_passwd", "-b", str(d / "passwd"), u, pw], check=True, capture_output=True)
    (d / "passwd").chmod(0o600)
    (d / "acl").write_text(acl_text())
    (d / "mosquitto.conf").write_text(conf_text(d, port, auth=auth, bind=bind, persistence=persistence, tls=tls,
                                                  autosave_s=autosave_s))
    return creds


def existing_users(folder: str | Path) -> list[str]:
    """The users of a broker folder (its ``<user>.password`` files)."""
    d = Path(folder)
    return sorted(p.stem for p in d.glob("*.password")) if d.is_dir() else []


class Broker:
    """A mosquitto process on ``127.0.0.1:port`` with the config in ``folder``; restartable."""

    def __init__(self, folder: str | Path, port: int):
        self.folder, self.port = Path(folder), port
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> "Broker":
        self.log = open(self.folder / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.folder / "mosquitto.conf")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}; see {self.folder / 'mosquitto.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout_s:g} s")

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients, no final persistence save."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
