"""Agent layer without a broker: message schemas, policy, outbox, model transfer."""
import json
import time

import pytest

from testbed.agent import messages as M
from testbed.agent import topics as T
from testbed.agent.outbox import Outbox
from testbed.agent.policy import LinkState, OperatingPoint, Policy, load_catalogue
from testbed.agent.transfer import Assembler, TransferError, announce, chunks, pack, unpack

SHA = "ab" * 32


def _report(**kw):
    d = dict(report_id="n1:j:0", node_id="n1", job_id="j", intent_id="i", link_id="l", seq=0, image="a.png",
             model="jscc-v1", model_sha256=SHA, cbr=0.02, snr_tx_db=10.0, snr_est_db=9.8, psnr_db=25.0,
             latency_ms=120.0, frames_sent=1, frames_decoded=1)
    d.update(kw)
    return M.QosReport(**d)


def test_messages_round_trip():
    msgs = [M.NodeStatus("n1", True, models=["jscc-v1"], model_sha256=[SHA]), M.Intent("i1", qos=M.QosTarget(25, 500)),
            M.Job("j", "i", "l", "link", "jscc-v1", SHA, 0.02, 10.0, ["samples"]), _report(), M.Ack(["n1:j:0"]),
            M.Decision("d1", "i", "l", "assign", "jscc-v1", 0.02, "why", {"snr_db": 10.0})]
    import dataclasses

    def fields(x):                      # ts is filled in on encode: every other field must survive
        return {k: v for k, v in dataclasses.asdict(x).items() if k != "ts"}

    for m in msgs:
        back = M.decode(M.encode(m), "t")
        assert type(back) is type(m)
        assert fields(back) == fields(m)
        assert json.loads(M.encode(m))["schema"] == M.schema_name(m)


@pytest.mark.parametrize("payload, words", [
    (b"{nope", ["topic/x", "not JSON"]),
    (b"[1, 2]", ["topic/x", "JSON object"]),
    (b'{"node_id": "n1", "online": true}', ["topic/x", "schema"]),
    (b'{"schema": "testbed.node_status/2", "node_id": "n1", "online": true}', ["version 2"]),
    (b'{"schema": "testbed.bogus/1"}', ["unknown message kind 'bogus'"]),
    (b'{"schema": "testbed.node_status/1", "node_id": "n1", "online": "yes"}', ["topic/x", "online", "true or false"]),
    (b'{"schema": "testbed.node_status/1", "node_id": "n1", "online": true, "extra": 1}', ["unknown key 'extra'"]),
    (b'{"schema": "testbed.node_status/1", "online": true}', ["missing key 'node_id'"]),
    (b'{"schema": "testbed.node_status/1", "node_id": "a/b", "online": true}', ["node_id", "'a/b'"]),
    (b'{"schema": "testbed.node_status/1", "node_id": "n1", "online": true, "role": "relay"}', ["role"]),
])
def test_malformed_messages_name_topic_and_key(payload, words):
    with pytest.raises(M.MessageError) as e:
        M.decode(payload, "topic/x")
    for w in words:
        assert w in str(e.value)


def test_decode_checks_expected_kind_and_report_ownership():
    with pytest.raises(M.MessageError, match="qos_report was expected"):
        M.decode(M.encode(M.Ack(["x"])), "t", expect=M.QosReport)
    with pytest.raises(ValueError, match="must start with the node id"):
        M.encode(_report(report_id="n2:j:0"))
    with pytest.raises(ValueError, match="psnr_db"):
        M.encode(_report(psnr_db=float("nan")))


def test_topics():
    assert T.parse_node_topic(T.node("n1", "qos")) == ("n1", "qos")
    assert T.parse_node_topic(T.to("n1", "job")) is None
    assert T.parse_node_topic("other/v1/node/n1/qos") is None


def _op(model, cbr, psnr):
    return OperatingPoint(model, SHA, cbr, (0.0, 10.0, 20.0), tuple(psnr))


