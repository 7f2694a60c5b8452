"""Control-plane benchmark: N simulated nodes against one mosquitto on loopback and the real
``testbed controller`` (its own process).

The simulated nodes (:mod:`testbed.agent.simnodes`) run in ``--processes`` worker processes, many
per process on one selector loop, each an MQTT client with its own user name under the ACL; they
announce themselves, accept jobs and stream synthetic QoS reports, kept until acknowledged (no
radio, no codec: this measures the agent layer, not the PHY). Phases:

* connect: every node connects (CONNECT to CONNACK) and the controller sees it online;
* rounds: ``--rounds`` times one intent per node (``--intent-hz``), each job ``--reports``
  reports at ``--report-hz``: the intent-to-assignment latency, from publishing an intent
  (operator side) to the assigned node receiving its job, p50/p95/p99/max;
* flood (``--report-rate R``): all but a few probe nodes get one job each and then stream R
  reports/s in all for ``--duration`` s; measured are the reports acknowledged per second (the
  controller acknowledges a report only once it is fsync'ed in ``qos.csv``), the report-to-ack
  latency, and the intent-to-assignment latency of probe intents (``--probe-hz``) meanwhile.

At the end every report sent must be acknowledged and in ``qos.csv`` exactly once (``ok``).

    python -m testbed.agent.bench --nodes 1000 --processes 4 --rounds 2 --report-rate 2000 --duration 20
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import messages as M
from . import topics as T
from ..core.checks import number
from .broker import AUTOSAVE_S, Broker, free_port, init_broker_dir
from .benchtools import CpuMeter, Workers, cores, pct, peak_rate
from .mqttlink import MqttLink
from .transfer import held_models


class Bench:
    def __init__(self, a):
        self.a = a
        from ..core.paths import shipped_models

        models = held_models(shipped_models(), "bench")
        self.models = sorted(models)
        self.shas = [models[m][0] for m in self.models]
        self.t_sent: dict[str, float] = {}
        self.replies: dict[str, M.IntentReply] = {}
        self.t_reply: dict[str, float] = {}
        self.ctl_status: M.ControllerStatus | None = None

    def _on_reply(self, m: M.IntentReply, topic, props) -> None:
        self.t_reply.setdefault(m.intent_id, time.perf_counter())
        self.replies[m.intent_id] = m

    def say(self, text: str) -> None:
        if not self.a.quiet:
            print(f"bench: {text}", file=sys.stderr, flush=True)

    def _wait(self, pred, timeout_s, what, every=0.05):
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end:
            if self.w.failed:
                raise RuntimeError(f"bench: a simulated-node worker failed: {self.w.failed[0]}")
            if pred():
                return
            time.sleep(every)
        raise TimeoutError(f"bench: timed out after {timeout_s:g} s waiting for {what}")

    def _intent(self, iid: str, nid: str, reports: int, priority: int = 0) -> None:
        intent = M.Intent(iid, images=["samples"], max_images=1, repeat=reports, nodes=[nid],
                          qos=M.QosTarget(psnr_db=25.0), priority=priority)
        payload = M.encode(intent)
        self.t_sent[iid] = time.perf_counter()
        self.op.publish(T.intents(), payload, response_topic=self.rt, correlation=iid.encode())

    def _paced(self, items, hz: float, until: float | None = None) -> None:
        """Submit ``items`` ((intent id, node, reports)) at ``hz`` per second (until ``until``)."""
        t_next = time.perf_counter()
        for iid, nid, reports in items:
            if until is not None and t_next > until:
                return
            delay = t_next - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self._intent(iid, nid, reports)
            t_next += 1.0 / hz

    def _settled(self) -> bool:
        """Every job finished and every job state acknowledged (the controller has freed the nodes)."""
        return self.w.total("busy") == 0 and self.w.total("pending_states") == 0

    def run(self) -> dict:
        a = self.a
        out = Path(a.out or time.strftime("runs/bench-agent-%Y%m%d-%H%M%S"))
        if (out / "controller").exists():
            raise FileExistsError(f"--out {out}: holds a run already (a controller resumes its folder, so the "
                                  f"reports would count as duplicates); pick a new folder")
        out.mkdir(parents=True, exist_ok=True)
        ctl_out = out / "controller"
        work = Path(tempfile.mkdtemp(prefix="bench-agent-"))
        ids = [f"sim{i:03d}" for i in range(a.nodes)]
        procs = a.processes or max(1, min(8, math.ceil(a.nodes / 250)))
        port = free_port()
        load0 = os.getloadavg()
        t = time.perf_counter()
        self.say(f"writing the broker config for {a.nodes} nodes ...")
        creds = init_broker_dir(work / "broker", ids, port=port, autosave_s=self.a.broker_autosave_s)
        broker_init_s = time.perf_counter() - t
        broker = Broker(work / "broker", port).start()
        url = broker.url
        cmd = ["controller", "--broker", url, "--password-file", str(work / "broker" / "controller.password"),
               "--out", str(ctl_out)]
        prof = ["-m", "testbed.agent.benchprof", str(out / "controller-profile.txt"), "--"] \
            if a.profile_controller else ["-m", "testbed"]
        ctl_log = open(out / "controller.log", "w")
        ctl = subprocess.Popen([sys.executable, *prof, *cmd], stderr=ctl_log)
        self.op = self.w = None
        res: dict = {"out": str(out), "nodes": a.nodes, "processes": procs, "nodes_nice": a.nodes_nice,
                     "broker_autosave_s": a.broker_autosave_s, "rounds": a.rounds, "reports_per_job": a.reports,
                     "report_hz_per_node": a.report_hz, "intent_hz": a.intent_hz, "machine_cores": cores(),
                     "loadavg_at_start": [round(x, 2) for x in load0], "broker_init_s": round(broker_init_s, 2)}
        flood_n = max(0, a.nodes - (a.probe_nodes if a.probe_hz > 0 else 0)) if a.report_rate > 0 else 0
        flood_hz = a.report_rate / flood_n if flood_n else 0.0
        phases = {"r": {"hz": a.report_hz}, "f": {"hz": flood_hz, "hold": True}, "p": {"hz": 0.0}}
        try:
            self.op = MqttLink("operator-bench", url, username="operator", password=creds["operator"])
            self.rt = T.reply("operator") + "/bench/intents"
            self.op.subscribe(self.rt, self._on_reply, expect=M.IntentReply)
            self.op.subscribe(T.controller_status(), lambda m, t, p: setattr(self, "ctl_status", m),
                              expect=M.ControllerStatus, qos=0)
            self.op.start()
            t0 = time.perf_counter()
            self.w = Workers("127.0.0.1", port, [(n, creds[n]) for n in ids], procs, self.models, self.shas, phases,
                             a.resend_s, a.nodes_nice)
            self._wait(lambda: self.w.ready == procs, 60, "the worker processes")
            t_ready = time.perf_counter()
            self._wait(lambda: self.w.total("up") == a.nodes, a.connect_timeout, "all nodes connected")
            t_up = time.perf_counter()
            self._wait(lambda: self.ctl_status is not None and
                       sum(n["online"] for n in self.ctl_status.nodes) == a.nodes, 120,
                       "the controller to see every node", every=0.2)
            t_seen = time.perf_counter()
            # the status (every node and live link, about 150 KB a second at 1000 nodes) is not
            # needed after this: decoding it would hold up the operator's intents behind it
            self.op.unsubscribe(T.controller_status())
            res["connect"] = {"workers_ready_s": round(t_ready - t0, 2), "all_connected_s": round(t_up - t0, 2),
                              "controller_sees_all_s": round(t_seen - t0, 2)}
            self.say(f"{a.nodes} nodes in {procs} process(es): connected after {t_up - t0:.1f} s (workers ready "
                     f"after {t_ready - t0:.1f} s), all online at the controller after {t_seen - t0:.1f} s")
            self.pids = {"controller": [ctl.pid], "broker": [broker.proc.pid],
                         "sim_nodes": [p.pid for p in self.w.procs], "bench": [os.getpid()]}
            cpu = CpuMeter(self.pids)
            self.marks = {"start": time.perf_counter()}
            try:
                self._measure(ids, flood_n, res)
            except TimeoutError as e:          # the numbers so far still say something: keep them
                res["timed_out"] = str(e)
                self.say(f"{e}; stopping")
            self.marks.setdefault("rounds", time.perf_counter())
            self.marks["end"] = time.perf_counter()
            res["cpu"] = cpu.read()
        finally:
            if self.w is not None:
                self.w.stop()
            if self.op is not None:
                self.op.stop()
            ctl.send_signal(2)
            try:
                ctl.wait(120)
            except subprocess.TimeoutExpired:
                ctl.kill()
            ctl_log.close()
            broker.stop()
            shutil.copy(work / "broker" / "mosquitto.log", out / "mosquitto.log")
            shutil.rmtree(work, ignore_errors=True)     # passwords and the broker's persistence
        res = self._results(res, ctl_out)
        (out / "result.json").write_text(json.dumps(res, indent=2) + "\n")
        return res

    def _measure(self, ids: list[str], flood_n: int, res: dict) -> None:
        a = self.a
        for r in range(a.rounds):
            self._paced([(f"r{r}-{nid}", nid, a.reports) for nid in ids], a.intent_hz)
            rnd = [f"r{r}-{nid}" for nid in ids]
            self._wait(lambda: all(i in self.w.arrivals or (i in self.replies and not self.replies[i].accepted)
                                   for i in rnd), a.timeout, f"round {r} assignments")
            self._wait(lambda: self.w.total("sent") >= (r + 1) * a.nodes * a.reports and self._settled(), a.timeout,
                       f"round {r} reports")
            self.say(f"round {r + 1}/{a.rounds}: {len(self.w.arrivals)} intents assigned, "
                     f"{self.w.total('sent')} reports sent, {self.w.total('acked')} acknowledged")
        self.marks["rounds"] = time.perf_counter()
        if flood_n:
            self._flood(ids[:flood_n], ids[flood_n:], res.setdefault("flood", {}))
        self._wait(lambda: self.w.total("acked") >= self.w.total("sent") and self._settled(), a.timeout,
                   "every report acknowledged")

    def _flood(self, flood_ids: list[str], probe_ids: list[str], fl: dict) -> None:
        a = self.a
        hz = a.report_rate / len(flood_ids)
        n = max(1, math.ceil(hz * a.duration))
        sent0 = self.w.total("sent")
        self.say(f"flood: {len(flood_ids)} nodes x {n} reports at {hz:.2f}/s each ({a.report_rate:g}/s offered), "
                 f"{len(probe_ids)} probe nodes")
        self._paced([(f"f-{nid}", nid, n) for nid in flood_ids], a.intent_hz)
        self._wait(lambda: all(f"f-{nid}" in self.w.arrivals for nid in flood_ids), a.timeout, "the flood assignments")
        time.sleep(0.5)
        self.w.send(("go", None))
        t_go = time.perf_counter()
        cpu = CpuMeter(self.pids)
        if probe_ids:
            probes = ((f"p{k}-{probe_ids[k % len(probe_ids)]}", probe_ids[k % len(probe_ids)], 1)
                      for k in range(10 ** 9))
            self._paced(probes, a.probe_hz, until=t_go + a.duration)
        self._wait(lambda: self.w.total("sent") >= sent0 + len(flood_ids) * n, a.duration + a.timeout,
                   "the flood reports")
        t_sent = time.perf_counter()
        fl.update({"nodes": len(flood_ids), "probe_nodes": len(probe_ids), "reports_per_node": n,
                   "report_hz_per_node": round(hz, 3), "offered_per_s": a.report_rate, "duration_s": a.duration,
                   "t_go": t_go, "t_all_sent": t_sent, "cpu": cpu.read()})
        sent_probes = [i for i in self.t_sent if i[0] == "p"]
        self._wait(lambda: all(i in self.w.arrivals for i in sent_probes) and
                   self.w.total("acked") >= self.w.total("sent") and self._settled(), a.timeout,
                   "the flood's acknowledgements and probe assignments")
        fl["drained_s"] = round(time.perf_counter() - t_sent, 2)

    def _results(self, res: dict, ctl_out: Path) -> dict:
        a, w = self.a, self.w
        t_start, t_rounds, t_end = self.marks["start"], self.marks["rounds"], self.marks["end"]
        finals = [f for f in w.finals if f is not None]
        if len(finals) != len(w.finals):
            raise RuntimeError("bench: a worker sent no results")
        sent = [i for f in finals for i in f["sent_ids"]]
        acked = [i for f in finals for i in f["acked_ids"]]
        ack_t = np.array([x for f in finals for x in f["ack_t"]])
        sent_t = np.array([x for f in finals for x in f["sent_t"]])
        ack_lat = np.array([x for f in finals for x in f["ack_lat"]]) * 1e3
        from ..core.runlog import read_csv_rows

        rows = [r["report_id"] for r in read_csv_rows(ctl_out / "qos.csv")]
        refused = sorted(k for k, v in self.replies.items() if not v.accepted)
        lat = {k: [(w.arrivals[i] - t) * 1e3 for i, t in self.t_sent.items() if i[0] == k and i in w.arrivals]
               for k in "rfp"}
        rounds_intents = [i for i in self.t_sent if i[0] == "r"]
        in_rounds = ack_t[(ack_t >= t_start) & (ack_t <= t_rounds)] if len(ack_t) else ack_t
        res.update({
            "intents": len(rounds_intents), "assigned": len(lat["r"]), "refused": len(refused),
            "assign_latency_ms": pct(lat["r"]),
            # (seconds since the first intent, ms) per intent of the rounds: when the slow ones came
            "assign_latency_series": sorted(
                (round(t - min(self.t_sent.values()), 3), round((w.arrivals[i] - t) * 1e3, 2))
                for i, t in self.t_sent.items() if i[0] == "r" and i in w.arrivals),
            # the operator's reply goes out right after the jobs: intent -> reply without the nodes' side
            "reply_latency_ms": pct([(self.t_reply[i] - self.t_sent[i]) * 1e3 for i in rounds_intents
                                     if i in self.t_reply]),
            "reports_sent": len(sent), "reports_acked": len(set(acked)), "reports_in_qos_csv": len(set(rows)),
            "qos_csv_rows": len(rows), "reports_unacked": len(set(sent) - set(acked)),
            "reports_lost": len(set(acked) - set(rows)),     # acknowledged (the node forgot it) but not stored
            "acked_reports_per_s": float(len(in_rounds) / (in_rounds.max() - t_start)) if len(in_rounds) else 0.0,
            "peak_acked_reports_per_s": peak_rate(ack_t),
            "ack_latency_ms": pct(ack_lat),
            "resent": sum(f["resent"] for f in finals), "disconnects": sum(f["disconnects"] for f in finals),
            "rejected_by_nodes": sum(f["rejected"] for f in finals), "errors": sum(f["errors"] for f in finals),
            "wall_s": round(t_end - t_start, 2), "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        })
        res.setdefault("connect", {})["connack_ms"] = pct(np.array([x for f in finals for x in f["connect_s"]]) * 1e3)
        fl = res.get("flood")
        if fl and "t_go" in fl:
            t_go = fl.pop("t_go")
            t_all = fl.pop("t_all_sent")
            lo, hi = t_go + min(2.0, a.duration / 4), t_all       # skip the ramp-up
            m = (ack_t >= lo) & (ack_t <= hi)
            fl["sent_per_s"] = round(float(((sent_t >= lo) & (sent_t <= hi)).sum() / max(hi - lo, 1e-9)), 1)
            fl["acked_per_s"] = round(float(m.sum() / max(hi - lo, 1e-9)), 1)
            fl["ack_latency_ms"] = pct(ack_lat[m])
            last = max([t_go] + [float(x.max()) for x in (ack_t, sent_t) if len(x)])
            bins = np.arange(t_go, last + 1.0, 1.0)          # per second from the start
            fl["per_s"] = {"sent": np.histogram(sent_t, bins)[0].tolist(),
                           "acked": np.histogram(ack_t, bins)[0].tolist()}
            fl["probe_assign_latency_ms"] = pct(lat["p"])
            fl["assign_latency_ms"] = pct(lat["f"])
        try:
            s = json.loads((ctl_out / "summary.json").read_text())
            res["controller_intent_handling_ms"] = s.get("intent_handling_ms")
            res["controller_intent_to_reply_ms"] = s.get("intent_to_reply_ms")
        except (OSError, ValueError):
            pass
        res["ok"] = (len(lat["r"]) + len(refused) == len(rounds_intents) and not refused and
                     res["reports_lost"] == 0 and res["reports_unacked"] == 0 and
                     len(rows) == len(set(rows)) == len(set(sent)) and
                     len(set(sent)) == len(sent) and res["errors"] == 0 and "timed_out" not in res)
        return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.agent.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=number(int, lo=1, hi=100_000), default=200)
    p.add_argument("--processes", type=number(int, lo=0, hi=64), default=0,
                   help="worker processes for the simulated nodes (default: one per 250 nodes, at most 8)")
    p.add_argument("--rounds", type=number(int, lo=0, hi=10_000), default=3, help="intents per node (one round = one intent per node)")
    p.add_argument("--reports", type=number(int, lo=1, hi=100_000), default=20, help="QoS reports per job in the rounds")
    p.add_argument("--report-hz", type=number(float, lo=0.0, lo_open=True, hi=10_000.0), default=5.0, help="QoS reports per second per busy node in the rounds")
    p.add_argument("--intent-hz", type=number(float, lo=0.0, lo_open=True, hi=100_000.0), default=100.0, help="intents submitted per second")
    p.add_argument("--report-rate", type=number(float, lo=0.0, hi=1e6), default=0.0,
                   help="flood phase: QoS reports per second offered by all nodes together (0: no flood phase)")
    p.add_argument("--duration", type=number(float, lo=0.0, lo_open=True, hi=86400.0), default=20.0, help="flood phase: seconds of reports")
    p.add_argument("--probe-hz", type=number(float, lo=0.0, hi=10_000.0), default=10.0,
                   help="flood phase: intents per second to the probe nodes (0: none)")
    p.add_argument("--probe-nodes", type=number(int, lo=0, hi=100_000), default=20, help="flood phase: nodes kept out of the flood for probes")
    p.add_argument("--resend-s", type=number(float, lo=0.0, lo_open=True, hi=3600.0), default=5.0, help="nodes re-send what is unacknowledged after this long")
    p.add_argument("--nodes-nice", type=int, default=0, choices=range(0, 20), metavar="0..19",
                   help="run the simulated-node processes at this nice value (the load generator yields the CPU "
                        "to the broker and controller, as nodes on machines of their own would)")
    p.add_argument("--broker-autosave-s", type=number(int, lo=1, hi=86400), default=AUTOSAVE_S,
                   help="seconds between mosquitto's saves of its state (default %(default)s, as `broker init`)")
    p.add_argument("--connect-timeout", type=number(float, lo=0.0, lo_open=True, hi=86400.0), default=120.0)
    p.add_argument("--timeout", type=number(float, lo=0.0, lo_open=True, hi=86400.0), default=300.0,
                   help="seconds to wait for each phase (assignments, reports, acknowledgements) before giving up")
    p.add_argument("--profile-controller", action="store_true",
                   help="run the controller with every thread under cProfile (OUT/controller-profile.txt)")
    p.add_argument("--out", help="run folder (default runs/bench-agent-<time>)")
    p.add_argument("--json", action="store_true", help="print only the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    a = p.parse_args(argv)
    if a.report_rate > 0 and a.nodes - (a.probe_nodes if a.probe_hz > 0 else 0) < 1:
        p.error("--report-rate: no node left for the flood (fewer --nodes than --probe-nodes)")
    try:
        res = Bench(a).run()
    except FileExistsError as e:         # checked before anything starts
        p.error(str(e))
    if not a.json:
        lat = res["assign_latency_ms"]
        conn = res["connect"]["all_connected_s"]
        print(f"{res['nodes']} nodes ({res['processes']} process(es), connected in {conn} s), "
              f"{res['intents']} intents ({res['refused']} refused): intent->assignment p50 {lat.get('p50')} ms, "
              f"p99 {lat.get('p99')} ms, max {lat.get('max')} ms; QoS reports {res['reports_acked']}/"
              f"{res['reports_sent']} acknowledged, {res['reports_in_qos_csv']} in qos.csv, "
              f"{res['acked_reports_per_s']:.0f}/s in the rounds, {res['peak_acked_reports_per_s']:.0f}/s peak")
        if "timed_out" in res:
            print(f"incomplete: {res['timed_out']}")
        if "acked_per_s" in res.get("flood", {}):
            fl = res["flood"]
            print(f"flood: {fl['offered_per_s']:g} reports/s offered, {fl['acked_per_s']:.0f}/s acknowledged, "
                  f"report->ack p50 {fl['ack_latency_ms'].get('p50')} ms p99 {fl['ack_latency_ms'].get('p99')} ms; "
                  f"probe intent->assignment p50 {fl['probe_assign_latency_ms'].get('p50')} ms "
                  f"p99 {fl['probe_assign_latency_ms'].get('p99')} ms")
        print(f"result: {res['out']}/result.json")
    else:
        print(json.dumps(res))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
