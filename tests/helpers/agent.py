"""A real mosquitto (password auth + per-node ACLs) on a free loopback port, plus helpers."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import SAMPLES, write_png

NODE_IDS = ["n1", "n2", "n3", "mallory"]


class AgentEnv:
    def __init__(self, tmp: Path):
        from testbed.agent.broker import Broker, free_port, init_broker_dir

        self.tmp = tmp
        self.port = free_port()
        self.broker_dir = tmp / "broker"
        self.creds = init_broker_dir(self.broker_dir, NODE_IDS, port=self.port)
        self.broker = Broker(self.broker_dir, self.port).start()
        self.url = self.broker.url
        self.started: list = []

    def controller(self, **kw):
        from testbed.agent.controller import Controller, ControllerOptions

        kw.setdefault("out", str(self.tmp / "controller"))
        kw.setdefault("status_every_s", 0.3)
        c = Controller(ControllerOptions(self.url, password=self.creds["controller"], **kw)).start()
        self.started.append(c)
        return c

    def node(self, node_id: str, **kw):
        from testbed.agent.node import Node, NodeOptions

        kw.setdefault("state_dir", str(self.tmp / f"state-{node_id}"))
        kw.setdefault("resend_s", 1.0)
        n = Node(NodeOptions(self.url, node_id, password=self.creds[node_id], **kw)).start()
        self.started.append(n)
        return n

    def client(self, user: str, client_id: str | None = None, password: str | None = None):
        from testbed.agent.mqttlink import MqttLink

        c = MqttLink(client_id or f"{user}-test", self.url, username=user,
                     password=self.creds[user] if password is None else password)
        self.started.append(c)
        return c

    def close(self):
        for x in reversed(self.started):
            try:
                x.stop()
            except Exception:
                pass
        self.broker.stop()


def crop_images(folder: Path, n: int = 3, h: int = 128, w: int = 192) -> Path:
    """``n`` photo crops (from the shipped Kodak samples) small enough for quick loopback runs."""
    from testbed.core.images import load_rgb

    folder.mkdir(parents=True, exist_ok=True)
    srcs = sorted(SAMPLES.glob("*.png"))
    for i in range(n):
        img = load_rgb(srcs[i % len(srcs)])
        y, x = 64 + 32 * (i // len(srcs)), 96
        write_png(folder / f"crop{i}.png", np.ascontiguousarray(img[y:y + h, x:x + w]))
    return folder


def wait_until(pred, timeout_s: float, what: str, every: float = 0.1):
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