def test_policy_picks_cheapest_feasible_and_replans():
    lo, hi = _op("m", 0.02, (20.0, 24.0, 26.0)), _op("m", 0.06, (22.0, 27.0, 30.0))
    pol = Policy([lo, hi], margin_db=0.5)
    assert pol.choose(20, psnr_target=25).op is lo
    assert pol.choose(10, psnr_target=25).op is hi
    c = pol.choose(0, psnr_target=25)
    assert c.op is hi and not c.feasible and "best effort" in c.reason
    c = pol.choose(10, psnr_target=25, cbr_max=0.03)
    assert c.op is lo and not c.feasible
    assert pol.choose(20, psnr_target=None).op is hi            # no target: best quality
    assert lo.predict(5.0) == pytest.approx(22.0) and lo.predict(-5.0) == pytest.approx(18.0)
    # a link whose content is 2 dB harder than the tables: learned from reports
    st = LinkState()
    for _ in range(3):
        pol.observe(st, lo, snr_est_db=20.0, psnr_db=24.0, latency_ms=100, psnr_target=25)
    assert st.offset_db == pytest.approx(-2.0) and st.misses == 3
    assert "3 of the last 3 images below" in pol.should_replan(st, 20.0)
    st.replanned()
    assert st.misses == 0 and pol.should_replan(st, 20.0) is None
    # the hardest recent image sets the offset; misses need not be consecutive
    st4 = LinkState()
    for p in (27.0, 23.0, 27.0, 23.5):
        pol.observe(st4, lo, snr_est_db=20.0, psnr_db=p, latency_ms=None, psnr_target=25)
    assert st4.offset_db == pytest.approx(-3.0) and st4.misses == 2 and pol.should_replan(st4, 20.0)
    assert pol.choose(20, psnr_target=25, state=st).op is hi
    # an SNR drop replaces the average at once and triggers a re-plan
    st2 = LinkState()
    pol.observe(st2, lo, snr_est_db=20.0, psnr_db=26.0, latency_ms=None, psnr_target=25)
    pol.observe(st2, lo, snr_est_db=4.0, psnr_db=22.0, latency_ms=None, psnr_target=25)
    assert st2.snr_db == 4.0 and "SNR moved" in pol.should_replan(st2, 20.0)
    # latency: a model measured too slow is avoided when another fits
    fast = _op("fast", 0.02, (19.0, 23.0, 25.6))
    pol2 = Policy([lo, fast])
    st3 = LinkState(latency_ms={"m": 900.0, "fast": 50.0})
    assert pol2.choose(20, psnr_target=25, latency_target=200, state=st3).op is fast


def test_catalogue_from_shipped_cards():
    from testbed.core.paths import shipped_models

    ops = load_catalogue(shipped_models())
    keys = {o.key for o in ops}
    assert {"jscc-v1@0.0208", "jscc-v1@0.0625", "akb-v1@0.0625"} <= keys
    for o in ops:
        assert list(o.snr_db) == sorted(o.snr_db) and len(o.psnr_db) == len(o.snr_db)


def test_outbox_survives_a_kill_and_acks(tmp_path):
    ob = Outbox(tmp_path)
    for i in range(3):
        ob.add(f"n1:j:{i}", "qos", M.encode(_report(report_id=f"n1:j:{i}", seq=i)))
    ob.ack(["n1:j:0"])
    ob.close()
    with open(tmp_path / "outbox.jsonl", "a") as f:     # a kill in the middle of the next write
        f.write('{"schema": "testbed.qos_rep')
    ob2 = Outbox(tmp_path)
    assert sorted(ob2.pending) == ["n1:j:1", "n1:j:2"]
    due = ob2.due(0)
    assert [w for w, _ in due] == ["qos", "qos"] and M.decode(due[0][1], "t").seq == 1
    assert ob2.due(60) == []                                   # marked as sent
    assert ob2.ack(["n1:j:1", "n1:j:2", "unknown"]) == 2
    assert len(ob2) == 0 and (tmp_path / "outbox.jsonl").read_text() == ""   # compacted
    ob2.close()
    assert len(Outbox(tmp_path)) == 0


def test_model_transfer_round_trip_and_tamper(tmp_path, shipped_model):
    from testbed.zoo import load_card

    a, b = pack(shipped_model), pack(shipped_model)
    assert a == b                                               # deterministic
    ann = announce("jscc-v1", load_card(shipped_model / "model_card.yaml"), a, chunk_size=1 << 20)
    parts = list(chunks(ann, a))
    assert ann.chunks == len(parts) > 1
    asm = Assembler(ann.name, ann.archive_sha256, ann.chunks)
    got = None
    for c in reversed(parts):                                   # any order
        got = asm.add(M.decode(M.encode(c), "t")) or got
    assert got == a
    dest = unpack(got, tmp_path / "jscc-v1")
    from testbed.zoo import open_codec

    assert open_codec(str(dest)).sha256 == ann.sha256
    # a corrupted chunk is caught by the archive hash
    bad = Assembler(ann.name, ann.archive_sha256, ann.chunks)
    parts[0].data = parts[1].data
    with pytest.raises(TransferError, match="does not match"):
        for c in parts:
            bad.add(c)


def test_unpack_refuses_paths(tmp_path):
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(TransferError, match="not a plain top-level file"):
        unpack(buf.getvalue(), tmp_path / "m")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "m").exists()


def test_example_intents_load():
    from tests.helpers import REPO
    from testbed.agent.controller import load_intent

    files = sorted((REPO / "examples").glob("*.yaml"))
    assert files
    for f in files:
        assert load_intent(str(f)).intent_id


