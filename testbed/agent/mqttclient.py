"""paho's MQTT client with fewer system calls per message (the agent layer's hot path).

paho reads each packet with three or more ``recv`` calls and writes each queued packet with a
``send`` of its own; every one of those calls gives up the GIL and waits to take it back behind
the process's other threads (the controller's journal writer, its report intake), so under load
the network thread spends more time queueing for the GIL than working. This client reads 64 KiB
at a time and writes whatever is queued in one ``send``; a packet queued by another thread (the
controller's jobs, from its journal writer) goes out before the next message already read is
handled, not after the whole burst; and when the socket is free, the thread that queued it
writes it itself (under a lock that the network thread's writes take too), instead of waking the
network thread and waiting for it to get the GIL.

It overrides private methods of paho 2.2 (``_sock_recv``, ``_sock_close``, ``_packet_queue``,
``_packet_write``); paho-mqtt is pinned and a test checks that they still exist.
"""
from __future__ import annotations

import threading

import paho.mqtt.client as mqtt


class BufferedClient(mqtt.Client):
    """paho's client, reading its socket 64 KiB at a time and writing up to 64 KiB of queued
    packets per ``send`` (paho: three or more ``recv`` per packet read, one ``send`` per packet
    written, one packet handled per ``select``).

    A QoS 0 publish counts as published once it is in the socket's buffer, as in paho, but
    ``on_publish`` is not called for it (paho calls it with a constant success code, which
    :class:`~testbed.agent.mqttlink.MqttLink`'s handler ignores); QoS 1 and 2 are unchanged."""

    READ_SIZE = WRITE_SIZE = 65536
    _rbuf, _rpos = b"", 0
    _urgent = False        # another thread queued a packet: written before the next message is handled

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(self.READ_SIZE)     # raises BlockingIOError when there is nothing
            if len(data) <= bufsize:                      # (b"": the connection closed)
                return data
            self._rbuf, self._rpos = data, 0
        chunk = self._rbuf[self._rpos:self._rpos + bufsize]
        self._rpos += len(chunk)
        return chunk

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0         # nothing of an old connection is read on a new one
        super()._sock_close()

    def _packet_queue(self, *args, **kwargs):
        # paho wakes its network thread through a socket pair for every packet queued, even one
        # queued by that thread itself (a PUBACK, a publish from a message callback), which will
        # write it before it next waits anyway: one system call per packet saved there. (Another
        # thread queueing meanwhile skips its wake too; the network thread, awake, writes it.)
        if threading.current_thread() is self._thread:
            w, self._sockpairW = self._sockpairW, None
            try:
                return super()._packet_queue(*args, **kwargs)
            finally:
                self._sockpairW = w
        w, self._sockpairW = self._sockpairW, None       # no wake-up if this thread writes it
        try:
            rc = super()._packet_queue(*args, **kwargs)
        finally:
            self._sockpairW = w
        if self._sock is not None and self._wlock.acquire(blocking=False):
            try:                      # the socket is free: write it (and whatever else is queued) now
                self._packet_write_locked()
            except Exception:         # the network thread sees the same error on its next write
                pass
            finally:
                self._wlock.release()
            if not self._out_packet:
                return rc
        self._urgent = True           # being written by the network thread, or the socket is full:
        if w is not None:             # leave it to the network thread, awake
            try:
                w.send(b"0")
            except BlockingIOError:
                pass
        return rc

    def loop_read(self, max_packets: int = 1):
        rc = super().loop_read(max_packets)
        n = 0          # packets already buffered: handle them now, select() would not wake for them
        while rc == mqtt.MQTT_ERR_SUCCESS and self._sock is not None and self._rpos < len(self._rbuf):
            if self._urgent:     # what other threads publish (the controller's jobs and replies)
                self._urgent = False          # does not wait behind a burst of incoming messages
                self.loop_write()
            rc = super().loop_read(1)
            n += 1
            if n % 100 == 0:     # a long flood: let what is queued (acks, PUBACKs, pings) out
                if self.want_write():
                    self.loop_write()
                self.loop_misc()
        return rc

    @property
    def _wlock(self) -> threading.Lock:
        lock = self.__dict__.get("_wlock_")
        if lock is None:
            lock = self.__dict__.setdefault("_wlock_", threading.Lock())
        return lock

    def _packet_write(self):
        with self._wlock:
            return self._packet_write_locked()

    def _packet_write_locked(self):
        q = self._out_packet
        while q:
            batch, size = [], 0        # whole packets from the queue's head (the first may be partly sent)
            while q and size < self.WRITE_SIZE:
                p = q.popleft()        # (other threads only append: popleft/appendleft stay ours)
                if p["command"] & 0xF0 == mqtt.DISCONNECT:
                    q.appendleft(p)    # paho closes the socket after it: its own path
                    break
                batch.append(p)
                size += p["to_process"]
            if not batch:
                return super()._packet_write()
            data = b"".join(p["packet"][p["pos"]:] for p in batch) if len(batch) > 1 else \
                batch[0]["packet"][batch[0]["pos"]:]
            try:
                sent = self._sock_send(data)
            except (AttributeError, ValueError):
                q.extendleft(reversed(batch))
                return mqtt.MQTT_ERR_SUCCESS
            except BlockingIOError:
                q.extendleft(reversed(batch))
                return mqtt.MQTT_ERR_AGAIN
            except OSError as err:
                q.extendleft(reversed(batch))
                self._easy_log(mqtt.MQTT_LOG_ERR, "failed to send on socket: %s", err)
                return mqtt.MQTT_ERR_CONN_LOST
            for i, p in enumerate(batch):
                n = min(sent, p["to_process"])
                p["to_process"] -= n
                p["pos"] += n
                sent -= n
                if p["to_process"]:                      # the socket took only part of the batch
                    q.extendleft(reversed(batch[i:]))
                    break
                if p["command"] & 0xF0 == mqtt.PUBLISH and p["qos"] == 0:
                    if p["info"] is not None:
                        p["info"]._set_as_published()
            else:
                continue
            break
        with self._msgtime_mutex:
            self._last_msg_out = mqtt.time_func()
        return mqtt.MQTT_ERR_SUCCESS

