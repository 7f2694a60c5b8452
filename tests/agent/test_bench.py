"""The control-plane benchmark (``python -m testbed.agent.bench``): the simulated node's protocol
(offline, fast), and a small run against a real mosquitto and controller: every node connects,
every intent is assigned, every report is acknowledged and in qos.csv exactly once."""
import json
import socket

import pytest

from testbed.agent import messages as M
from testbed.agent.simnodes import Worker

SHA = "ab" * 32


def _job(job_id="i1.L0.j", n=3, decision="d1"):
    return M.Job(job_id=job_id, intent_id="r-i1", link_id="i1.L0", part="link", model="jscc-v1", model_sha256=SHA,
                 cbr=0.05, snr_db=10.0, images=["samples"], max_images=1, repeat=n, decision=decision)


@pytest.fixture
def node():
    a, b = socket.socketpair()
    w = Worker(a, "127.0.0.1", 1, [("n1", "pw")], ["jscc-v1"], [SHA], {"r": {"hz": 0.0}})
    yield w.nodes[0]
    a.close()
    b.close()


def _pending(node, kind):
    return [M.decode(e[1], "test") for e in node.pending.values() if isinstance(M.decode(e[1], "test"), kind)]


def test_simulated_node_speaks_the_node_protocol(node):
    node._on_job(_job(), 1.0)
    assert node.w.new_assigned == [("r-i1", 1.0)]
    assert [s.state for s in _pending(node, M.JobState)] == ["accepted", "running"]
    j = node.jobs["i1.L0.j"]
    node._on_job(M.JobUpdate("i1.L0.j", "jscc-v1", SHA, 0.1, 12.0, decision="d5"), 2.0)   # confirmed, applied
    assert _pending(node, M.JobState)[-1].state == "switched" and j["job"].cbr == 0.1
    node._on_job(_job(), 3.0)                                     # a re-sent assignment: its state, no new job
    assert len(node.w.new_assigned) == 1 and _pending(node, M.JobState)[-1].state == "running"
    assert node.report(j) and node.report(j) and not node.report(j)
    reports = _pending(node, M.QosReport)
    assert [r.seq for r in reports] == [0, 1, 2]
    assert [r.report_id for r in reports] == [M.report_id("n1", "i1.L0.j", s) for s in range(3)]
    assert all(r.cbr == 0.1 and r.decision == "d5" and r.intent_id == "r-i1" and r.node_id == "n1" for r in reports)
    done = _pending(node, M.JobState)[-1]
    assert done.state == "done" and done.images_done == 3 and "i1.L0.j" not in node.jobs
    node._on_ack(M.Ack([r.report_id for r in reports] + [done.event_id]), 4.0)
    assert len(node.w.rec["acked_ids"]) == 3 and not _pending(node, M.QosReport)
    node._on_job(M.JobCancel("i2.L0.j", "stop"), 5.0)            # cancelled before it ran
    assert _pending(node, M.JobState)[-1].state == "cancelled"


@pytest.mark.slow
def test_small_benchmark_run_loses_nothing(tmp_path, capsys):
    from testbed.agent.bench import main
    from testbed.core.runlog import read_csv_rows

    out = tmp_path / "run"
    rc = main(["--nodes", "20", "--processes", "2", "--rounds", "2", "--reports", "5", "--report-hz", "10",
               "--intent-hz", "50", "--report-rate", "200", "--duration", "3", "--probe-nodes", "4", "--probe-hz",
               "5", "--out", str(out), "--json", "--quiet"])
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and res["ok"], res
    assert res["connect"]["connack_ms"]["n"] == 20 and res["disconnects"] == 0 and res["errors"] == 0
    assert res["intents"] == res["assigned"] == 40 and res["refused"] == 0
    fl = res["flood"]
    assert fl["nodes"] == 16 and fl["reports_per_node"] == 38 and fl["probe_assign_latency_ms"]["n"] >= 10
    expected = 40 * 5 + 16 * 38 + fl["probe_assign_latency_ms"]["n"]
    assert res["reports_sent"] == res["reports_acked"] == res["reports_in_qos_csv"] == expected
    rows = read_csv_rows(out / "controller" / "qos.csv")
    ids = [r["report_id"] for r in rows]
    assert len(ids) == len(set(ids)) == expected                  # each report once, none lost
    assert {r["node_id"] for r in rows} == {f"sim{i:03d}" for i in range(20)}
    assert json.loads((out / "result.json").read_text()) == res
    # the same folder again: refused before anything starts, naming the option
    with pytest.raises(SystemExit) as e:
        main(["--nodes", "2", "--out", str(out)])
    assert e.value.code == 2 and f"--out {out}: holds a run already" in capsys.readouterr().err


@pytest.mark.parametrize("args, msg", [(["--nodes", "0"], "argument --nodes"), (["--report-hz", "nan"], "--report-hz"),
                                        (["--duration", "-1"], "--duration"), (["--probe-nodes", "x"], "--probe-nodes"),
                                        (["--nodes", "3", "--report-rate", "10"], "no node left for the flood")])
def test_benchmark_options_are_checked(args, msg, capsys):
    from testbed.agent.bench import main

    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2 and msg in capsys.readouterr().err


def test_sim_client_parses_packets_split_anywhere_and_acknowledges_qos1():
    """The simulated nodes' MQTT client: a QoS 1 PUBLISH with a two-byte remaining length, then a
    QoS 0 one and a CONNACK, arriving one byte at a time, each handled once and whole; the QoS 1
    one is answered with a PUBACK of its packet id; CONNECT carries the will and the credentials."""
    import struct

    from testbed.agent.simmqtt import SimClient, packet

    c = SimClient("sim-n1", "n1", "pw", will=("t/n1/status", b"off", 1, True))
    got, codes = [], []
    c.on_message, c.on_connect = (lambda t, p: got.append((t, p))), codes.append
    a, b = socket.socketpair()
    c.sock = a
    a.setblocking(False)
    big = bytes(range(256)) * 2
    data = (packet(0x32, struct.pack("!H", 4) + b"to/x" + b"\x12\x34" + big)
            + packet(0x30, struct.pack("!H", 3) + b"a/b" + b"hi") + packet(0x20, b"\x00\x05"))
    for i in range(len(data)):
        b.send(data[i:i + 1])
        c.read()
    assert got == [("to/x", big), ("a/b", b"hi")] and codes == [5]
    assert bytes(c._out) == b"\x40\x02\x12\x34"                   # PUBACK, packet id 0x1234
    c.write()
    assert b.recv(100) == b"\x40\x02\x12\x34" and not c.want_write()
    c.publish("q/1", b"x", qos=1, retain=True)
    assert bytes(c._out) == packet(0x33, struct.pack("!H", 3) + b"q/1" + b"\x00\x01" + b"x")
    b.close()
    closed = []
    c.on_close = lambda: closed.append(True)
    c.read()                                                      # the peer closed: so does the client
    assert closed == [True] and c.sock is None
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    c.connect("127.0.0.1", srv.getsockname()[1])
    conn, _ = srv.accept()
    c.write()
    sent = conn.recv(1000)
    assert sent[0] == 0x10 and b"MQTT\x04" in sent
    flags = sent[sent.index(b"MQTT\x04") + 5]
    assert flags == 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02      # user, password, will retain/QoS 1/flag, clean
    assert sent.endswith(b"\x00\x0bt/n1/status\x00\x03off\x00\x02n1\x00\x02pw")
    c.close()
    conn.close()
    srv.close()
