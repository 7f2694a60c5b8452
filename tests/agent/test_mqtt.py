"""The agent layer against a real mosquitto on a free loopback port: broker restarts, SNR drops,
model dissemination, and rejected (malformed or unauthorised) messages."""
import json
import threading
import time

import numpy as np
import pytest

from tests.helpers.agent import AgentEnv, crop_images, wait_until
from tests.helpers import SAMPLES, write_png
from testbed.agent import messages as M
from testbed.agent import topics as T

pytestmark = pytest.mark.slow   # every test runs mosquitto and agents


@pytest.fixture
def env(tmp_path):
    e = AgentEnv(tmp_path)
    yield e
    e.close()


def _qos_rows(ctl):
    from testbed.core.runlog import read_csv_rows

    return read_csv_rows(ctl.out / "qos.csv")         # complete rows only (the writer may be mid-line)


def _rows_when(ctl, n, timeout_s=30):
    """qos.csv once it holds ``n`` rows (rows are committed by the writer thread, acks follow)."""
    wait_until(lambda: len(_qos_rows(ctl)) >= n, timeout_s, f"{n} rows in qos.csv")
    return _qos_rows(ctl)


def _decisions(ctl):
    return [json.loads(x) for x in (ctl.out / "decisions.jsonl").read_text().splitlines()]


