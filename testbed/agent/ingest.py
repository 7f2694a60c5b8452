"""The controller's QoS-report intake in a process of its own.

At 1000 nodes the reports (2000 and more per second) cost the controller most of its CPU: the
MQTT client reading them and the validation of every field. In the controller's process that
work holds the GIL, and intents waited behind it (p99 of 100-300 ms instead of a few ms, in the
agent benchmark). :class:`IngestProcess` moves it into a child process with its own MQTT
connection (the controller's telemetry connection, MQTT 3.1.1): the child receives, decodes and
validates the reports and hands them to the controller in batches over a pipe; the controller
keeps every decision (duplicates, the checks against its links, ``qos.csv``, the policy) and
sends the acknowledgements back for the child to publish.

:class:`IngestProcess` offers the part of :class:`~testbed.agent.mqttlink.MqttLink` the
controller uses on its telemetry connection (``start``, ``stop``, ``subscribe``, ``publish`` of
acks, ``rejected``, ``fatal``), so the controller does not ask which one it holds. The child ends
when the controller's end of the pipe closes, also when the controller is killed.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import threading
import time

from . import messages as M

log = logging.getLogger(__name__)

BATCH_WAIT_S = 0.001        # the child gathers reports this long before it hands them over
STATE_EVERY_S = 0.5         # and tells its counters at least this often


def _child(reports, commands, client_id: str, broker: str, username, password, ca_file, log_level: int) -> None:
    """The child process: one MQTT connection; reports out on ``reports``, acks in on ``commands``."""
    from .mqttlink import MqttLink

    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    link = MqttLink(client_id, broker, username=username, password=password, ca_file=ca_file, v5=False)
    buf: list = []
    lock, wake = threading.Lock(), threading.Event()
    send_lock = threading.Lock()

    def state() -> tuple:
        return ("state", {"connected": link.connected.is_set(), "rejected": link.rejected, "fatal": link.fatal})

    def forward(key):
        def on_message(msg, topic, props):
            with lock:
                buf.append((key, topic, msg))
            wake.set()
        return on_message

    def sender():
        last = 0.0
        while True:
            wake.wait(STATE_EVERY_S)
            if wake.is_set():
                time.sleep(BATCH_WAIT_S)
                wake.clear()
            with lock:
                batch, buf[:] = list(buf), []
            try:
                with send_lock:
                    if batch:
                        reports.send(("reports", batch))
                    if time.monotonic() - last > STATE_EVERY_S or link.fatal:
                        reports.send(state())
                        last = time.monotonic()
            except (OSError, EOFError):     # the controller is gone
                os._exit(0)

    link.on_connect(lambda: _safe_send(reports, send_lock, state()))
    threading.Thread(target=sender, name="ingest-sender", daemon=True).start()
    link.start(None)
    while True:
        try:
            cmd = commands.recv()
        except (EOFError, OSError):          # the controller ended (or was killed): so does this
            break
        what = cmd[0]
        if what == "publish":
            link.publish(cmd[1], cmd[2], qos=cmd[3])
        elif what == "publish_many":
            for topic, payload in cmd[1]:
                link.publish(topic, payload, qos=cmd[2])
        elif what == "subscribe":
            _, flt, qos, kinds = cmd
            link.subscribe(flt, forward(flt), expect=tuple(M.MESSAGES[k] for k in kinds), qos=qos)
        elif what == "stop":
            break
    try:
        link.stop()
    finally:
        _safe_send(reports, send_lock, ("state", {"connected": False, "rejected": link.rejected,
                                                  "fatal": link.fatal, "stopped": True}))
        os._exit(0)


class UrgentGate:
    """The controller's lock, shared by the report intake, which takes it over runs of reports,
    and urgent handlers (intents, job states), which should wait for neither a whole run nor
    the hand-over problem of a busy lock: a thread that releases a lock while it holds the GIL
    mostly takes it straight back before the waiter wakes. An urgent handler announces itself
    (:meth:`urgent`); the intake (``with gate:``) starts no new run while one is announced.
    """

    def __init__(self, lock, max_wait_s: float = 0.05):
        self.lock, self.max_wait_s = lock, max_wait_s
        self._urgent = 0
        self._cv = threading.Condition(threading.Lock())

    @contextlib.contextmanager
    def urgent(self):
        with self._cv:
            self._urgent += 1
        try:
            with self.lock:
                yield
        finally:
            with self._cv:
                self._urgent -= 1
                if not self._urgent:
                    self._cv.notify_all()

    def __enter__(self):
        if self._urgent:          # (read without the condition's lock: a miss costs one run)
            with self._cv:        # bounded: a stream of urgent work does not starve the intake
                self._cv.wait_for(lambda: not self._urgent, self.max_wait_s)
        return self.lock.__enter__()

    def __exit__(self, *exc):
        return self.lock.__exit__(*exc)


def _safe_send(conn, lock, msg) -> None:
    try:
        with lock:
            conn.send(msg)
    except (OSError, EOFError):
        pass


class IngestProcess:
    def __init__(self, client_id: str, broker: str, *, username: str | None = None, password: str | None = None,
                 ca_file: str | None = None, batch_lock=None, batch_size: int = 16):
        self.client_id = client_id
        # the handlers take the caller's lock per message; holding it (re-entrant) over a run of
        # ``batch_size`` messages instead spares the threads that wait for it (the controller's
        # intents and job states) a hand-over per report, in which the intake, still holding the
        # GIL, would mostly take the lock straight back; an :class:`UrgentGate` also lets the
        # urgent handlers in between runs
        self._batch_lock, self._batch_size = batch_lock, batch_size
        self._args = (client_id, broker, username, password, ca_file)
        self._handlers: dict[str, object] = {}
        self._pending: list = []            # commands before the child runs
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self._child_rejected = self._errors = 0
        self._fatal: str | None = None
        self.stopping = False
        self.proc = None

    @property
    def fatal(self) -> str | None:
        return self._fatal

    @property
    def rejected(self) -> int:
        """Messages the child rejected (validation) and the handler failed on."""
        return self._child_rejected + self._errors

    def start(self, wait_s: float | None = 10.0) -> "IngestProcess":
        ctx = mp.get_context("spawn")        # the controller has threads: no fork
        self._reports, child_reports = ctx.Pipe(duplex=False)
        child_commands, self._commands = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_child, args=(child_reports, child_commands, *self._args,
                                                     logging.getLogger().getEffectiveLevel()),
                                name=f"{self.client_id}-intake", daemon=True)
        self.proc.start()
        child_reports.close()
        child_commands.close()
        threading.Thread(target=self._read, name="controller-intake", daemon=True).start()
        with self._lock:
            pending, self._pending = self._pending, None
        for cmd in pending:
            self._send(cmd)
        if wait_s is not None and not self.connected.wait(wait_s):
            self.stop()
            raise ConnectionError(f"{self.client_id}: no connection to the broker within {wait_s:g} s")
        return self

    def _send(self, cmd) -> None:
        with self._lock:
            if self._pending is not None:
                self._pending.append(cmd)
                return
            try:
                self._commands.send(cmd)
            except (OSError, EOFError):
                pass                      # the child is gone: _read says so

    def subscribe(self, flt: str, handler, expect=None, qos: int = 1) -> None:
        """``handler(msg, topic, None)`` for each valid message on ``flt`` (decoded in the child)."""
        kinds = [M.KIND_OF[c] for c in (expect if isinstance(expect, tuple) else (expect,))]
        self._handlers[flt] = handler
        self._send(("subscribe", flt, qos, kinds))

    def publish(self, topic: str, payload, *, qos: int = 0, **_):
        """Publish (from the child's connection) an encoded message, e.g. an ack."""
        self._send(("publish", topic, payload if isinstance(payload, (bytes, bytearray)) else M.encode(payload), qos))

    def publish_many(self, items, *, qos: int = 0) -> None:
        """Publish several (topic, encoded message) pairs with one hand-over to the child."""
        items = [(t, p if isinstance(p, (bytes, bytearray)) else M.encode(p)) for t, p in items]
        if items:
            self._send(("publish_many", items, qos))

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stopping = True
        if self.proc is None:
            return
        self._send(("stop",))
        self.proc.join(timeout_s)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(1)

    def _handle(self, reports) -> None:
        for key, topic, msg in reports:
            try:
                self._handlers[key](msg, topic, None)
            except Exception:
                self._errors += 1
                log.exception("%s: handler for %s failed; message dropped", self.client_id, topic)

    def _read(self) -> None:
        while True:
            try:
                what, arg = self._reports.recv()
            except (EOFError, OSError):
                break
            if what == "reports":
                for i in range(0, len(arg), self._batch_size):
                    if self._batch_lock is None:
                        self._handle(arg[i:i + self._batch_size])
                    else:
                        with self._batch_lock:
                            self._handle(arg[i:i + self._batch_size])
            else:
                self._child_rejected = arg["rejected"]
                if arg["connected"]:
                    self.connected.set()
                else:
                    self.connected.clear()
                if arg["fatal"]:
                    self._fatal = arg["fatal"]
        self.connected.clear()
        if not self.stopping and self._fatal is None:
            code = self.proc.exitcode if self.proc is not None else None
            self._fatal = f"{self.client_id}: the QoS-report intake process ended unexpectedly (exit code {code})"
            log.error(self._fatal)
