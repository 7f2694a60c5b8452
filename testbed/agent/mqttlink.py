"""A thin MQTT v5 client (paho-mqtt 2.x, VERSION2 callbacks) for the agent layer.

* typed messages (:mod:`testbed.agent.messages`) in and out; an incoming message that fails
  validation is logged, counted in :attr:`MqttLink.rejected` and dropped, and never raises;
* subscriptions are re-made after every (re)connect, ``on_connect`` hooks run then (e.g. a node
  re-sends its unacknowledged QoS reports); reconnects back off from 0.2 s to 2 s;
* request/response with the v5 response topic and correlation data (:meth:`request`);
* message expiry where stale messages would mislead (:meth:`publish` ``expiry_s``);
* a session taken over by another client with the same client id ends the connection for good,
  with the reason in :attr:`MqttLink.fatal`, instead of the two clients taking the session from
  each other in a loop: on MQTT v5 reason 0x8E, or, since some brokers (Debian's mosquitto
  2.0) close the taken-over connection without a reason, when the broker closes a fresh
  connection ``FLAP_LIMIT`` times within ``FLAP_WINDOW_S`` (every process uses a client id of
  its own: :mod:`testbed.agent.unique`).

Broker URLs: ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...`` (TLS; ``ca_file``).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote, urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from . import messages as M
from .mqttclient import BufferedClient

log = logging.getLogger(__name__)


@dataclass
class BrokerUrl:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> "BrokerUrl":
        u = urlparse(url if "://" in url else f"mqtt://{url}")
        if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"--broker {url!r}: scheme must be mqtt:// or mqtts://")
        if not u.hostname:
            raise ValueError(f"--broker {url!r}: no host")
        tls = u.scheme in ("mqtts", "ssl")
        try:
            port = u.port or (8883 if tls else 1883)
        except ValueError:
            raise ValueError(f"--broker {url!r}: bad port") from None
        return cls(u.hostname, port, tls, unquote(u.username) if u.username else None,
                   unquote(u.password) if u.password else None)


def read_password(password_file: str | None) -> str | None:
    """From ``--password-file`` or ``$TESTBED_MQTT_PASSWORD`` (never on the command line)."""
    if password_file:
        try:
            return open(password_file).read().strip()
        except OSError as e:
            raise ValueError(f"--password-file {password_file}: {e.strerror}") from None
    return os.environ.get("TESTBED_MQTT_PASSWORD")


def response_of(props) -> tuple[str | None, bytes | None]:
    """The v5 response topic and correlation data of an incoming message (None: absent)."""
    if props is None:
        return None, None
    return getattr(props, "ResponseTopic", None), getattr(props, "CorrelationData", None)


FLAP_LIMIT, FLAP_WINDOW_S, FLAP_FRESH_S = 5, 60.0, 5.0   # see the module docstring

# MQTT v5 CONNACK reasons that mean the credentials are wrong (retrying cannot help)
_AUTH_REFUSALS = ("Not authorized", "Bad user name or password")


class MqttLink:
    def __init__(self, client_id: str, broker: str, *, username: str | None = None, password: str | None = None,
                 ca_file: str | None = None, will: tuple[str, object] | None = None, v5: bool = True):
        self.url = BrokerUrl.parse(broker)
        self.client_id = client_id
        self.rejected = 0
        self.denied = 0
        self.connects = 0
        self.stopping = False
        self.connected = threading.Event()
        self.refused: str | None = None        # why the broker refused us (bad credentials), if it did
        self.fatal: str | None = None          # why this link gave up for good (session taken over)
        self.fatal_event = threading.Event()
        self._connected_at = 0.0
        self._flaps: list[float] = []          # when the broker closed a connection younger than FLAP_FRESH_S
        self._refused = threading.Event()
        self._subs: dict[str, tuple[int, Callable, object]] = {}
        self._route: dict[str, str | None] = {}   # topic -> the subscription filter it matches (a cache)
        self._on_connect_hooks: list[Callable[[], None]] = []
        self._waiters: dict[bytes, tuple[threading.Event, list]] = {}
        self._lock = threading.Lock()
        # v5: response topics, correlation data, expiry, reason codes. A connection that needs
        # none of them (the controller's telemetry) may use 3.1.1, which spares paho the parsing
        # of a properties block per message
        c = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                           protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
        user = username or self.url.username
        pw = password if password is not None else self.url.password
        if user:
            c.username_pw_set(user, pw)
        self._user, self._has_password = user, pw is not None
        if self.url.tls:
            c.tls_set(ca_certs=ca_file)
        if will is not None:
            topic, msg = will
            c.will_set(topic, M.encode(msg), qos=1, retain=True)
        c.reconnect_delay_set(min_delay=0.2, max_delay=2)
        c.suppress_exceptions = True    # a failing callback is logged; the network thread lives on
        c.max_queued_messages_set(0)    # unlimited: QoS 1 messages wait in memory while disconnected
        # no window of QoS 1 messages awaiting their PUBACK (paho's default is 20): with one, a
        # flood of incoming reports delays the PUBACKs, and acks and jobs queue behind the window
        c.max_inflight_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        self.client = c

    # ---- connection -------------------------------------------------------------------------
    def start(self, wait_s: float | None = 10.0) -> "MqttLink":
        """Connect in the background (and keep reconnecting); wait up to ``wait_s`` for the first
        connection (None: do not wait)."""
        self.client.connect_async(self.url.host, self.url.port, keepalive=10, clean_start=True)
        self.client.loop_start()
        if wait_s is None:
            return self
        t_end = time.monotonic() + wait_s
        while not self.connected.wait(0.05):
            if self._refused.is_set():   # wrong credentials do not get better by retrying
                self.stop()
                hint = ("no password given: --password-file or $TESTBED_MQTT_PASSWORD" if not self._has_password
                        else "check the password file")
                raise ConnectionError(f"{self.client_id}: the broker at {self.url.host}:{self.url.port} refused "
                                      f"user {self._user or '(none)'!r}: {self.refused} ({hint})")
            if time.monotonic() > t_end:
                self.stop()
                raise ConnectionError(f"{self.client_id}: no connection to the broker at {self.url.host}:"
                                      f"{self.url.port} within {wait_s:g} s (running? user/password right?)")
        return self

    def stop(self) -> None:
        self.stopping = True
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def on_connect(self, hook: Callable[[], None]) -> None:
        self._on_connect_hooks.append(hook)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            if str(reason_code) in _AUTH_REFUSALS:
                self.refused = str(reason_code)
                self._refused.set()
            if self.connects or not self._refused.is_set():   # before start() gives up: start() says it
                log.error("%s: broker refused the connection: %s", self.client_id, reason_code)
            return
        self.connects += 1
        self._connected_at = time.monotonic()
        sock = client.socket()
        if sock is not None and hasattr(sock, "setsockopt"):   # small messages: no Nagle delay
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        log.info("%s: connected to %s:%d (connection %d)", self.client_id, self.url.host, self.url.port,
                 self.connects)
        for flt, (qos, _, _) in list(self._subs.items()):
            client.subscribe(flt, qos=qos)
        self.connected.set()
        for hook in self._on_connect_hooks:
            try:
                hook()
            except Exception:
                log.exception("%s: on-connect hook failed", self.client_id)

    def fail(self, why: str) -> None:
        """Give up for good: no more reconnects; :attr:`fatal` says why (the process should end)."""
        if self.fatal is None:
            self.fatal = why
            log.error("%s: %s", self.client_id, why)
        self.fatal_event.set()
        self.stopping = True
        try:
            self.client.disconnect()
            self.client.loop_stop()     # from the network thread itself: ends its loop, joins nothing
        except Exception:
            pass

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        if self.stopping:
            return
        if getattr(reason_code, "value", None) == 0x8E:      # Session taken over
            self.fail(f"the broker ended this session: another client connected with the client id "
                      f"{self.client_id!r} (MQTT reason: {reason_code}); not reconnecting")
            return
        now = time.monotonic()
        if self._connected_at and now - self._connected_at < FLAP_FRESH_S:
            self._flaps = [t for t in self._flaps if now - t < FLAP_WINDOW_S] + [now]
            if len(self._flaps) >= FLAP_LIMIT:
                self.fail(f"the broker closed this session {len(self._flaps)} times within {FLAP_WINDOW_S:g} s, "
                          f"each within {FLAP_FRESH_S:g} s of connecting: another client is most likely using the "
                          f"client id {self.client_id!r} (last reason: {reason_code}); not reconnecting")
                return
        log.warning("%s: disconnected from the broker (%s); reconnecting", self.client_id, reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        if reason_code is not None and reason_code.is_failure:
            self.denied += 1
            log.warning("%s: the broker refused a publish (mid %d): %s", self.client_id, mid, reason_code)

    # ---- subscribe / publish ----------------------------------------------------------------
    def subscribe(self, flt: str, handler: Callable, expect=None, qos: int = 1) -> None:
        """``handler(msg, topic, props)`` for each valid message on ``flt`` of the ``expect`` kind(s)."""
        self._subs[flt] = (qos, handler, expect)
        self._route = {}
        if self.connected.is_set():
            self.client.subscribe(flt, qos=qos)

    def unsubscribe(self, flt: str) -> None:
        self._subs.pop(flt, None)
        self._route = {}
        if self.connected.is_set():
            self.client.unsubscribe(flt)

    def publish(self, topic: str, msg, *, qos: int = 1, retain: bool = False, expiry_s: float | None = None,
                response_topic: str | None = None, correlation: bytes | None = None):
        props = None
        if expiry_s is not None or response_topic or correlation is not None:
            props = Properties(PacketTypes.PUBLISH)
            if expiry_s is not None:
                props.MessageExpiryInterval = max(1, int(expiry_s))
            if response_topic:
                props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        payload = msg if isinstance(msg, (bytes, bytearray)) else M.encode(msg)
        return self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)

    def publish_many(self, items, *, qos: int = 1) -> None:
        """Publish several (topic, message) pairs."""
        for topic, msg in items:
            self.publish(topic, msg, qos=qos)

    def request(self, topic: str, msg, response_topic: str, expect, timeout_s: float = 10.0,
                expiry_s: float | None = None):
        """Publish ``msg`` with a response topic and fresh correlation data; return the first
        reply carrying that correlation data (``response_topic`` must be subscribed with
        :meth:`subscribe_replies`)."""
        corr = uuid.uuid4().bytes
        ev, box = threading.Event(), []
        with self._lock:
            self._waiters[corr] = (ev, box)
        try:
            self.publish(topic, msg, response_topic=response_topic, correlation=corr,
                         expiry_s=expiry_s if expiry_s is not None else timeout_s)
            if not ev.wait(timeout_s):
                raise TimeoutError(f"no reply on {response_topic} within {timeout_s:g} s")
            return box[0]
        finally:
            with self._lock:
                self._waiters.pop(corr, None)

    def subscribe_replies(self, response_topic: str, expect) -> None:
        def on_reply(msg, topic, props):
            _, corr = response_of(props)
            with self._lock:
                w = self._waiters.get(bytes(corr)) if corr is not None else None
            if w is None:
                log.debug("%s: reply without a waiting request on %s", self.client_id, topic)
                return
            w[1].append(msg)
            w[0].set()
        self.subscribe(response_topic, on_reply, expect=expect)

    def _filter_of(self, topic: str) -> str | None:
        """The subscription filter ``topic`` matches (topics repeat: matching is cached)."""
        try:
            return self._route[topic]
        except KeyError:
            pass
        flt = next((f for f in list(self._subs) if mqtt.topic_matches_sub(f, topic)), None)
        if len(self._route) > 100_000:      # bounded: node ids come and go
            self._route = {}
        self._route[topic] = flt
        return flt

    def _on_message(self, client, userdata, message):
        flt = self._filter_of(message.topic)
        if flt is None:
            return
        qos, handler, expect = self._subs[flt]
        if not message.payload:    # a cleared retained message
            return
        try:
            msg = M.decode(message.payload, where=message.topic, expect=expect)
        except Exception as e:     # MessageError, but also e.g. RecursionError from absurdly nested JSON
            self.rejected += 1
            log.warning("%s: rejected: %s", self.client_id, e if isinstance(e, M.MessageError) else
                        f"{message.topic}: undecodable payload ({type(e).__name__})")
            return
        try:
            handler(msg, message.topic, getattr(message, "properties", None))
        except Exception:
            self.rejected += 1
            log.exception("%s: handler for %s failed; message dropped", self.client_id, message.topic)
