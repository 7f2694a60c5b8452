"""BufferedClient's coalesced writes: whatever the socket takes at a time, the peer receives
every queued packet once, whole and in order."""
import random
import socket

import paho.mqtt.client as mqtt

from testbed.agent.mqttclient import BufferedClient


def _client_on(sock) -> BufferedClient:
    c = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t")
    c._sock = sock
    return c


def _drain(sock, into: bytearray) -> None:
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        if not data:
            return
        into += data


def test_coalesced_writes_deliver_every_packet_once_in_order_through_partial_sends():
    rng = random.Random(1)
    a, b = socket.socketpair()
    for s in (a, b):
        s.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)     # the socket takes part of a batch
    c = _client_on(a)
    c.WRITE_SIZE = 8192
    expected, got, infos = bytearray(), bytearray(), []
    for i in range(400):
        packet = bytes([0x30 | (i % 2) << 1]) + rng.randbytes(rng.randint(1, 3000))
        qos = i % 2
        info = mqtt.MQTTMessageInfo(i + 1) if qos == 0 else None
        infos.append(info)
        expected += packet
        c._out_packet.append({"command": packet[0] & 0xF0, "mid": i + 1, "qos": qos, "pos": 0,
                              "to_process": len(packet), "packet": packet, "info": info})
        if i % 7 == 0:                    # queued faster than written: batches of several packets
            assert c._packet_write() in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN)
            _drain(b, got)
    for _ in range(10000):
        if not c.want_write():
            break
        assert c._packet_write() in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN)
        _drain(b, got)
    _drain(b, got)
    assert not c.want_write()
    assert bytes(got) == bytes(expected)
    assert all(info.is_published() for info in infos if info is not None)
    a.close()
    b.close()


def test_no_socket_keeps_the_queue_and_answers_as_paho_does():
    codes = []
    for cls in (mqtt.Client, BufferedClient):
        c = cls(mqtt.CallbackAPIVersion.VERSION2, client_id="t")      # not connected: no socket
        for mid in (1, 2):
            c._out_packet.append({"command": 0x30, "mid": mid, "qos": 1, "pos": 0, "to_process": 5,
                                  "packet": b"\x30\x03abc", "info": None})
        codes.append(c._packet_write())
        assert [p["mid"] for p in c._out_packet] == [1, 2] and c._out_packet[0]["pos"] == 0
    assert codes[0] == codes[1]


def _publish_packet(topic: str, payload: bytes) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic.encode() + payload
    assert len(body) < 128
    return bytes([0x30, len(body)]) + body


def test_a_packet_queued_by_another_thread_goes_out_before_the_next_buffered_message_is_handled():
    """The controller's jobs and replies are published from its journal thread: they must not wait
    until the network thread has handled every message already read into its buffer."""
    a, b = socket.socketpair()
    for s in (a, b):
        s.setblocking(False)
    c = _client_on(a)
    c._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
    b.sendall(b"".join(_publish_packet("t/x", b"m%d" % i) for i in range(20)))   # one read buffers all 20
    job = b"\x30\x05\x00\x01jjj"
    seen_by_peer = []

    def on_message(client, userdata, msg):
        if msg.payload == b"m0":        # another thread queues a packet while the burst is handled
            c._urgent = True
            c._out_packet.append({"command": 0x30, "mid": 1, "qos": 1, "pos": 0, "to_process": len(job),
                                  "packet": job, "info": None})
        got = bytearray()
        _drain(b, got)
        seen_by_peer.append(bytes(got))

    c.on_message = on_message
    c.loop_read()
    assert len(seen_by_peer) == 20
    assert seen_by_peer[1] == job               # written before the second message was handled
    a.close()
    b.close()