def test_bad_intent_file_names_file_and_key(tmp_path):
    from testbed.agent.controller import load_intent
    from testbed.core.configfile import ConfigError

    f = tmp_path / "i.yaml"
    for text, key in (("intent_id: a\nlinks: 0\n", "links"), ("intent_id: a\nqos: {latency_ms: -1}\n", "qos.latency_ms"),
                      ("intent_id: a\nbogus: 1\n", "bogus"), ("links: 1\n", "intent_id")):
        f.write_text(text)
        with pytest.raises(ConfigError) as e:
            load_intent(str(f))
        assert str(f) in str(e.value) and key in str(e.value), str(e.value)


class _FakeLink:
    rejected = 0

    def __init__(self):
        self.sent = []
        self.qos_of = []          # (sub-topic, QoS) of each publish

    def publish(self, topic, payload, **kw):
        self.sent.append((topic, payload))
        self.qos_of.append((topic.rsplit("/", 1)[1], kw.get("qos", 1)))

    def publish_many(self, items, **kw):
        for topic, payload in items:
            self.publish(topic, payload, **kw)


def _offline_node(tmp_path):
    from testbed.agent.node import Node, NodeOptions

    node = Node(NodeOptions("mqtt://127.0.0.1:1", "n1", state_dir=str(tmp_path / "n1")))
    node.link = _FakeLink()
    return node


def test_node_ignores_superseded_updates(tmp_path):
    """A re-sent older update must not roll the operating point back past a newer one applied."""
    node = _offline_node(tmp_path)
    node.applied["j1"] = {7}
    node._on_job(M.JobUpdate("j1", "jscc-v1", "a" * 64, 0.0625, 10.0, decision="d5"), "", None)
    assert "j1" not in node.updates
    states = [json.loads(p) for _, p in node.link.sent]
    assert states[-1]["state"] == "switched" and states[-1]["decision"] == "d5"   # confirmed: stop re-sending
    node._on_job(M.JobUpdate("j1", "jscc-v1", "a" * 64, 0.0208, 10.0, decision="d9"), "", None)
    assert node.updates["j1"].decision == "d9"


def test_node_publishes_reports_at_qos0_and_job_states_at_qos1(tmp_path):
    """A report is kept in the outbox until the controller's own ack (and the controller takes
    reports at QoS 0), so the node publishes it at QoS 0, also when it re-sends it; job states,
    which the controller takes at QoS 1, go at QoS 1."""
    node = _offline_node(tmp_path)
    node._report(_report())
    node._job_state("j", "running")
    node._resend(0.0)
    assert node.link.qos_of == [("qos", 0), ("job_state", 1), ("qos", 0), ("job_state", 1)]


def test_model_transfer_error_survives_later_chunks(tmp_path, shipped_model):
    """The first transfer error is what the fetch reports; chunks after it (or after the end) are
    ignored, so a duplicate last chunk cannot start a second install."""
    from testbed.agent.receiving import _Transfer
    from testbed.zoo import load_card

    node = _offline_node(tmp_path)
    a = pack(shipped_model)
    ann = announce("jscc-v1", load_card(shipped_model / "model_card.yaml"), a, chunk_size=1 << 20)
    parts = list(chunks(ann, a))
    tr = node.receiver.transfers[ann.sha256] = _Transfer()
    bad = M.ModelChunk(**{**parts[0].__dict__, "data": parts[1].data})   # wrong bytes for chunk 0
    for c in [bad] + parts[1:]:
        node.receiver.on_chunk(c, "", None)
    assert tr.done.is_set() and isinstance(tr.error, TransferError)
    first = tr.error
    for c in parts:                     # the whole transfer again, now intact: too late, ignored
        node.receiver.on_chunk(c, "", None)
    assert tr.error is first
    import threading

    assert not node.receiver.codecs and not (node.receiver.store / "jscc-v1").exists()     # no install was started
    assert not [t for t in threading.enumerate() if t.name.startswith("install-")]


