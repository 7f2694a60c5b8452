"""The agents plan and run the digital baselines (built-in codecs, no model folder) like the
learned codecs: the controller's catalogue holds their measured Kodak tables, an intent may ask
for them, and a node opens them itself (nothing to disseminate)."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.agent import AgentEnv, crop_images, wait_until
from testbed.agent import messages as M


def test_the_catalogue_holds_the_digital_codecs_recorded_tables():
    from testbed.agent.policy import load_catalogue
    from testbed.digital.evaluation import EVAL_FILE
    from testbed.zoo import open_codec

    ops = load_catalogue({})
    table = json.loads(EVAL_FILE.read_text())
    for name in ("jpeg2000-ldpc", "jpeg-ldpc"):
        assert table[name]["sha256"] == open_codec(name).sha256      # the shipped table is for this version
        mine = [o for o in ops if o.model == name]
        assert sorted(o.cbr for o in mine) == sorted(float(k.split("cbr=")[1]) for k in table[name]["evaluation"]
                                                      if "/mcs=" not in k)
        for o in mine:
            assert o.sha256 == open_codec(name).sha256 and o.predict(25.0) > o.predict(0.0)
    assert not [o for o in load_catalogue({}, builtins=False)]


@pytest.mark.slow
def test_an_intent_for_a_digital_codec_runs_on_a_node_that_opens_it_itself(tmp_path):
    from testbed.core.images import load_rgb
    from testbed.core.metrics import psnr
    from testbed.core.runlog import read_csv_rows
    from testbed.zoo import open_codec

    env, node = AgentEnv(tmp_path), None
    try:
        imgs = crop_images(tmp_path / "imgs", n=2, h=256, w=384)      # room for a codestream at qpsk-1/2
        ctl = env.controller()
        # the node in a process of its own: an in-process flowgraph keeps its shared-memory
        # segments until the test process ends, and the suite's process is near the system's limit
        node = subprocess.Popen([str(Path(sys.executable).parent / "testbed"), "node", "--broker", env.url, "--id", "n1",
                                 "--password-file", str(env.broker_dir / "n1.password"),
                                 "--state-dir", str(tmp_path / "state-n1")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: "n1" in ctl.nodes and ctl.nodes["n1"].online, 60, "node n1 to announce itself")
        r = ctl.submit(M.Intent("unknown", images=[str(imgs)], models=["jpeg2000-ldpc", "nope"]))
        assert not r.accepted and "unknown model(s) nope" in r.reason and "jpeg2000-ldpc" in r.reason
        for why, models in (("needs models that are all digital codecs", []),
                            ("needs models that are all digital codecs", ["jpeg2000-ldpc", "jscc-v1"])):
            r = ctl.submit(M.Intent("pin-bad", images=[str(imgs)], models=models, mcs="qpsk-1/2"))
            assert not r.accepted and why in r.reason
        codec = open_codec("jpeg2000-ldpc")
        for iid, mcs, n in (("dig", "", 2), ("pin", "qpsk-1/2", 4)):
            r = ctl.submit(M.Intent(iid, images=[str(imgs)], models=["jpeg2000-ldpc"], qos=M.QosTarget(psnr_db=20),
                                    mcs=mcs))
            assert r.accepted, r.reason
            wait_until(lambda: ctl.links[f"{iid}.L0"].status in M.FINAL_STATES, 120, f"the digital link {iid} to end")
            assert ctl.links[f"{iid}.L0"].status == "done"
            ctl.durable.flush()
            wait_until(lambda: len(read_csv_rows(ctl.out / "qos.csv")) == n, 30, f"{n} QoS rows")
            rows = [r for r in read_csv_rows(ctl.out / "qos.csv") if r["intent_id"] == iid]
            assert len(rows) == 2 and {r["model"] for r in rows} == {"jpeg2000-ldpc"}
            for r in rows:      # every block decoded: the image is the codestream sent, as on an ideal channel
                img = load_rgb(imgs / r["image"])
                enc = codec.encode(img, float(r["snr_tx_db"]), codec.rate(float(r["cbr"]), mcs=mcs or None))
                ideal = codec.decode(enc.symbols, 40.0, *img.shape[:2], mode=enc.mode)
                assert r["frames_decoded"] == r["frames_sent"] and abs(float(r["psnr_db"]) - psnr(img, ideal)) < 0.01
                if mcs:
                    assert enc.fields["mcs"] == mcs
        decisions = [json.loads(x) for x in (ctl.out / "decisions.jsonl").read_text().splitlines()]
        assert not [d for d in decisions if d["action"] == "disseminate"]     # nothing sent to the node
        assigned = [d for d in decisions if d["action"] == "assign"]
        assert [d["model"] for d in assigned] == ["jpeg2000-ldpc"] * 2
        assert "MCS qpsk-1/2: predicted from the auto table" in assigned[1]["reason"]
    finally:
        if node is not None:
            node.send_signal(signal.SIGINT)
            try:
                node.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                node.kill()
                node.communicate()
        env.close()


def test_a_pinned_mcs_plans_with_that_mcs_table_where_one_was_recorded():
    import types

    from testbed.agent.policy import Policy, catalogue_from_card

    card = types.SimpleNamespace(sha256="a" * 64, evaluation={
        "kodak/awgn/cbr=0.0625": {"psnr_db": {"0": 13.0, "10": 30.0}},
        "kodak/awgn/cbr=0.0625/mcs=qpsk-1/2": {"psnr_db": {"0": 25.0, "10": 26.0}},
        "kodak/awgn/cbr=0.0625/no-ckb,skb": {"psnr_db": {"0": 1.0, "10": 2.0}}})     # not a planning row
    ops = catalogue_from_card("jpeg2000-ldpc", card)
    assert sorted(o.mcs for o in ops) == ["", "qpsk-1/2"]
    pol = Policy(ops)
    assert pol.choose(10.0, psnr_target=20.0).op.mcs == ""                     # auto unless pinned
    ch = pol.choose(10.0, psnr_target=20.0, mcs="qpsk-1/2")
    assert ch.op.mcs == "qpsk-1/2" and ch.predicted_db == 26.0 and ch.op.key.endswith("/qpsk-1/2")
    ch = pol.choose(10.0, psnr_target=20.0, mcs="16qam-1/2")                   # no table at that MCS
    assert ch.op.mcs == "" and "no table at 16qam-1/2" in ch.reason
