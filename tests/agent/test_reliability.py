"""Control-plane reliability against a real mosquitto: intents survive controller kills, one
controller per broker and one process per node id, sessions taken over end the process, QoS
reports checked at the door, intent cancel and list, `broker init` refusing to overwrite."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO, run_cli
from tests.helpers.agent import AgentEnv, crop_images, wait_until
from testbed.agent import messages as M
from testbed.agent import topics as T
from testbed.agent.unique import UniqueError
from testbed.core.runlog import read_csv_rows


@pytest.fixture
def env(tmp_path):
    e = AgentEnv(tmp_path)
    yield e
    e.close()


def _report(**kw):
    base = dict(report_id="n1:L.j:0", node_id="n1", job_id="L.j", intent_id="i", link_id="L", seq=0, image="a.png",
                model="jscc-v1", model_sha256="x", cbr=0.0625, snr_tx_db=10.0, snr_est_db=10.0, psnr_db=30.0,
                latency_ms=50.0, frames_sent=2, frames_decoded=2)
    return M.QosReport(**{**base, **kw})


@pytest.mark.parametrize("bad", [dict(latency_ms=-1.0), dict(frames_sent=-3), dict(frames_decoded=10**20),
                                 dict(seq=-1), dict(encode_ms=float("inf")), dict(snr_tx_db=1e9), dict(t_done=-5.0)])
def test_reports_out_of_range_are_refused_by_the_schema(bad):
    with pytest.raises(M.MessageError):
        M.encode(_report(**bad))
    raw = json.loads(M.encode(_report()))
    raw.update({k: (v if v != float("inf") else 1e400) for k, v in bad.items()})
    with pytest.raises(M.MessageError):
        M.decode(json.dumps(raw).encode().replace(b"Infinity", b"1e400"), "node/n1/qos")


def test_reports_that_do_not_belong_to_their_link_are_refused():
    from testbed.agent.controller import Controller
    from testbed.agent.intents import LinkPlan
    from testbed.agent.policy import OperatingPoint

    op = OperatingPoint("jscc-v1", "x", 0.0625, (0.0, 20.0), (20.0, 30.0))
    lp = LinkPlan("L", M.Intent("i"), "n1", "L.j", op, 10.0, "d1")
    why = Controller._report_refusal
    assert why(_report(), lp) is None
    assert "not one this controller planned" in why(_report(), None)
    assert "node n2" in why(_report(node_id="n2", report_id="n2:L.j:0"), lp)
    assert "job L.x" in why(_report(job_id="L.x"), lp)
    assert "does not fit" in why(_report(part="tx"), lp)
    lp.tx_status, lp.images_done = "done", {"tx": 3}
    assert why(_report(seq=2), lp) is None
    assert "finished after 3 image(s)" in why(_report(seq=3), lp)


def test_broker_init_refuses_to_overwrite_and_checks_its_options(tmp_path):
    d = tmp_path / "b"
    r = run_cli("broker", "init", str(d), "--nodes", "n1,n2", "--port", "18830")
    assert r.returncode == 0
    assert "autosave_interval 60\n" in (d / "mosquitto.conf").read_text()
    pw = (d / "n1.password").read_text()
    r = run_cli("broker", "init", str(d), "--nodes", "n1,n2", check=False)
    assert r.returncode == 2 and "already holds a broker config" in r.stderr and "--force" in r.stderr
    assert (d / "n1.password").read_text() == pw
    r = run_cli("broker", "init", str(d), "--nodes", "n1,n2", "--force", "--autosave-s", "5")
    assert "autosave_interval 5\n" in (d / "mosquitto.conf").read_text()
    assert "replaced the passwords of controller, n1, n2, operator" in r.stderr
    assert (d / "n1.password").read_text() != pw
    for args, msg in [(["--nodes", "n1,n1"], "given more than once"), (["--nodes", ""], "without empty entries"),
                      (["--nodes", "n1,,n2"], "without empty entries"), (["--nodes", "n1", "--port", "0"], "1..65535"),
                      (["--nodes", "n1", "--port", "70000"], "1..65535"), (["--nodes", "controller"], "reserved"),
                      (["--nodes", "n1", "--autosave-s", "0"], "1..86400")]:
        r = run_cli("broker", "init", str(tmp_path / "new"), *args, check=False)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr)
        assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_one_controller_per_broker_and_one_process_per_node_id(env, tmp_path):
    ctl = env.controller()
    with pytest.raises(UniqueError, match="a controller is already running on this broker"):
        env.controller(out=str(tmp_path / "second"))
    env.node("n1")
    with pytest.raises(UniqueError, match="node n1 is already running on this broker"):
        env.node("n1", state_dir=str(tmp_path / "other-state"))
    assert ctl.fatal is None and ctl.link.connects == 1           # the running ones were not disturbed
    wait_until(lambda: "n1" in ctl.nodes and ctl.nodes["n1"].online, 10, "n1 online")
    # a stale 'online' (kept by a broker across its own restart) does not block a node id
    op = env.client("controller", client_id="stale-writer").start()
    op.publish(T.node("n2", "status"), M.NodeStatus("n2", True), retain=True).wait_for_publish(5)
    n2 = env.node("n2")
    assert n2.fatal is None
    # once a controller is gone (SIGKILL-like: its last will), another one may start
    ctl.link.client.disconnect()      # clean disconnect: no will; stop() says offline instead
    ctl.stop()
    env.started.remove(ctl)
    ctl2 = env.controller(out=str(tmp_path / "third"))
    assert ctl2.fatal is None


@pytest.mark.slow
def test_a_session_taken_over_ends_the_link_instead_of_a_reconnect_loop(env):
    a = env.client("operator", client_id="same-id").start()
    b = env.client("operator", client_id="same-id").start()
    wait_until(lambda: a.fatal_event.is_set() or b.fatal_event.is_set(), 30, "a client to give up the session")
    time.sleep(2.5)          # the other one either holds the session now or has given up too
    for x in (a, b):
        assert x.fatal is None and x.connected.is_set() or "client id 'same-id'" in x.fatal
    n = a.connects + b.connects
    time.sleep(2.5)
    assert a.connects + b.connects == n and n < 20               # no reconnect loop


@pytest.mark.slow
def test_cancel_list_and_wait_exit_codes(env, tmp_path):
    imgs = crop_images(tmp_path / "imgs", n=2)
    ctl = env.controller()
    env.node("n1")
    wait_until(lambda: "n1" in ctl.nodes, 10, "n1 online")
    auth = ["--broker", env.url, "--password-file", str(env.broker_dir / "operator.password")]
    long = tmp_path / "long.yaml"
    long.write_text(json.dumps({"intent_id": "long", "images": [str(imgs)], "repeat": 500}))
    queued = tmp_path / "queued.yaml"
    queued.write_text(json.dumps({"intent_id": "queued", "images": [str(imgs)]}))
    assert run_cli("intent", "submit", str(long), *auth).returncode == 0
    assert "queued" in run_cli("intent", "submit", str(queued), *auth).stderr
    wait_until(lambda: ctl.links["long.L0"].reports >= 1, 60, "the long intent to report an image")
    r = run_cli("intent", "list", *auth, "--json")
    states = {it["intent_id"]: it["state"] for it in json.loads(r.stdout)}
    assert states == {"long": "running", "queued": "queued"}
    r = run_cli("intent", "cancel", "queued", *auth, "--reason", "not needed")
    assert r.returncode == 0 and "cancelled (it was queued)" in r.stderr
    r = run_cli("intent", "cancel", "long", *auth)
    assert r.returncode == 0 and "cancelling 1 link(s)" in r.stderr
    wait_until(lambda: ctl.intents["long"]["state"] == "cancelled", 30, "the long intent to be cancelled")
    assert ctl.links["long.L0"].status == "cancelled" and ctl.links["long.L0"].reports < 1000
    r = run_cli("intent", "cancel", "long", *auth, check=False)
    assert r.returncode == 3 and "already cancelled" in r.stderr
    r = run_cli("intent", "cancel", "nope", *auth, check=False)
    assert r.returncode == 3 and "no such intent" in r.stderr
    # --wait exits non-zero when a link fails (images the node does not have)
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({"intent_id": "bad", "images": [str(tmp_path / "missing")]}))
    r = run_cli("intent", "submit", str(bad), *auth, "--wait", check=False)
    assert r.returncode == 4 and "bad.L0 failed" in r.stderr, r.stderr
    journal = [json.loads(x) for x in (ctl.out / "intents.jsonl").read_text().splitlines()]
    last = {}
    for rec in journal:
        if rec["e"] == "intent":
            last[rec["intent"]["intent_id"]] = rec["state"]
    assert last == {"long": "cancelled", "queued": "cancelled", "bad": "failed"}


def _controller_proc(env, out):
    return subprocess.Popen(
        [sys.executable, "-m", "testbed", "controller", "--broker", env.url, "--password-file",
         str(env.broker_dir / "controller.password"), "--out", str(out)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(out.parent / f"{out.name}.log", "ab"))


def _status(op, rt, tries: int = 10):
    """The controller's status (asked again while a restarted controller is still starting)."""
    for i in range(tries):
        try:
            return op.request(T.intents(), M.StatusRequest(), rt, M.ControllerStatus, timeout_s=3)
        except TimeoutError:
            if i == tries - 1:
                raise