def test_controller_updates_supersede_and_follow_the_job(tmp_path):
    """After a re-plan, a node that restarts is re-sent its job as it stands now (not the first
    assignment), and an older update still being re-sent is withdrawn by a newer one."""
    from testbed.agent.controller import Controller, ControllerOptions, LinkPlan

    c = Controller(ControllerOptions("mqtt://127.0.0.1:1", out=str(tmp_path / "ctl"), password="x"))
    c.link, c.olink = _FakeLink(), _FakeLink()      # (jobs go out on the ops connection)
    op = _op("jscc-v1", 0.0208, [20, 24, 26])
    base = dict(intent_id="i1", link_id="i1.L0", model="jscc-v1", model_sha256=SHA, cbr=0.0208, snr_db=10.0,
                images=["samples"], decision="d1")
    tx, rx = M.Job("i1.L0.tx", part="tx", peer="r", **base), M.Job("i1.L0.rx", part="rx", peer="t", **base)
    lp = LinkPlan("i1.L0", M.Intent("i1"), "t", tx.job_id, op, 10.0, "d1", rx_node="r", rx_job=rx.job_id,
                  sent_jobs={"t": tx, "r": rx})
    for d, cbr in (("d5", 0.0625), ("d7", 0.0365)):
        c._send_update(lp, M.JobUpdate(tx.job_id, "jscc-v1", SHA, cbr, 5.0, decision=d))
    assert [k for k in c.pending if "#update:" in k] == ["i1.L0.rx#update:d7"]
    assert list(lp.pending_tx) == ["d7"]
    now = lp.sent_jobs["r"]
    assert (now.job_id, now.cbr, now.snr_db, now.decision) == ("i1.L0.rx", 0.0365, 5.0, "d7")
    assert lp.sent_jobs["t"].decision == "d1"      # the transmitter follows once the receiver switched
    c._send_job_update(lp, "t", lp.pending_tx.pop("d7"))
    assert (lp.sent_jobs["t"].job_id, lp.sent_jobs["t"].decision) == ("i1.L0.tx", "d7")


def test_controller_qos_writer_survives_disk_errors(tmp_path):
    """An I/O error while appending to qos.csv is retried (the reports stay unacknowledged until
    written); it never kills the writer thread."""
    from testbed.agent.controller import Controller, ControllerOptions

    c = Controller(ControllerOptions("mqtt://127.0.0.1:1", out=str(tmp_path / "ctl"), password="x"))

    class Flaky:
        path = "qos.csv"

        def __init__(self, fails):
            self.fails, self.rows = fails, []

        def append_many(self, rows):
            if self.fails:
                self.fails -= 1
                raise OSError(28, "No space left on device")
            self.rows += rows

    c.qos.log = Flaky(1)
    assert c.qos._append([({"a": 1}, [("n1", "r1")])], stopping=False)
    assert c.qos.log.rows == [{"a": 1}] and c.qos.write_errors == 1
    c.qos.log = Flaky(5)
    assert not c.qos._append([({"a": 2}, [("n1", "r2")])], stopping=True)   # shutting down: left unacknowledged


def test_outbox_cuts_a_torn_tail_so_the_next_message_survives_a_restart(tmp_path):
    ob = Outbox(tmp_path)
    ob.add("n1:j:0", "qos", b'{"a": 0}')
    ob.close()
    with open(tmp_path / "outbox.jsonl", "a") as f:      # killed mid-write
        f.write('{"id": "n1:j:1", "what": "qos", "payl')
    with open(tmp_path / "acked.txt", "a") as f:
        f.write("n1:j")
    ob = Outbox(tmp_path)
    assert sorted(ob.pending) == ["n1:j:0"]
    ob.add("n1:j:2", "qos", b'{"a": 2}')
    ob.ack(["n1:j:0"])
    ob.close()
    ob = Outbox(tmp_path)                                # restarted again: nothing glued, nothing lost
    assert sorted(ob.pending) == ["n1:j:2"]
    for name in ("outbox.jsonl", "acked.txt"):
        for line in (tmp_path / name).read_text().splitlines():
            assert name == "acked.txt" or json.loads(line)["id"]
    ob.close()


def test_outbox_compacts_around_a_message_that_stays_pending(tmp_path):
    ob = Outbox(tmp_path)
    ob.add("n1:j:held", "qos", b'{"x": 1}')             # e.g. a tx half waiting for its rx half
    for i in range(2000):
        ob.add(f"n1:j:{i}", "qos", b'{"x": 1}')
        ob.ack([f"n1:j:{i}"])
    assert (tmp_path / "outbox.jsonl").stat().st_size < 100 * 300
    assert (tmp_path / "acked.txt").stat().st_size < 100 * 300
    ob.add("n1:j:late", "qos", b'{"x": 2}')
    ob.close()
    ob = Outbox(tmp_path)
    assert sorted(ob.pending) == ["n1:j:held", "n1:j:late"]
    assert ob.ack(["n1:j:held", "n1:j:late", "n1:j:held"]) == 2
    assert (tmp_path / "outbox.jsonl").read_text() == "" and len(ob) == 0
    ob.close()


def _controller(tmp_path, **kw):
    from testbed.agent.controller import Controller, ControllerOptions

    c = Controller(ControllerOptions("mqtt://127.0.0.1:1", out=str(tmp_path / "ctl"), password="x", **kw))
    c.link, c.olink = _FakeLink(), _FakeLink()      # (jobs go out on the ops connection)
    c.tlink = _FakeLink()
    return c


