"""Control-plane benchmark: N simulated nodes against one mosquitto on loopback and the real
``testbed controller`` (its own process).

The simulated nodes are MQTT clients with their own user names under the ACL; they announce
themselves, accept jobs, and stream synthetic QoS reports (no radio, no codec: this measures the
agent layer, not the PHY). Measured:

* intent-to-assignment latency: from publishing an intent (operator side) to the assigned node
  receiving its job, p50/p95/p99/max over all intents;
* QoS reports per second acknowledged by the controller (acks arrive only after the reports are
  on the controller's disk), and whether every report reached ``qos.csv``.

    python -m testbed.agent.bench --nodes 200 --rounds 3 --reports 20 --report-hz 5
"""
from __future__ import annotations

import argparse
import csv
import heapq
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from . import messages as M
from . import topics as T
from .broker import Broker, free_port, init_broker_dir
from .mqttlink import MqttLink
from .transfer import held_models


class SimNode:
    def __init__(self, bench: "Bench", node_id: str, password: str):
        self.b, self.id = bench, node_id
        self.link = MqttLink(f"sim-{node_id}", bench.url, username=node_id, password=password,
                             will=(T.node(node_id, "status"), M.NodeStatus(node_id, False)))
        self.link.subscribe(T.to(node_id, "job"), self._on_job, expect=(M.Job, M.JobUpdate, M.JobCancel))
        self.link.subscribe(T.to(node_id, "ack"), self._on_ack, expect=M.Ack)
        self.link.on_connect(lambda: self.link.publish(
            T.node(node_id, "status"), M.NodeStatus(node_id, True, models=bench.models, model_sha256=bench.shas),
            retain=True))
        self.seen_jobs: set[str] = set()
        self.events = 0

    def _state(self, job: str, state: str, n: int = 0) -> None:
        self.events += 1
        self.link.publish(T.node(self.id, "job_state"),
                          M.JobState(M.event_id(self.id, job, state, self.events), self.id, job, state, n))

    def _on_job(self, msg, topic, props) -> None:
        if not isinstance(msg, M.Job):
            return
        t = time.perf_counter()
        if msg.job_id in self.seen_jobs:
            return
        self.seen_jobs.add(msg.job_id)
        self.b.on_assigned(msg.intent_id, t)
        self._state(msg.job_id, "accepted")
        self._state(msg.job_id, "running")
        self.b.schedule(self, msg, 0)

    def report(self, job: M.Job, seq: int) -> None:
        r = M.QosReport(report_id=M.report_id(self.id, job.job_id, seq), node_id=self.id, job_id=job.job_id,
                        intent_id=job.intent_id, link_id=job.link_id, seq=seq, image=f"synthetic{seq}.png",
                        model=job.model, model_sha256=job.model_sha256, cbr=job.cbr, snr_tx_db=job.snr_db,
                        snr_est_db=job.snr_db, psnr_db=30.0, latency_ms=50.0, frames_sent=1, frames_decoded=1,
                        decision=job.decision)
        self.link.publish(T.node(self.id, "qos"), r)
        self.b.count_sent()
        if seq + 1 == self.b.reports:
            self._state(job.job_id, "done", seq + 1)

    def _on_ack(self, ack: M.Ack, topic, props) -> None:
        self.b.count_acked(sum(1 for i in ack.ids if ":state:" not in i and i.count(":") == 2))