def test_broker_killed_and_restarted_mid_run_loses_no_qos_record(env, tmp_path):
    imgs = crop_images(tmp_path / "imgs", n=3)
    ctl = env.controller()
    node = env.node("n1")
    wait_until(lambda: "n1" in ctl.nodes, 10, "node n1 to announce itself")
    reply = ctl.submit(M.Intent("restart", images=[str(imgs)], repeat=5, qos=M.QosTarget(psnr_db=20)))
    assert reply.accepted, reply.reason
    wait_until(lambda: len(ctl.qos.seen) >= 3, 60, "the first QoS reports")
    env.broker.kill()                                   # SIGKILL: no goodbye, no final save
    time.sleep(2.0)                                     # the node keeps transmitting meanwhile
    assert len(ctl.qos.seen) < 15
    env.broker.start()
    wait_until(lambda: len(ctl.qos.seen) == 15, 90, "all 15 QoS reports after the restart")
    wait_until(lambda: len(node.outbox) == 0, 30, "the node's outbox to empty (all acknowledged)")
    rows = _qos_rows(ctl)
    ids = [r["report_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 15               # each once, none lost
    assert sorted(int(r["seq"]) for r in rows) == list(range(15))
    assert node.link.connects >= 2 and ctl.link.connects >= 2
    wait_until(lambda: ctl.links["restart.L0"].status == "done", 30, "the link to finish")


def _direct_psnr(img, k, snr_db, seeds=4):
    """PSNR of the shipped codec at ``k`` symbols per block over numpy AWGN (no PHY)."""
    from testbed.core.symbol_channel import awgn_np
    from testbed.codec.runtime import OnnxCodec
    from testbed.core.metrics import psnr

    codec = OnnxCodec("jscc-v1", threads=1)
    s = codec.encode_k(img, snr_db, k)
    h, w = img.shape[:2]
    return float(np.mean([psnr(img, codec.decode(awgn_np(s, snr_db, np.random.default_rng(i)), snr_db, h, w))
                          for i in range(seeds)]))


def test_snr_drop_makes_the_controller_replan_and_the_target_is_met_again(env, tmp_path):
    from testbed.core.images import load_rgb

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    img = np.ascontiguousarray(load_rgb(SAMPLES / "kodim23.png")[100:228, 500:692])
    write_png(imgs / "parrot.png", img)
    lo5, hi5, lo20 = _direct_psnr(img, 16, 5.0), _direct_psnr(img, 48, 5.0), _direct_psnr(img, 16, 20.0)
    assert min(hi5, lo20) - lo5 > 1.2, (lo5, hi5, lo20)
    # met by CBR 1/48 at 20 dB and by CBR 1/16 at 5 dB, not by CBR 1/48 at 5 dB
    target = (lo5 + min(hi5, lo20)) / 2
    ctl = env.controller(assume_snr_db=20.0)
    env.node("n1", channel_snr="20,5@5")  # the loopback channel fades from 20 to 5 dB at the 5th image
    wait_until(lambda: "n1" in ctl.nodes, 10, "node n1")
    reply = ctl.submit(M.Intent("fade", images=[str(imgs)], repeat=16, models=["jscc-v1"],
                                qos=M.QosTarget(psnr_db=round(target, 2))))
    assert reply.accepted
    wait_until(lambda: ctl.links["fade.L0"].status == "done", 120, "the link to finish")
    rows = _rows_when(ctl, 16)
    assert len(rows) == 16
    first = [r for r in rows if int(r["seq"]) < 5]
    assert all(r["model"] == "jscc-v1" and abs(float(r["cbr"]) - 1 / 48) < 1e-3 for r in first)
    assert all(float(r["psnr_db"]) >= target for r in first), [r["psnr_db"] for r in first]
    replans = [d for d in _decisions(ctl) if d["action"] == "replan"]
    assert replans and abs(replans[0]["cbr"] - 0.0625) < 1e-3, replans
    assert "SNR moved" in replans[0]["reason"] or "below the PSNR target" in replans[0]["reason"]
    last = [r for r in rows if int(r["seq"]) >= 12]
    assert all(abs(float(r["cbr"]) - 0.0625) < 1e-3 for r in last), [(r["seq"], r["cbr"], r["psnr_db"], r.get("snr_est_db")) for r in rows] + [replans]
    assert all(float(r["psnr_db"]) >= target for r in last), ([r["psnr_db"] for r in last], target)
    assert all(float(r["snr_est_db"]) < 7 for r in last)


def test_model_is_disseminated_and_switched_at_an_image_boundary(env, tmp_path):
    imgs = crop_images(tmp_path / "imgs", n=1)
    empty = tmp_path / "no-models"
    empty.mkdir()
    ctl = env.controller()
    node = env.node("n2", models_dir=str(empty))       # holds no model at all
    wait_until(lambda: "n2" in ctl.nodes, 10, "node n2")
    assert ctl.nodes["n2"].models == []
    # the controller's retained model announcements, as any node may read them
    seen = {}
    watcher = env.client("n3", client_id="n3-watch")
    watcher.subscribe(T.model("+"), lambda m, t, p: seen.__setitem__(m.name, m), expect=M.ModelAnnounce)
    watcher.start()
    wait_until(lambda: set(seen) == {"akb-v1", "jscc-v1"}, 10, "the retained model announcements")
    from testbed.zoo import load_card
    from testbed.core.paths import shipped_models

    for name, ann in seen.items():
        assert ann.sha256 == load_card(shipped_models()[name] / "model_card.yaml").sha256
        assert ann.chunks == -(-ann.size // ann.chunk_size) and ann.cbrs
    assert ctl.submit(M.Intent("dissem", images=[str(imgs)], repeat=8, models=["jscc-v1"])).accepted
    wait_until(lambda: len(ctl.qos.seen) >= 2, 60, "reports with the fetched model")
    session, top_block = node.session, node.session.tb
    lp = ctl.links["dissem.L0"]
    akb = next(o for o in ctl.policy.catalogue if o.model == "akb-v1" and abs(o.cbr - 0.036) < 1e-3)
    did = ctl._decide("dissem", lp.link_id, "replan", "test: move to the AKB codec", akb.model, akb.cbr)
    lp.ops_by_decision[did] = akb
    ctl._send_update(lp, M.JobUpdate(lp.job_id, akb.model, akb.sha256, akb.cbr, 10.0, did))
    wait_until(lambda: lp.status == "done", 120, "the link to finish")
    rows = _rows_when(ctl, 8)
    assert len(rows) == 8
    models = [r["model"] for r in sorted(rows, key=lambda r: int(r["seq"]))]
    assert models[0] == "jscc-v1" and models[-1] == "akb-v1"
    switch = models.index("akb-v1")
    assert set(models[switch:]) == {"akb-v1"}           # switched once, at an image boundary
    assert all(r["psnr_db"] for r in rows)              # every image decoded, before and after
    assert node.session is session and node.session.tb is top_block    # the flowgraph was not rebuilt
    assert {"akb-v1", "jscc-v1"} <= set(node.models)
    assert (tmp_path / "state-n2" / "models" / "akb-v1" / "model_card.yaml").exists()
    dissem = [d for d in _decisions(ctl) if d["action"] == "disseminate"]
    assert {d["model"] for d in dissem} == {"jscc-v1", "akb-v1"}
    wait_until(lambda: set(ctl.nodes["n2"].models) == {"akb-v1", "jscc-v1"}, 10, "the node's status update")


def test_malformed_and_unauthorised_messages_are_rejected_without_crashing(env, tmp_path):
    from testbed.agent.mqttlink import MqttLink

    ctl = env.controller()
    node = env.node("n1")
    wait_until(lambda: "n1" in ctl.nodes, 10, "node n1")
    # a wrong password is refused at connect, at once and saying so (retrying cannot help)
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match="refused user 'n1'.*check the password"):
        MqttLink("intruder", env.url, username="n1", password="wrong").start(wait_s=10)
    assert time.monotonic() - t0 < 5
    report = M.QosReport(report_id="n1:forged:0", node_id="n1", job_id="forged", intent_id="x", link_id="x",
                         seq=0, image="a.png", model="jscc-v1", model_sha256="ab" * 32, cbr=0.02, snr_tx_db=10,
                         snr_est_db=10, psnr_db=30, latency_ms=1, frames_sent=1, frames_decoded=1)
    mallory = env.client("mallory").start()
    # ACL: a node publishes only under its own id, and cannot send jobs
    info = mallory.publish(T.node("n1", "qos"), report)
    info.wait_for_publish(5)
    mallory.publish(T.to("n1", "job"), M.JobCancel("anything")).wait_for_publish(5)
    wait_until(lambda: mallory.denied >= 2, 5, "the broker to refuse mallory's publishes")
    # its own topic, but claiming to be n1: the controller rejects the mismatch
    before = ctl.rejected
    mallory.publish(T.node("mallory", "qos"), report.__class__(**{**report.__dict__})).wait_for_publish(5)
    wait_until(lambda: ctl.rejected > before, 5, "the controller to reject a report under another id")
    # malformed payloads from an authorised node
    n1raw = env.client("n1", client_id="n1-raw").start()
    for payload in (b"not json", b'{"schema": "testbed.qos_report/1", "report_id": "n1:x"}',
                    b'{"schema": "testbed.qos_report/9"}', json.dumps({"schema": "testbed.node_status/1",
                                                                       "node_id": "n1", "online": 3}).encode()):
        n1raw.publish(T.node("n1", "qos"), payload).wait_for_publish(5)
    n1raw.publish(T.node("n1", "status"), b"\xff\xfe").wait_for_publish(5)
    n1raw.publish(T.node("n1", "status"), b"[" * 100000).wait_for_publish(5)     # nesting deeper than json allows
    wait_until(lambda: ctl.rejected >= before + 7, 5, "the controller to reject 6 malformed messages")
    # a malformed job reaches the node (sent with controller rights): rejected, node carries on
    boss = env.client("controller", client_id="controller-raw").start()
    boss.publish(T.to("n1", "job"), b'{"schema": "testbed.job/1", "job_id": "j"}').wait_for_publish(5)
    wait_until(lambda: node.link.rejected >= 1, 5, "the node to reject a malformed job")
    # an intent with a bad value: rejected with the key named; the controller still serves requests
    op = env.client("operator").start()
    op.publish(T.intents(), b'{"schema": "testbed.intent/1", "intent_id": "bad", "links": 0}').wait_for_publish(5)
    wait_until(lambda: ctl.rejected >= before + 8, 5, "the controller to reject a bad intent")
    assert "n1:forged:0" not in ctl.qos.seen
    assert ctl.link.connected.is_set() and node.link.connected.is_set()
    rt = T.reply("operator") + "/t"
    op.subscribe_replies(rt, M.ControllerStatus)
    time.sleep(0.3)
    st = op.request(T.intents(), M.StatusRequest(), rt, M.ControllerStatus, timeout_s=5)
    assert st.rejected >= 8 and [n["node_id"] for n in st.nodes] == ["n1"]
    # the operator may not publish as a node, nor read node traffic it is not allowed to
    op.publish(T.node("n1", "status"), M.NodeStatus("n1", False), retain=True).wait_for_publish(5)
    wait_until(lambda: op.denied >= 1, 5, "the broker to refuse the operator's node status")
    assert ctl.nodes["n1"].online


def test_node_and_controller_restarts_lose_no_qos_record(env, tmp_path):
    imgs = crop_images(tmp_path / "imgs", n=2)
    ctl = env.controller()
    node = env.node("n3")
    wait_until(lambda: "n3" in ctl.nodes, 10, "node n3")
    assert ctl.submit(M.Intent("crash", images=[str(imgs)], repeat=20)).accepted
    wait_until(lambda: len(ctl.qos.seen) >= 2, 60, "the first reports")
    ctl.stop()                                          # the controller goes away: nobody acknowledges
    wait_until(lambda: len(node.outbox) >= 3, 60, "unacknowledged reports piling up in the node's outbox")
    node.stop()                                         # ... and the node stops mid-job
    sent = node.images_sent
    assert len(node.outbox) >= 3
    env.started.remove(ctl)
    env.started.remove(node)
    ctl2 = env.controller()                             # same run folder: knows what it already has
    assert ctl2.qos.seen == ctl.qos.seen
    node2 = env.node("n3")                              # same state folder: re-sends its outbox
    wait_until(lambda: len(ctl2.qos.seen) == sent, 30, f"all {sent} reports at the restarted controller")
    wait_until(lambda: len(node2.outbox) == 0, 30, "the outbox to empty")
    rows = _qos_rows(ctl2)
    assert sorted(int(r["seq"]) for r in rows) == list(range(sent))


def test_link_split_over_a_tx_node_and_an_rx_node(env, tmp_path):
    """Loopback pair: the tx node runs the channel and streams samples to the rx node (ZeroMQ on
    127.0.0.1); the controller joins their half-reports; a model switch reaches the receiver first."""
    imgs = SAMPLES                                              # full-size: the switch lands mid-run
    ctl = env.controller()
    tx = env.node("n1", role="tx", channel_snr="12")
    rx = env.node("n2", role="rx")
    wait_until(lambda: {"n1", "n2"} <= set(ctl.nodes), 10, "both nodes")
    assert ctl.nodes["n1"].medium.startswith("tcp://127.0.0.1:")
    reply = ctl.submit(M.Intent("split", images=[str(imgs)], repeat=5, models=["jscc-v1"],
                                qos=M.QosTarget(psnr_db=15)))
    assert reply.accepted and "n1->n2" in reply.reason, reply.reason
    lp = ctl.links["split.L0"]
    wait_until(lambda: lp.reports >= 1, 90, "the first joined report")
    akb = next(o for o in ctl.policy.catalogue if o.model == "akb-v1" and abs(o.cbr - 0.0625) < 1e-3)
    did = ctl._decide("split", lp.link_id, "replan", "test: switch a split link", akb.model, akb.cbr)
    lp.ops_by_decision[did] = akb
    ctl._send_update(lp, M.JobUpdate(lp.job_id, akb.model, akb.sha256, akb.cbr, 12.0, did))
    wait_until(lambda: lp.status == "done", 180, "the split link to finish")
    rows = sorted(_rows_when(ctl, 15), key=lambda r: int(r["seq"]))
    assert len(rows) == 15
    assert all(r["part"] == "tx+rx" and r["node_id"] == "n2" and r["peer_id"] == "n1" for r in rows), rows
    assert all(r["psnr_db"] and float(r["psnr_db"]) > 15 and float(r["latency_ms"]) > 0 for r in rows)
    assert all(abs(float(r["snr_est_db"]) - 12) < 1.5 for r in rows)
    models = [r["model"] for r in rows]
    assert models[0] == "jscc-v1" and "akb-v1" in models, models
    assert set(models[models.index("akb-v1"):]) == {"akb-v1"}                 # one switch, at an image boundary
    states = [d for d in _decisions(ctl) if d["action"] == "replan"]
    assert len(states) == 1 and rx.session.dec.wrong_model == 0  # the receiver held the model before the switch
    wait_until(lambda: not tx.outbox.pending and not rx.outbox.pending, 10,
               "both outboxes to empty (the last acks follow the commit)")


def test_tls_listener(tmp_path):
    """`broker init --certfile/--keyfile`: clients connect with mqtts:// and the CA file."""
    import shutil
    import subprocess

    from testbed.agent.broker import Broker, free_port, init_broker_dir
    from testbed.agent.mqttlink import MqttLink

    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    port = free_port()
    creds = init_broker_dir(tmp_path / "b", ["n1"], port=port, tls={"certfile": str(cert), "keyfile": str(key)})
    with Broker(tmp_path / "b", port):
        link = MqttLink("n1-tls", f"mqtts://127.0.0.1:{port}", username="n1", password=creds["n1"],
                        ca_file=str(cert)).start(wait_s=10)
        link.publish(T.node("n1", "status"), M.NodeStatus("n1", True)).wait_for_publish(5)
        assert link.denied == 0
        link.stop()
        with pytest.raises(ConnectionError):       # plain MQTT on the TLS port gets nowhere
            MqttLink("n1-plain", f"mqtt://127.0.0.1:{port}", username="n1", password=creds["n1"]).start(wait_s=2)


def test_intents_queue_by_priority_when_nodes_are_busy(env, tmp_path):
    imgs = crop_images(tmp_path / "imgs", n=1)
    ctl = env.controller()
    env.node("n1")
    wait_until(lambda: "n1" in ctl.nodes, 10, "node n1")
    assert "assigned to n1" in ctl.submit(M.Intent("first", images=[str(imgs)], repeat=6)).reason
    low = ctl.submit(M.Intent("low", images=[str(imgs)], priority=0))
    high = ctl.submit(M.Intent("high", images=[str(imgs)], priority=5))
    assert low.accepted and high.accepted and low.links == [] and "queued" in high.reason
    never = ctl.submit(M.Intent("never", images=[str(imgs)], links=3))
    assert not never.accepted and "can carry 1" in never.reason
    wait_until(lambda: all(ctl.intents[i]["state"] == "done" for i in ("first", "low", "high")), 120,
               "all three intents to finish")
    assigns = [d["intent_id"] for d in _decisions(ctl) if d["action"] == "assign"]
    assert assigns == ["first", "high", "low"]                   # the higher priority overtook
    assert len(_rows_when(ctl, 8)) == 8


def test_unevaluated_models_and_absurd_snr_do_not_wedge_the_controller(env, tmp_path, tiny_model_dir):
    from testbed.agent.intents import _hint
    from testbed.agent.policy import OperatingPoint

    models = tmp_path / "models"
    models.mkdir()
    (models / "jscc-v1").symlink_to(SAMPLES.parent / "models" / "jscc-v1")
    (models / "raw").symlink_to(tiny_model_dir)                 # a card without evaluation tables
    ctl = env.controller(models_dir=str(models))
    assert set(ctl.model_dirs) == {"jscc-v1", "raw"}
    r = ctl.submit(M.Intent("raw-only", models=["raw"]))
    assert not r.accepted and "no evaluated operating points" in r.reason
    op = OperatingPoint("m", "ab" * 32, 0.02, (0.0, 20.0), (20.0, 26.0))
    assert _hint(75.0, op) == 20.0 and _hint(-30.0, op) == 0.0


def test_a_vanished_node_is_marked_offline_by_its_last_will(env):
    """No goodbye (the connection just dies): the broker publishes the node's retained last will."""
    from testbed.agent.mqttlink import MqttLink

    ctl = env.controller()
    ghost = MqttLink("node-n3", env.url, username="n3", password=env.creds["n3"],
                     will=(T.node("n3", "status"), M.NodeStatus("n3", False))).start()
    ghost.publish(T.node("n3", "status"), M.NodeStatus("n3", True), retain=True).wait_for_publish(5)
    wait_until(lambda: "n3" in ctl.nodes and ctl.nodes["n3"].online, 10, "n3 online")
    ghost.client.loop_stop()                   # no more keep-alives and no DISCONNECT ...
    ghost.client.socket().close()              # ... and the connection drops
    wait_until(lambda: not ctl.nodes["n3"].online, 30, "the broker to publish n3's last will")


def test_split_receiver_failing_at_once_does_not_wedge_the_transmitter(env, tmp_path):
    """The receiver fails before the transmitter got its job: the held-back job is withdrawn (no
    cancel for a job the tx node never saw) and the pair takes the next intent."""
    imgs = crop_images(tmp_path / "imgs", n=1)
    ctl = env.controller(resend_s=1.0)
    tx = env.node("n1", role="tx", channel_snr="12")
    env.node("n2", role="rx")
    wait_until(lambda: {"n1", "n2"} <= set(ctl.nodes), 10, "both nodes")
    assert ctl.submit(M.Intent("bad", images=[str(tmp_path / "no-such-folder")])).accepted
    lp = ctl.links["bad.L0"]
    wait_until(lambda: lp.status == "failed", 30, "the link to fail")
    assert lp.tx_status == "cancelled" and ctl._busy() == set() and not ctl.pending and not tx.cancelled
    r = ctl.submit(M.Intent("good", images=[str(imgs)]))
    assert r.accepted and "n1->n2" in r.reason, r.reason
    wait_until(lambda: ctl.intents["good"]["state"] == "done", 60, "the next intent to run on the pair")


def test_a_node_that_dies_mid_job_is_given_up_on_after_the_grace_period(env, tmp_path):
    imgs = crop_images(tmp_path / "imgs", n=2)
    ctl = env.controller(offline_grace_s=1.0)
    tx = env.node("n1", role="tx", channel_snr="12")
    rx = env.node("n2", role="rx")
    wait_until(lambda: {"n1", "n2"} <= set(ctl.nodes), 10, "both nodes")
    assert ctl.submit(M.Intent("dead", images=[str(imgs)], repeat=50)).accepted
    lp = ctl.links["dead.L0"]
    wait_until(lambda: lp.reports >= 2, 60, "the first joined reports")
    tx.link.publish = lambda *a, **k: None     # the tx process dies: not another word from it ...
    tx.link.client.loop_stop()                 # ... no goodbye, and the connection drops
    tx.link.client.socket().close()
    tx.stopping.set()
    wait_until(lambda: not ctl.nodes["n1"].online, 30, "n1's last will")
    wait_until(lambda: lp.tx_status == "failed", 10, "the controller to give up on n1")
    wait_until(lambda: ctl.intents["dead"]["state"] == "failed", 10, "the intent to fail")
    wait_until(lambda: lp.rx_status in ("cancelled", "done") and not rx.running, 30, "the receiver to be cancelled")
    assert ctl._busy() == set()
    fails = [d for d in _decisions(ctl) if d["action"] == "fail"]
    assert len(fails) == 1 and "n1" in fails[0]["reason"], fails


def test_a_packet_queued_by_another_thread_goes_out_while_the_network_thread_is_busy(env):
    """BufferedClient: the thread that publishes writes the packet itself when the socket is
    free, so a job or a reply does not wait for the network thread (here held in a handler)."""
    a = env.client("controller", client_id="ctl-direct").start()
    b = env.client("n1", client_id="n1-direct").start()
    entered, release, got = threading.Event(), threading.Event(), threading.Event()

    def busy(msg, topic, props):          # a's network thread, held until released
        entered.set()
        release.wait(10)

    a.subscribe(T.node("n1", "status"), busy, expect=M.NodeStatus)
    b.subscribe(T.to("n1", "ack"), lambda msg, topic, props: got.set(), expect=M.Ack)
    time.sleep(0.3)                       # both subscriptions in place
    try:
        b.publish(T.node("n1", "status"), M.NodeStatus("n1", True)).wait_for_publish(5)
        assert entered.wait(5), "a's handler never ran"
        a.publish(T.to("n1", "ack"), M.Ack(["n1:x:0"]), qos=0)
        assert got.wait(5), "the packet waited for the network thread"
        assert not release.is_set()
    finally:
        release.set()


def test_a_job_the_controller_has_no_record_of_is_cancelled(env):
    """A job goes out as soon as its journal line is written, before the fsync: a crash of the
    whole machine in between can leave a node running a job the restarted controller has no
    record of. The controller cancels such a job (from the node's status, or from its job state)
    until the node confirms, and never adopts it."""
    ctl = env.controller(resend_s=0.5)
    n1 = env.client("n1", client_id="n1-raw").start()
    got = []
    n1.subscribe(T.to("n1", "job"), lambda msg, topic, props: got.append(msg), expect=(M.Job, M.JobCancel))
    time.sleep(0.3)
    n1.publish(T.node("n1", "status"), M.NodeStatus("n1", True, jobs=["lost.L0.j"]), retain=True).wait_for_publish(5)
    wait_until(lambda: any(isinstance(m, M.JobCancel) and m.job_id == "lost.L0.j" for m in got), 10,
               "a cancel for the job in the node's status")
    assert "not in the controller's journal" in got[0].reason
    n1.publish(T.node("n1", "job_state"), M.JobState("n1:gone.L0.j:running:0", "n1", "gone.L0.j", "running"))
    wait_until(lambda: any(isinstance(m, M.JobCancel) and m.job_id == "gone.L0.j" for m in got), 10,
               "a cancel for the job in a job state")
    assert "lost.L0.j" not in ctl.job_index and not ctl.links
    for job in ("lost.L0.j", "gone.L0.j"):       # re-sent until the node confirms ...
        wait_until(lambda: sum(isinstance(m, M.JobCancel) and m.job_id == job for m in got) >= 2, 10,
                   f"the cancel of {job} re-sent")
        n1.publish(T.node("n1", "job_state"), M.JobState(f"n1:{job}:cancelled:1", "n1", job, "cancelled"))
    wait_until(lambda: not any(k.endswith("#cancel") for k in ctl.pending), 10, "the cancels confirmed")
    n = len(got)
    time.sleep(1.5)                               # ... and then no more
    assert len(got) == n
