"""End to end through the command line: `testbed broker init/run`, `testbed controller`, two
`testbed node` processes on the loopback channel, `testbed intent submit --wait` and `testbed status`.
The long-running commands (broker, controller, nodes) are real processes, stopped by Ctrl-C; the
one-shot commands run in-process."""
import csv
import json
import signal
import subprocess
import sys

import pytest

from tests.helpers import run_cli
from tests.helpers.agent import crop_images, wait_until

TESTBED = [sys.executable, "-m", "testbed"]


def _run(*args, timeout=120):
    return run_cli(*args, check=False, timeout=timeout)


def _spawn(*args, log):
    return subprocess.Popen([*TESTBED, *args], stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)


def _stop(p, timeout=30):
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode


@pytest.fixture
def procs():
    ps = []
    yield ps
    for p in reversed(ps):
        _stop(p, 10)


@pytest.mark.slow
def test_intent_end_to_end_through_the_cli(tmp_path, procs):
    from testbed.agent.broker import free_port

    port = free_port()
    bdir = tmp_path / "broker"
    r = _run("broker", "init", str(bdir), "--nodes", "n1,n2", "--port", str(port))
    assert r.returncode == 0, r.stderr
    for f in ("mosquitto.conf", "acl", "passwd", "controller.password", "operator.password", "n1.password"):
        assert (bdir / f).exists(), f
    assert oct((bdir / "passwd").stat().st_mode)[-3:] == "600"
    procs.append(subprocess.Popen([*TESTBED, "broker", "run", str(bdir)], stdout=subprocess.DEVNULL,
                                  stderr=open(tmp_path / "broker.log", "w")))
    url = f"mqtt://127.0.0.1:{port}"
    wait_until(lambda: _port_open(port), 10, "mosquitto to listen")
    out = tmp_path / "ctl"
    ctl = _spawn("controller", "--broker", url, "--password-file", str(bdir / "controller.password"),
                 "--out", str(out), "--json", "-v", log=tmp_path / "controller.log")
    procs.append(ctl)
    nodes = []
    for n in ("n1", "n2"):
        p = _spawn("node", "--broker", url, "--id", n, "--password-file", str(bdir / f"{n}.password"),
                   "--state-dir", str(tmp_path / f"state-{n}"), "--json", log=tmp_path / f"{n}.log")
        procs.append(p)
        nodes.append(p)
    imgs = crop_images(tmp_path / "imgs", n=3)
    auth = ["--broker", url, "--password-file", str(bdir / "operator.password")]

    def both_online():
        r = _run("status", *auth, "--once", "--json", timeout=30)
        return r.returncode == 0 and sum(n["online"] for n in json.loads(r.stdout)["nodes"]) == 2
    wait_until(both_online, 60, "both nodes online in `testbed status`", every=1.0)

    intent = tmp_path / "intent.yaml"
    intent.write_text(f"intent_id: e2e\nimages: [{imgs}]\nrepeat: 2\nlinks: 2\npriority: 1\n"
                      f"qos: {{psnr_db: 18, latency_ms: 5000}}\ncbr_max: 0.07\n")
    r = _run("intent", "submit", str(intent), *auth, "--wait", "--json", timeout=240)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["accepted"] and len(res["links"]) == 2
    assert {lk["node"] for lk in res["links_status"]} == {"n1", "n2"}
    for lk in res["links_status"]:
        assert lk["status"] == "done" and lk["reports"] == 6, lk
    # a second submission of the same id is not planned twice
    r2 = _run("intent", "submit", str(intent), *auth, "--json", timeout=60)
    assert json.loads(r2.stdout)["reason"] == "already accepted (done)"
    # a bad intent file: refused before anything is sent, naming the file and key
    bad = tmp_path / "bad.yaml"
    bad.write_text("intent_id: x\nqos: {psnr_db: fast}\n")
    r3 = _run("intent", "submit", str(bad), *auth, timeout=60)
    assert r3.returncode != 0 and str(bad) in r3.stderr and "qos.psnr_db" in r3.stderr
    text = _run("status", *auth, "--once", timeout=30).stdout
    assert "e2e.L0" in text and "e2e.L1" in text and "done" in text

    for p in nodes:
        assert _stop(p) == 0
        assert json.loads(p.stdout.read())["unacked_reports"] == 0
    assert _stop(ctl) == 0
    summary = json.loads(ctl.stdout.read())
    assert summary["reports"] == 12 and summary["rejected"] == 0
    with open(out / "qos.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and len({r["report_id"] for r in rows}) == 12
    assert all(r["psnr_db"] and float(r["latency_ms"]) > 0 for r in rows)
    assert json.loads((out / "summary.json").read_text())["intents"][0]["state"] == "done"
    decisions = [json.loads(x) for x in (out / "decisions.jsonl").read_text().splitlines()]
    assert [d["action"] for d in decisions].count("assign") == 2
    assert all(d["reason"] for d in decisions)


def _port_open(port):
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_broker_init_rejects_bad_node_ids(tmp_path):
    r = _run("broker", "init", str(tmp_path / "b"), "--nodes", "ok,bad/id")
    assert r.returncode != 0 and "bad/id" in r.stderr


def test_node_refuses_bad_arguments(tmp_path):
    r = _run("node", "--broker", "mqtt://127.0.0.1:1", "--id", "a/b")
    assert r.returncode != 0 and "--id 'a/b'" in r.stderr
    r = _run("node", "--broker", "mqtt://127.0.0.1:1", "--id", "n1", "--radio", str(tmp_path / "none.yaml"))
    assert r.returncode != 0 and "none.yaml" in r.stderr
    r = _run("node", "--broker", "ftp://127.0.0.1:1", "--id", "n1")
    assert r.returncode != 0 and "scheme" in r.stderr