@pytest.mark.slow
def test_controller_killed_at_several_points_finishes_every_intent_once(env, tmp_path):
    """SIGKILL with an intent queued and two running, again mid-run with reports flowing, and
    once more just after a link finished: each intent ends done, each image is in qos.csv once."""
    imgs = crop_images(tmp_path / "imgs", n=2)
    out = tmp_path / "ctl"
    n1, n2 = env.node("n1"), env.node("n2")
    op = env.client("operator").start()
    rt = T.reply("operator") + "/kill-test"
    op.subscribe_replies(rt, (M.IntentReply, M.ControllerStatus))
    proc = _controller_proc(env, out)
    try:
        wait_until(lambda: len(_status(op, rt).nodes) == 2, 60, "the controller to see both nodes", every=0.5)
        per = {"a": 3, "b": 3, "c": 2}        # repeat x 2 images
        for iid, rep in per.items():
            reply = op.request(T.intents(), M.Intent(iid, images=[str(imgs)], repeat=rep), rt, M.IntentReply,
                               timeout_s=20)
            assert reply.accepted, reply.reason
        s = _status(op, rt)
        assert {it["intent_id"]: it["state"] for it in s.intents}["c"] == "queued"
        proc.send_signal(signal.SIGKILL)                         # kill 1: c queued, a and b running
        proc.wait()
        proc = _controller_proc(env, out)
        wait_until(lambda: sum(lk["reports"] for lk in _status(op, rt).links) >= 3, 90,
                   "reports to flow after the first restart", every=0.5)
        proc.send_signal(signal.SIGKILL)                         # kill 2: mid-run
        proc.wait()
        proc = _controller_proc(env, out)
        wait_until(lambda: any(lk["status"] == "done" for lk in _status(op, rt).links), 120,
                   "a link to finish", every=0.3)
        proc.send_signal(signal.SIGKILL)                         # kill 3: just after a link finished
        proc.wait()
        proc = _controller_proc(env, out)
        wait_until(lambda: {it["intent_id"]: it["state"] for it in _status(op, rt).intents
                            if it["intent_id"] in per} == {k: "done" for k in per}, 240,
                   "every intent to finish", every=0.5)
        wait_until(lambda: len(n1.outbox) == 0 and len(n2.outbox) == 0, 30, "the nodes' outboxes to empty")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    rows = read_csv_rows(out / "qos.csv")
    ids = [r["report_id"] for r in rows]
    assert len(ids) == len(set(ids))                             # nothing counted twice
    for iid, rep in per.items():
        seqs = sorted(int(r["seq"]) for r in rows if r["intent_id"] == iid)
        assert seqs == list(range(2 * rep)), (iid, seqs)         # every image, once
    assert n1.images_sent + n2.images_sent == sum(2 * rep for rep in per.values())   # no job ran twice
    dec = [json.loads(x) for x in (out / "decisions.jsonl").read_text().splitlines()]
    assigned = [d["intent_id"] for d in dec if d["action"] == "assign"]
    assert sorted(assigned) == sorted(per)                       # each planned once, across four controllers
    assert "for a link this controller did not plan" not in (out.parent / "ctl.log").read_text()


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == str(pid):
                        out.append(int(d))
            except (OSError, IndexError):
                pass
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_report_intake_process_ends_with_a_killed_controller(env, tmp_path):
    """The controller's QoS-report intake (a child process) must not outlive a SIGKILLed controller."""
    out = tmp_path / "ctl"
    proc = _controller_proc(env, out)
    try:
        kids = wait_until(lambda: _children(proc.pid), 30, "the controller's intake process")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_until(lambda: not any(_alive(k) for k in kids), 10, "the intake process to end")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_dead_report_intake_makes_the_controller_stop(env):
    c = env.controller()
    wait_until(lambda: c.tlink.connected.is_set(), 20, "the intake's connection")
    os.kill(c.tlink.proc.pid, signal.SIGKILL)
    wait_until(lambda: c.fatal, 10, "the controller to notice")
    assert "intake process ended unexpectedly" in c.fatal