def _online(c, node, role="txrx"):
    c._on_status(M.NodeStatus(node, True, role=role, radio="loopback",
                              medium="tcp://127.0.0.1:1" if role == "tx" else ""), T.node(node, "status"), None)


_events = iter(range(1, 1 << 30))


def _state(c, node, job, state, error="", decision=""):
    c._on_job_state(M.JobState(f"{node}:{job}:{state}:{next(_events)}", node, job, state, error=error,
                               decision=decision), T.node(node, "job_state"), None)


def _sent_to(c, node, kind):
    c.durable.flush()        # jobs go out once the journal records before them are on disk
    sent = [M.decode(p, t, (M.Job, M.JobUpdate, M.JobCancel)) if isinstance(p, bytes) else p
            for t, p in c.olink.sent if t == T.to(node, "job")]      # (encoded before the commit)
    return [m for m in sent if isinstance(m, kind)]


def _split(c, intent_id="s"):
    _online(c, "t", "tx")
    _online(c, "r", "rx")
    assert c.submit(M.Intent(intent_id, images=["samples"])).accepted
    return c.links[f"{intent_id}.L0"]


def test_split_receiver_failing_before_the_tx_job_was_sent_frees_the_tx_node(tmp_path):
    c = _controller(tmp_path)
    lp = _split(c)
    assert lp.tx_hold is not None and _sent_to(c, "t", M.Job) == []
    _state(c, "r", lp.rx_job, "accepted")
    _state(c, "r", lp.rx_job, "failed", error="no images")
    assert lp.tx_hold is None and lp.tx_status == "cancelled" and lp.status == "failed"
    assert c._busy() == set() and c.intents["s"]["state"] == "failed"
    assert _sent_to(c, "t", M.JobCancel) == [] and _sent_to(c, "t", M.Job) == []   # it never saw the job
    assert not [k for k in c.pending if k.startswith(lp.job_id)]
    c._periodic()
    assert not [k for k in c.pending if k.startswith(lp.job_id)]


def test_node_answers_a_cancel_for_a_job_it_never_got(tmp_path):
    node = _offline_node(tmp_path)
    node._on_job(M.JobCancel("x.L0.tx", "receiver failed"), "", None)
    last = json.loads(node.link.sent[-1][1])
    assert (last["job_id"], last["state"]) == ("x.L0.tx", "cancelled")
    job = M.Job("x.L0.tx", "x", "x.L0", "link", "jscc-v1", SHA, 0.02, 10.0, ["samples"])
    node._on_job(job, "", None)                         # the assignment arriving after all: not run
    assert node.jobs.empty() and json.loads(node.link.sent[-1][1])["state"] == "cancelled"


def test_updates_for_a_finished_job_stop_being_resent(tmp_path):
    c = _controller(tmp_path)
    lp = _split(c)
    _state(c, "r", lp.rx_job, "running")
    _state(c, "t", lp.job_id, "running")
    c._send_update(lp, M.JobUpdate(lp.job_id, "jscc-v1", SHA, 0.0625, 5.0, decision="d90"))
    assert f"{lp.rx_job}#update:d90" in c.pending and lp.pending_tx
    _state(c, "r", lp.rx_job, "cancelled")               # the receiver ends before it switched
    assert not [k for k in c.pending if "#update:" in k] and not lp.pending_tx
    c._send_update(lp, M.JobUpdate(lp.job_id, "jscc-v1", SHA, 0.02, 5.0, decision="d91"))
    assert not [k for k in c.pending if "#update:" in k] and not lp.pending_tx   # a finished end: no updates
    # the node answers an update for a job it finished with that job's final state
    node = _offline_node(tmp_path)
    node.final["j1"] = "done"
    node._on_job(M.JobUpdate("j1", "jscc-v1", SHA, 0.0625, 10.0, decision="d5"), "", None)
    last = json.loads(node.link.sent[-1][1])
    assert (last["job_id"], last["state"]) == ("j1", "done")


