"""The agents plan and run the digital baselines (built-in codecs, no model folder) like the
learned codecs: the controller's catalogue holds their measured Kodak tables, an intent may ask
for them, and a node opens them itself (nothing to disseminate)."""
import json

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

    env = AgentEnv(tmp_path)
    try:
        imgs = crop_images(tmp_path / "imgs", n=2)
        ctl = env.controller()
        node = env.node("n1")
        wait_until(lambda: "n1" in ctl.nodes, 10, "node n1 to announce itself")
        r = ctl.submit(M.Intent("unknown", images=[str(imgs)], models=["jpeg2000-ldpc", "nope"]))
        assert not r.accepted and "unknown model(s) nope" in r.reason and "jpeg2000-ldpc" in r.reason
        r = ctl.submit(M.Intent("dig", images=[str(imgs)], models=["jpeg2000-ldpc"], qos=M.QosTarget(psnr_db=20)))
        assert r.accepted, r.reason
        wait_until(lambda: ctl.links["dig.L0"].status == "done", 120, "the digital link to finish")
        ctl.durable.flush()
        wait_until(lambda: len(read_csv_rows(ctl.out / "qos.csv")) == 2, 30, "two QoS rows")
        rows = read_csv_rows(ctl.out / "qos.csv")
        assert {r["model"] for r in rows} == {"jpeg2000-ldpc"}
        codec = open_codec("jpeg2000-ldpc")
        for r in rows:      # every block decoded: the image is the codestream sent, as on an ideal channel
            img = load_rgb(imgs / r["image"])
            enc = codec.encode(img, float(r["snr_tx_db"]), codec.rate(float(r["cbr"])))
            ideal = codec.decode(enc.symbols, 40.0, *img.shape[:2], mode=enc.mode)
            assert r["frames_decoded"] == r["frames_sent"] and abs(float(r["psnr_db"]) - psnr(img, ideal)) < 0.01
        assert not node.receiver.transfers                 # nothing was fetched from the controller
        decisions = [json.loads(x) for x in (ctl.out / "decisions.jsonl").read_text().splitlines()]
        assert [d["model"] for d in decisions if d["action"] == "assign"] == ["jpeg2000-ldpc"]
    finally:
        env.close()
