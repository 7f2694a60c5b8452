"""A small MQTT 3.1.1 client for the simulated nodes of the control-plane benchmark
(:mod:`testbed.agent.simnodes`), driven by the benchmark's own selector loop.

With paho (its v5 properties, message-info objects, callbacks and locks for every packet), 1000
simulated nodes sending 2000 reports a second and reading their acks took 0.46-0.52 of the
machine's two cores on average (about 0.7 at the rounds' peak), CPU that the controller under
test then lacked; with this client, 0.24-0.29. The nodes need only a few packet types: CONNECT (with user name,
password and a retained last will), SUBSCRIBE, PUBLISH at QoS 0 and 1 both ways, PUBACK,
PINGREQ and DISCONNECT. This client builds and parses those and nothing else; the agents
themselves (``testbed node``, the controller) use paho.
"""
from __future__ import annotations

import socket
import struct
import time

CONNACK, PUBLISH = 2, 3
PINGREQ, DISCONNECT = b"\xc0\x00", b"\xe0\x00"


def _length(n: int) -> bytes:
    """MQTT's variable-length 'remaining length'."""
    out = bytearray()
    while True:
        n, b = divmod(n, 128)
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _str(b: bytes) -> bytes:
    return struct.pack("!H", len(b)) + b


def packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _length(len(body)) + body


class SimClient:
    """One MQTT 3.1.1 connection. The owner's loop calls :meth:`read` when the socket is
    readable, :meth:`write` while :meth:`want_write`, and :meth:`tick` about once a second (the
    keep-alive). ``on_connect(return_code)``, ``on_message(topic, payload)`` and ``on_close()``
    are called from those. Packets are queued and go out at the next :meth:`write`."""

    def __init__(self, client_id: str, username: str, password: str,
                 will: tuple[str, bytes, int, bool] | None = None, keepalive: int = 20):
        self.client_id, self.username, self.password = client_id, username, password
        self.will, self.keepalive = will, keepalive
        self.on_connect = self.on_message = self.on_close = None
        self.sock: socket.socket | None = None
        self._in, self._out = bytearray(), bytearray()
        self._mid = 0
        self.last_out = 0.0

    # ---- connection ----------------------------------------------------------------------------
    def connect(self, host: str, port: int, timeout_s: float = 5.0) -> socket.socket:
        """Open the TCP connection and queue CONNECT (clean session); OSError if it fails."""
        s = socket.create_connection((host, port), timeout=timeout_s)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s
        self._in.clear()
        self._out.clear()
        flags, payload = 0x02, _str(self.client_id.encode())
        if self.will:
            topic, msg, qos, retain = self.will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            payload += _str(topic.encode()) + _str(msg)
        if self.username:
            flags |= 0x80
            payload += _str(self.username.encode())
        if self.password:
            flags |= 0x40
            payload += _str(self.password.encode())
        self._out += packet(0x10, _str(b"MQTT") + bytes((4, flags)) + struct.pack("!H", self.keepalive) + payload)
        return s

    def disconnect(self) -> None:
        """Queue DISCONNECT; the broker closes the connection (no last will)."""
        if self.sock is not None:
            self._out += DISCONNECT

    def close(self) -> None:
        """Close the connection; ``on_close`` is told first (the socket still open)."""
        if self.sock is None:
            return
        try:
            if self.on_close:
                self.on_close()
        finally:
            self.sock.close()
            self.sock = None
            self._in.clear()
            self._out.clear()

    # ---- out -----------------------------------------------------------------------------------
    def _next_mid(self) -> bytes:
        self._mid = self._mid % 65535 + 1
        return struct.pack("!H", self._mid)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        if self.sock is None:
            return
        body = _str(topic.encode()) + (self._next_mid() if qos else b"") + payload
        self._out += packet(0x30 | (qos << 1) | (1 if retain else 0), body)

    def subscribe(self, topics: list[tuple[str, int]]) -> None:
        if self.sock is None:
            return
        self._out += packet(0x82, self._next_mid() + b"".join(_str(t.encode()) + bytes((q,)) for t, q in topics))

    def want_write(self) -> bool:
        return bool(self._out) and self.sock is not None

    def write(self) -> None:
        """Send what is queued (as much as the socket takes)."""
        if not self._out or self.sock is None:
            return
        try:
            n = self.sock.send(self._out)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        del self._out[:n]
        self.last_out = time.monotonic()

    def tick(self, now: float) -> None:
        """A PINGREQ when nothing went out for half the keep-alive."""
        if self.sock is not None and now - self.last_out >= self.keepalive / 2:
            self._out += PINGREQ
            self.last_out = now

    # ---- in ------------------------------------------------------------------------------------
    def read(self) -> None:
        """Read what the socket holds and handle every whole packet in it."""
        if self.sock is None:
            return
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:                 # the broker closed the connection
            self.close()
            return
        buf = self._in
        buf += data
        pos, end = 0, len(buf)
        while pos + 2 <= end:
            i, length, mult = pos + 1, 0, 1
            while i < end:
                b = buf[i]
                length += (b & 0x7F) * mult
                mult *= 128
                i += 1
                if not b & 0x80:
                    break
            else:
                break                # the length itself is not complete yet
            if i + length > end:
                break
            self._handle(buf[pos], bytes(buf[i:i + length]))
            if self.sock is None:    # closed by a callback
                return
            pos = i + length
        del buf[:pos]

    def _handle(self, first: int, body: bytes) -> None:
        kind = first >> 4
        if kind == PUBLISH:
            n = (body[0] << 8) | body[1]
            topic, p = body[2:2 + n].decode(), 2 + n
            if first & 0x06:         # QoS 1: acknowledge it
                self._out += b"\x40\x02" + body[p:p + 2]
                p += 2
            if self.on_message:
                self.on_message(topic, body[p:])
        elif kind == CONNACK:
            if self.on_connect:
                self.on_connect(body[1])
        # SUBACK, PUBACK, PINGRESP: nothing to do