def test_node_offline_past_the_grace_period_fails_its_link(tmp_path):
    c = _controller(tmp_path, offline_grace_s=5.0)
    lp = _split(c)
    for node, job in (("r", lp.rx_job), ("t", lp.job_id)):
        _state(c, node, job, "running")
    # back within the grace period: carries on
    c._on_status(M.NodeStatus("t", False, role="tx", radio="loopback"), T.node("t", "status"), None)
    _online(c, "t", "tx")
    c._periodic()
    assert lp.status == "running" and "t" not in c.offline_since
    # gone for good (last will)
    c._on_status(M.NodeStatus("t", False, role="tx", radio="loopback"), T.node("t", "status"), None)
    c._periodic()
    assert lp.status == "running"                         # not yet
    c.offline_since["t"] -= 6.0
    c._periodic()
    assert lp.tx_status == "failed" and lp.status == "failed" and c.intents["s"]["state"] == "failed"
    cancel = _sent_to(c, "r", M.JobCancel)
    assert cancel and cancel[-1].job_id == lp.rx_job and f"{lp.rx_job}#cancel" in c.pending
    fails = [json.loads(x) for x in (c.out / "decisions.jsonl").read_text().splitlines()]
    fails = [d for d in fails if d["action"] == "fail"]
    assert len(fails) == 1 and fails[0]["link_id"] == lp.link_id and "offline" in fails[0]["reason"]
    _state(c, "r", lp.rx_job, "cancelled")
    assert c._busy() == set() and f"{lp.rx_job}#cancel" not in c.pending
    # nothing is re-sent to the dead node while it is offline; if it returns it is told to cancel
    n = len(c.olink.sent)
    c.opts.resend_s = 0.0
    c._periodic()
    assert not [t for t, _ in c.olink.sent[n:] if t == T.to("t", "job")]
    n = len(c.olink.sent)
    _online(c, "t", "tx")
    c.durable.flush()
    back = [M.decode(p, t, (M.Job, M.JobCancel)) for t, p in c.olink.sent[n:] if t == T.to("t", "job")]
    assert len(back) == 1 and isinstance(back[0], M.JobCancel) and back[0].job_id == lp.job_id   # not the job
    _state(c, "t", lp.job_id, "cancelled")
    assert not c.pending


def test_decision_ids_resume_after_a_restart_and_a_torn_line(tmp_path):
    c = _controller(tmp_path)
    c._decide("i1", "i1.L0", "assign", "first run")
    c._decide("i1", "i1.L0", "replan", "first run")
    c.durable.flush()
    c.decisions.file.write('{"schema": "testbed.decision/1", "decision_id": "d3", "in')    # killed mid-write
    c.decisions.close()
    c.qos.close()
    c2 = _controller(tmp_path)
    c2._decide("i2", "i2.L0", "assign", "second run")
    c2.decisions.close()
    c2.qos.close()
    ids = [json.loads(x)["decision_id"] for x in (c2.out / "decisions.jsonl").read_text().splitlines()]
    assert ids == ["d1", "d2", "d3"]


def test_controller_refuses_reserved_node_ids(tmp_path):
    c = _controller(tmp_path)
    for who in ("operator", "controller"):
        c._on_status(M.NodeStatus(who, True, role="txrx"), T.node(who, "status"), None)
    assert c.nodes == {} and c.rejected == 2
    assert not c.submit(M.Intent("hijack", nodes=["operator"])).accepted


def test_a_model_is_streamed_once_per_node_at_a_time(tmp_path):
    import threading
    import types

    c = _controller(tmp_path)
    gate, streamed = threading.Event(), []

    class SlowLink(_FakeLink):
        def publish(self, topic, payload, **kw):
            if isinstance(payload, M.ModelChunk):
                gate.wait(10)
                streamed.append(payload.index)
            else:
                super().publish(topic, payload, **kw)

    c.link = SlowLink()
    name = "jscc-v1"
    sha = c.models.archive(name)[0].sha256
    props = types.SimpleNamespace(ResponseTopic=T.to("n1", "model"), CorrelationData=b"x")
    for _ in range(3):
        c._on_model_request(M.ModelRequest("n1", name, sha), T.node("n1", "model_request"), props)

    def disseminated():
        c.durable.flush()        # decisions go out once on disk
        return [p for t, p in c.link.sent if isinstance(p, bytes) and b'"disseminate"' in p]

    assert len(disseminated()) == 1
    gate.set()
    t_end = time.monotonic() + 10
    while c.models.streaming and time.monotonic() < t_end:
        time.sleep(0.05)
    assert not c.models.streaming and len(streamed) == c.models.archive(name)[0].chunks
    c._on_model_request(M.ModelRequest("n1", name, sha), T.node("n1", "model_request"), props)
    assert len(disseminated()) == 2                      # once done, it may ask again


def test_reports_arriving_while_the_controller_stops_are_left_unseen(tmp_path):
    c = _controller(tmp_path)
    c.stopping.set()
    c._on_qos(_report(), T.node("n1", "qos"), None)
    assert "n1:j:0" not in c.qos.seen and c.qos.queue.empty()