class Bench:
    def __init__(self, a):
        self.a = a
        self.reports = a.reports
        self.lock = threading.Lock()
        self.t_sent: dict[str, float] = {}
        self.latency: dict[str, float] = {}
        self.sent = self.acked = 0
        self.ack_times: list[float] = []
        self.heap: list = []
        self.cv = threading.Condition()
        self.stop = threading.Event()
        from ..core.paths import shipped_models

        models = held_models(shipped_models(), "bench")
        self.models = sorted(models)
        self.shas = [models[m][0] for m in self.models]

    def on_assigned(self, intent_id: str, t: float) -> None:
        with self.lock:
            t0 = self.t_sent.get(intent_id)
            if t0 is not None:
                self.latency[intent_id] = t - t0

    def count_sent(self) -> None:
        with self.lock:
            self.sent += 1

    def count_acked(self, n: int) -> None:
        with self.lock:
            self.acked += n
            self.ack_times.extend([time.perf_counter()] * n)

    def schedule(self, node: SimNode, job: M.Job, seq: int, at: float | None = None) -> None:
        with self.cv:
            heapq.heappush(self.heap, (at if at is not None else time.perf_counter() + 1.0 / self.a.report_hz,
                                       id(node), seq, node, job))
            self.cv.notify()

    def _reporter(self) -> None:
        while not self.stop.is_set():
            with self.cv:
                while not self.heap and not self.stop.is_set():
                    self.cv.wait(0.2)
                if self.stop.is_set():
                    return
                t, _, seq, node, job = self.heap[0]
                now = time.perf_counter()
                if t > now:
                    self.cv.wait(t - now)
                    continue
                heapq.heappop(self.heap)
            node.report(job, seq)
            if seq + 1 < self.reports:
                self.schedule(node, job, seq + 1, t + 1.0 / self.a.report_hz)

    def run(self) -> dict:
        a = self.a
        work = Path(tempfile.mkdtemp(prefix="bench-agent-"))
        ids = [f"sim{i:03d}" for i in range(a.nodes)]
        port = free_port()
        print(f"bench: writing the broker config for {a.nodes} nodes ...", file=sys.stderr)
        creds = init_broker_dir(work / "broker", ids, port=port)
        broker = Broker(work / "broker", port).start()
        self.url = broker.url
        out = Path(a.out or time.strftime("runs/bench-agent-%Y%m%d-%H%M%S"))
        if (out / "controller").exists():
            raise FileExistsError(f"{out / 'controller'}: exists (a controller resumes its folder, so the reports "
                                  f"would count as duplicates); pick a new --out")
        out.mkdir(parents=True, exist_ok=True)
        ctl_out = out / "controller"
        ctl = subprocess.Popen([sys.executable, "-m", "testbed", "controller", "--broker", self.url,
                                "--password-file", str(work / "broker" / "controller.password"),
                                "--out", str(ctl_out)], stderr=open(out / "controller.log", "w"))
        nodes: list[SimNode] = []
        op = None
        try:
            op = MqttLink("operator-bench", self.url, username="operator", password=creds["operator"])
            rt = T.reply("operator") + "/bench"
            op.subscribe_replies(rt, (M.IntentReply, M.ControllerStatus))
            replies: dict[str, M.IntentReply] = {}
            op.subscribe(rt + "/intents", lambda m, t, p: replies.__setitem__(m.intent_id, m), expect=M.IntentReply)
            op.start()
            t0 = time.perf_counter()
            for nid in ids:
                n = SimNode(self, nid, creds[nid])
                n.link.start(wait_s=None)
                nodes.append(n)
            self._wait(lambda: all(n.link.connected.is_set() for n in nodes), 60, "all nodes connected")
            def all_seen():
                try:
                    st = op.request(T.intents(), M.StatusRequest(), rt, M.ControllerStatus, timeout_s=2)
                except TimeoutError:       # the controller is still starting
                    return False
                return sum(x["online"] for x in st.nodes) == a.nodes
            self._wait(all_seen, 120, "the controller to see every node", every=0.5)
            print(f"bench: {a.nodes} nodes online after {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            rep = threading.Thread(target=self._reporter, daemon=True)
            rep.start()
            t_start = time.perf_counter()
            for r in range(a.rounds):
                for i, nid in enumerate(ids):
                    iid = f"r{r}-{nid}"
                    intent = M.Intent(iid, images=["samples"], nodes=[nid], qos=M.QosTarget(psnr_db=25.0),
                                      priority=r)
                    payload = M.encode(intent)
                    with self.lock:
                        self.t_sent[iid] = time.perf_counter()
                    op.publish(T.intents(), payload, response_topic=rt + "/intents", correlation=iid.encode())
                    time.sleep(1.0 / a.intent_hz)
                self._wait(lambda: len(self.latency) == (r + 1) * a.nodes, 60, f"round {r} assignments")
                # wait for this round's jobs to finish before the next round (nodes must be free)
                self._wait(lambda: self.sent >= (r + 1) * a.nodes * a.reports, 300, f"round {r} reports")
                time.sleep(0.5)
                print(f"bench: round {r + 1}/{a.rounds}: {len(self.latency)} intents assigned, {self.sent} reports "
                      f"sent, {self.acked} acknowledged", file=sys.stderr)
            total = a.rounds * a.nodes * a.reports
            self._wait(lambda: self.acked >= total, 120, "every report acknowledged")
            t_end = time.perf_counter()
            refused = [k for k, v in replies.items() if not v.accepted]
        finally:
            self.stop.set()
            for n in nodes:
                n.link.stop()
            if op is not None:
                op.stop()
            ctl.send_signal(2)
            try:
                ctl.wait(60)
            except subprocess.TimeoutExpired:
                ctl.kill()
            broker.stop()
        lat = np.array(sorted(self.latency.values())) * 1e3
        acks = np.array(self.ack_times)
        # steady-state rate: acknowledged reports per second over the whole report phase
        with open(ctl_out / "qos.csv", newline="") as f:
            rows = sum(1 for _ in csv.DictReader(f))
        res = {
            "nodes": a.nodes, "rounds": a.rounds, "intents": len(self.t_sent), "assigned": len(lat),
            "refused": len(refused), "reports_per_job": a.reports, "report_hz_per_node": a.report_hz,
            "intent_hz": a.intent_hz,
            "assign_latency_ms": {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
                                  "p99": float(np.percentile(lat, 99)), "max": float(lat.max())},
            "reports_sent": self.sent, "reports_acked": self.acked, "reports_in_qos_csv": rows,
            "acked_reports_per_s": float(len(acks) / (acks.max() - t_start)) if len(acks) else 0.0,
            "peak_acked_reports_per_s": _peak_rate(acks),
            "wall_s": t_end - t_start, "machine_cores": _cores(),
        }
        (out / "result.json").write_text(json.dumps(res, indent=2) + "\n")
        return res

    @staticmethod
    def _wait(pred, timeout_s, what, every=0.05):
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end:
            if pred():
                return
            time.sleep(every)
        raise TimeoutError(f"bench: timed out waiting for {what}")


def _peak_rate(times: np.ndarray, window_s: float = 1.0) -> float:
    if len(times) == 0:
        return 0.0
    t = np.sort(times)
    j = np.searchsorted(t, t + window_s)
    return float((j - np.arange(len(t))).max() / window_s)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.agent.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3, help="intents per node (one round = one intent per node)")
    p.add_argument("--reports", type=int, default=20, help="QoS reports per job")
    p.add_argument("--report-hz", type=float, default=5.0, help="QoS reports per second per busy node")
    p.add_argument("--intent-hz", type=float, default=100.0, help="intents submitted per second")
    p.add_argument("--out", help="run folder (default runs/bench-agent-<time>)")
    a = p.parse_args(argv)
    res = Bench(a).run()
    lat = res["assign_latency_ms"]
    print(f"{res['nodes']} nodes, {res['intents']} intents ({res['refused']} refused): intent->assignment "
          f"p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms; "
          f"QoS reports {res['reports_acked']}/{res['reports_sent']} acknowledged, {res['reports_in_qos_csv']} in "
          f"qos.csv, {res['acked_reports_per_s']:.0f}/s sustained, {res['peak_acked_reports_per_s']:.0f}/s peak")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