def test_qos_acks_are_coalesced_per_node_and_flushed_at_stop(tmp_path):
    """Each node is acknowledged at most once per ack interval, in its own slot, with every report
    of it written since; what is owed when the writer stops, at once; every report exactly once,
    within about an interval, and only once it is in qos.csv."""
    import threading
    from testbed.agent.qos_store import QosStore
    from testbed.core.runlog import read_csv_rows

    acks, put_at, lock = [], {}, threading.Lock()      # acks: (time, node, ids, all on disk)

    def ack(pairs):
        on_disk = {r["report_id"] for r in read_csv_rows(tmp_path / "qos.csv")}
        with lock:
            acks.extend((time.monotonic(), node, ids, all(i in on_disk for i in ids)) for node, ids in pairs)

    def put(node, i):
        put_at[f"{node}:{i}"] = time.monotonic()
        q.put({"report_id": f"{node}:{i}", "node_id": node}, [(node, f"{node}:{i}")])

    q = QosStore(tmp_path / "qos.csv", ack, ack_every_s=0.4).start()
    assert q._ack_due("a", 10.0) != q._ack_due("b", 10.0)       # their own slots (this pair differs)
    for i in range(12):                # 12 writes each within about 1.5 intervals
        put("a", i)
        put("b", i)
        time.sleep(0.05)
    t_end = time.monotonic() + 5
    while sum(len(ids) for _, _, ids, _ in acks) < 24 and time.monotonic() < t_end:
        time.sleep(0.005)
    put("a", 12)                       # owed to a when the writer stops: sent then, not in its slot
    t_stop = time.monotonic()
    q.stop()
    q.join(5)
    assert not q.writer.is_alive()
    for n, count in (("a", 13), ("b", 12)):
        mine = [(t, ids) for t, m, ids, _ in acks if m == n]
        assert sum((ids for _, ids in mine), []) == [f"{n}:{i}" for i in range(count)]   # each once, in order
        assert len(mine) <= 6                                      # coalesced (12 reports in 0.6 s)
        times = [t for t, _ in mine][:-1 if n == "a" else None]
        assert all(b - a >= 0.39 for a, b in zip(times, times[1:]))    # at most one ack per interval
        assert all(t - put_at[i] < 0.4 + 0.3 for t, ids in mine for i in ids)  # within about an interval
    assert acks[-1][1:3] == ("a", ["a:12"]) and acks[-1][0] - t_stop < 0.3    # the stop did not wait
    assert all(ok for *_, ok in acks)                              # never ahead of the disk
    q.close()


def test_fast_ack_payload_is_the_validated_encoding():
    from testbed.agent.qos_store import ack_payload

    for ids in (["n1:i1.L0.j:0"], [f"n{i}:i{i}.L0.j:{i}" for i in range(50)], []):
        assert ack_payload(ids) == M.encode(M.Ack(ids))
        assert M.decode(ack_payload(ids), "t", M.Ack).ids == ids


def test_buffered_client_overrides_paho_internals_that_exist():
    """BufferedClient relies on paho's private _sock_recv/_sock_close: a paho upgrade that drops
    them must fail here, not silently fall back to unbuffered reads."""
    import paho.mqtt.client as mqtt

    from testbed.agent.mqttclient import BufferedClient

    for name in ("_sock_recv", "_sock_close", "loop_read", "_packet_queue", "_packet_write", "_sock_send"):
        assert callable(getattr(mqtt.Client, name, None)), name
        assert name == "_sock_send" or getattr(BufferedClient, name) is not getattr(mqtt.Client, name)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    for attr in ("_out_packet", "_msgtime_mutex", "_last_msg_out", "_thread", "_sockpairW"):
        assert hasattr(c, attr), attr


def test_the_urgent_gate_lets_an_urgent_handler_in_before_the_next_run():
    """The intake (``with gate:``) starts no run of reports while an urgent handler (an intent)
    is announced, so the handler waits for at most the run in progress."""
    import threading
    import time

    from testbed.agent.ingest import UrgentGate

    gate = UrgentGate(threading.RLock(), max_wait_s=5.0)
    order, runs_started = [], threading.Event()

    def intake():
        for i in range(200):
            with gate:
                order.append("run")
                runs_started.set()
                time.sleep(0.001)

    t = threading.Thread(target=intake)
    t.start()
    runs_started.wait(5)
    with gate.urgent():
        order.append("urgent")
        n_before = order.count("run")
    t.join(10)
    assert order.count("run") == 200
    # at most the run in progress when the handler announced itself came between
    assert n_before <= order.index("urgent") <= n_before + 1
    assert order.index("urgent") < 150, "the urgent handler waited for the intake's whole stream"


def test_the_urgent_gate_does_not_starve_the_intake():
    """Urgent handlers announced back to back (never none) hold the intake off for at most
    ``max_wait_s`` at a time, not for as long as they keep coming."""
    import threading
    import time

    from testbed.agent.ingest import UrgentGate

    gate = UrgentGate(threading.RLock(), max_wait_s=0.02)
    stop = threading.Event()

    def urgent_stream():
        while not stop.is_set():
            with gate.urgent():
                time.sleep(0.001)

    streams = [threading.Thread(target=urgent_stream) for _ in range(2)]
    for t in streams:
        t.start()
    time.sleep(0.05)
    runs, t_end = 0, time.monotonic() + 1.0
    while time.monotonic() < t_end:
        with gate:
            runs += 1
    stop.set()
    for t in streams:
        t.join(5)
    assert runs >= 5, f"the intake got {runs} run(s) in 1 s of urgent traffic"


def test_group_commit_writes_every_file_before_it_fsyncs_and_retries_without_duplicates(tmp_path, monkeypatch):
    """A batch for two files: both written, then fsync'ed; an fsync that fails (a full disk) is
    tried again for both, each line stays in its file exactly once, the action runs after them."""
    import errno
    import os

    from testbed.agent import journal

    calls, fail = [], [1]
    real_fsync = os.fsync

    def fsync(fd):
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        if fail[0]:
            fail[0] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    a, b = open(tmp_path / "a.jsonl", "a"), open(tmp_path / "b.jsonl", "a")
    a.write("old\n")
    a.flush()
    gc_ = journal.GroupCommit("test-commit")
    seen_at_action = []
    monkeypatch.setattr(journal.os, "fsync", fsync)
    gc_.write(a, "a1")
    gc_.write(b, "b1")
    gc_.after(lambda: seen_at_action.append(((tmp_path / "a.jsonl").read_text(), (tmp_path / "b.jsonl").read_text())))
    assert gc_.flush(30)
    gc_.stop()
    assert (tmp_path / "a.jsonl").read_text() == "old\na1\n"
    assert (tmp_path / "b.jsonl").read_text() == "b1\n"
    assert seen_at_action == [("old\na1\n", "b1\n")]
    assert gc_.write_errors == 1
    # after the failed try, the retry wrote both and fsync'ed both: no fsync between the writes
    assert [c[1].rsplit("/", 1)[1] for c in calls[1:]] == ["a.jsonl", "b.jsonl"]


def test_group_commit_appends_at_once_and_promises_only_after_the_fsync(tmp_path, monkeypatch):
    """A line is in its file when write() returns (a killed process leaves it there), a job
    (when_written) goes out at once on the caller's thread, the reply (after) waits for the fsync."""
    import os
    import threading

    from testbed.agent import journal

    real_fsync, gate, in_fsync = os.fsync, threading.Event(), threading.Event()

    def slow_fsync(fd):
        in_fsync.set()
        assert gate.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(journal.os, "fsync", slow_fsync)
    path = tmp_path / "j.jsonl"
    f = open(path, "a")
    gc_ = journal.GroupCommit("test-commit")
    ran = []
    try:
        gc_.write(f, "one")
        assert path.read_text() == "one\n"
        gc_.when_written(lambda: ran.append(("job", threading.current_thread().name)))
        gc_.after(lambda: ran.append(("reply", path.read_text())))
        assert ran == [("job", threading.current_thread().name)]
        assert in_fsync.wait(5)
        time.sleep(0.05)
        assert ran == [("job", threading.current_thread().name)]       # the reply waits for the fsync
        gate.set()
        assert gc_.flush(10)
        assert ran[1] == ("reply", "one\n")
    finally:
        gate.set()
        gc_.stop()
        f.close()


def test_group_commit_failed_append_keeps_the_order_and_holds_what_waits_for_it(tmp_path, monkeypatch):
    """An append that fails (a full disk) leaves nothing behind; it and every line after it go
    to the writer, which retries in order; a job waiting for them goes out only then."""
    import errno
    import os
    import threading

    from testbed.agent import journal

    path = tmp_path / "j.jsonl"
    f = open(path, "a")
    real_write, disk_full = os.write, threading.Event()
    disk_full.set()

    def write(fd, data):
        if fd == f.fileno() and disk_full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(journal.os, "write", write)
    gc_ = journal.GroupCommit("test-commit")
    seen = []
    try:
        gc_.write(f, "1")
        assert path.read_text() == ""
        gc_.write(f, "2")                     # would succeed, but must not overtake "1"
        assert path.read_text() == ""
        gc_.when_written(lambda: seen.append((path.read_text(), threading.current_thread().name)))
        time.sleep(0.5)                       # the writer's retries fail too
        assert seen == [] and path.read_text() == ""
        disk_full.clear()
        assert gc_.flush(10)
        assert seen == [("1\n2\n", "test-commit")]
        assert gc_.write_errors >= 2
        gc_.write(f, "3")                     # the backlog is gone: appended at once again
        assert path.read_text() == "1\n2\n3\n"
    finally:
        gc_.stop()
        f.close()
