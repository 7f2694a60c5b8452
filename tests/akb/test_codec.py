"""AKB codec: v1 initialisation, entropy model, ONNX contract, eval and loopback integration."""
import numpy as np
import pytest
import torch

from tests.helpers.akb import tiny_akb, tiny_policy
from testbed.akb import placement as pl
from tests.helpers import run_cli, smooth_image, write_png


@pytest.fixture(scope="module")
def akb():
    return tiny_akb()


@pytest.fixture(scope="module")
def akb_dir(akb, tmp_path_factory):
    from testbed.akb.export import export_akb
    from testbed.akb.channel_kb.scheduler import export_policy

    model, emb, kb = akb
    d = tmp_path_factory.mktemp("akb-model")
    ppo, _ = tiny_policy(model, emb, kb, [smooth_image(256, 256, seed=s) for s in range(3)])
    export_policy(ppo.policy, d / "policy.onnx", {"testbed.graph": "channel-kb-policy"})
    export_akb(model, emb, kb, d, name="tiny-akb", training={"data": "random init (test)"},
               policy_file=d / "policy.onnx")
    return d


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("akb-images")
    write_png(d / "a.png", smooth_image(96, 160, seed=1))
    write_png(d / "b.png", smooth_image(130, 70, seed=2))   # not a multiple of 16 or of a block
    return d


def test_from_v1_reproduces_v1_at_uniform_rate(tiny_model):
    from testbed.akb import ratemap as rm
    from testbed.akb.model import from_v1
    from testbed.codec.model import JSCC, CodecConfig

    torch.manual_seed(1)
    v1 = JSCC(CodecConfig(widths=(8, 8, 12, 16), max_symbols=48))
    with torch.no_grad():
        v1.encoder.out.weight.normal_(0, 0.05)
        v1.decoder.convs[-1].weight.normal_(0, 0.05)
    v1.eval()
    m = from_v1(v1).eval()
    x = torch.rand(1, 3, 64, 96)
    snr = torch.tensor([7.0])
    with torch.no_grad():
        z1 = v1.encode(x, snr, torch.tensor([48]))
        feats, bits, _ = m.analyse(x, snr, torch.tensor([48.0]), torch.zeros(1, m.cfg.kb_dim))
        lv = torch.full((1, 1, 2), rm.RATE_SET.index(48))
        z2 = m.encoder.symbols(feats, pl.location_rates(lv, 4, 6))
        assert torch.allclose(z1, z2[:, :48], atol=1e-6)
        y1 = v1.decode(z1, snr, torch.tensor([48]))
        y2 = m.transmit(feats, lv, snr, torch.zeros(1, m.cfg.kb_dim), lambda z, s: (z, s))
    assert torch.allclose(y1, y2, atol=1e-5)
    assert bits.shape == (1, 4, 6) and torch.all(bits >= 0)


def test_symbols_have_unit_power_and_respect_the_rate_map(akb):
    from testbed.akb import ratemap as rm

    model = akb[0]
    x = torch.rand(1, 3, 128, 128)
    lv = torch.tensor([[[0, 7], [3, 5]]])
    with torch.no_grad():
        feats, _, _ = model.analyse(x, torch.tensor([5.0]), torch.tensor([30.0]), torch.zeros(1, 16))
        rates = pl.location_rates(lv, 8, 8)
        zc = model.encoder.symbols(feats, rates)
    mask = pl.symbol_mask(rates)
    sent = zc[mask.bool()]
    assert torch.all(zc[~mask.bool()] == 0)
    assert float(sent.pow(2).sum(-1).mean()) == pytest.approx(1.0, rel=1e-4)


def test_entropy_model_learns():
    from testbed.akb.entropy import HyperPrior

    torch.manual_seed(0)
    hp = HyperPrior(8, hyper_channels=8, z_channels=4)
    y = torch.randn(4, 8, 8, 8) * torch.linspace(0.1, 3, 8)[None, :, None, None]
    hp.calibrate(y)
    opt = torch.optim.Adam(hp.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        bits, zb = hp(y, noise=True)
        loss = (bits.sum() + zb.sum()) / y.numel()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first
    # the channels with more spread carry more information
    with torch.no_grad():
        b_lo, _ = hp(y[:, :4].repeat(1, 2, 1, 1) * 0 + y[:, :1].repeat(1, 8, 1, 1) * 0.1, noise=False)
        b_hi, _ = hp(y, noise=False)
    assert b_hi.mean() > b_lo.mean()


def test_onnx_graphs_match_pytorch(akb, akb_dir):
    import onnx

    from testbed.akb.card import GRAPHS
    from testbed.akb.export import check_against_torch
    from testbed.zoo import load_card

    model, emb, kb = akb
    r = check_against_torch(model, emb, kb, akb_dir, height=72, width=104)
    assert r["embedding_max_rel_err"] < 1e-3
    assert r["features_max_abs_err"] < 1e-4
    assert r["entropy_max_rel_err"] < 1e-3
    assert r["symbols_shape"][1] == r["expected_symbols"]
    assert r["symbols_max_abs_err"] < 1e-4
    assert r["image_max_abs_err"] <= 1 and r["image_mean_abs_err"] < 0.01
    card = load_card(akb_dir / "model_card.yaml")
    assert set(GRAPHS) <= set(card.graphs) and "policy" in card.graphs
    for role, g in card.graphs.items():
        m = onnx.load(str(akb_dir / g["file"]))
        onnx.checker.check_model(m)
        meta = {p.key: p.value for p in m.metadata_props}
        if role != "policy":
            assert meta["testbed.kb_sha256"] == kb.sha256
            assert meta["testbed.opset"] == str(card.opset)
            assert "testbed.cbr_range" in meta and "testbed.snr_range_db" in meta
    # run-time parameters are graph inputs, not constants
    names = [i.name for i in onnx.load(str(akb_dir / "encoder_analysis.onnx")).graph.input]
    assert names == ["image", "snr_db", "target_cbr", "kb_vector"]


def test_runtime_roundtrip_ablations_and_errors(akb_dir):
    from testbed.akb import ratemap as rm
    from testbed.akb.runtime import NO_KB, AkbCodec, AkbSide
    from testbed.codec.runtime import ModelError

    c = AkbCodec(akb_dir)
    img = smooth_image(96, 160, seed=3)
    tx, side = c.encode_side(img, 10.0, 0.036)
    assert tx.size == rm.n_symbols(side.levels, 6, 10)
    assert c.cbr(side, 96, 160) <= 0.036
    assert abs(np.mean(np.abs(tx) ** 2) - 1) < 1e-3
    assert 0 <= side.kb_index < 4 and side.offsets is not None
    rec = c.decode(tx, 10.0, 96, 160, side)
    assert rec.shape == (96, 160, 3) and rec.dtype == np.uint8
    _, s2 = c.encode_side(img, 10.0, 0.036, ckb=False, skb=False)
    assert s2.kb_index == NO_KB and s2.offsets is None
    with pytest.raises(ModelError, match="outside this model's range"):
        c.check_cbr(0.2)
    with pytest.raises(ModelError, match="KB index"):
        c.decode(tx, 10.0, 96, 160, AkbSide(side.levels, 200))
    with pytest.raises(ValueError, match="blocks"):
        c.decode(tx, 10.0, 96, 160, AkbSide(np.zeros((1, 1), np.int64), 0))


def test_tampered_kb_is_detected(akb_dir, tmp_path):
    import shutil

    from testbed.akb.runtime import AkbCodec
    from testbed.akb.source_kb.kb import KnowledgeBase
    from testbed.codec.runtime import ModelError

    d = tmp_path / "m"
    shutil.copytree(akb_dir, d)
    kb = KnowledgeBase.load(d / "kb.npz")
    kb.vectors = kb.vectors + 1
    kb.save(d / "kb.npz")
    with pytest.raises(ModelError, match="KB sha256"):
        AkbCodec(d)


@pytest.mark.slow
def test_eval_akb_with_ablations_and_figures(akb_dir, images_dir, tmp_path):
    import json

    base = ["eval", "--model", akb_dir, "--data", images_dir, "--snr-db", "0,20", "--cbr", "0.036",
            "--no-separation", "--json"]
    full = json.loads(run_cli(*base, "--out", tmp_path / "full", "--figures").stdout)
    abl = json.loads(run_cli(*base, "--out", tmp_path / "abl", "--no-ckb", "--no-skb").stdout)
    assert [r["snr_db"] for r in full["results"]] == [0, 20]
    assert all(r["n_images"] == 2 for r in full["results"] + abl["results"])
    figs = sorted(p.name for p in (tmp_path / "full" / "figures").glob("*.png"))
    assert figs == ["a_snr0dB.png", "a_snr20dB.png"]
    maps = np.load(tmp_path / "full" / "figures" / "a_snr20dB_maps.npz")
    assert maps["levels"].shape == (2, 3) and maps["entropy_map"].shape == (6, 10)
    import csv

    rows = list(csv.DictReader(open(tmp_path / "abl" / "results.csv")))
    assert {r["ckb"] for r in rows} == {"0"} and {r["kb_index"] for r in rows} == {"255"}
    assert all(float(r["cbr"]) <= 0.036 for r in rows)
    # ablation flags need an AKB codec
    p = run_cli("eval", "--model", "jscc-v1", "--data", images_dir, "--no-ckb", check=False)
    assert p.returncode == 2 and "AKB codec" in p.stderr


def test_loopback_akb_matches_eval(akb_dir, images_dir, tmp_path):
    """Rate map and KB index go over the air in the frame header; PSNR matches eval."""
    import json

    lb = json.loads(run_cli("loopback", "--model", akb_dir, "--images", images_dir, "--snr-db", "20",
                            "--cbr", "0.036", "--out", tmp_path / "lb", "--json").stdout)
    ev = json.loads(run_cli("eval", "--model", akb_dir, "--data", images_dir, "--snr-db", "20", "--cbr", "0.036",
                            "--no-separation", "--out", tmp_path / "ev", "--json").stdout)
    r = lb["results"][0]
    assert r["frames_decoded"] == r["frames_sent"] and r["n_images"] == 2
    assert abs(r["psnr_db"] - ev["results"][0]["psnr_db"]) < 0.5
    import csv

    rows = list(csv.DictReader(open(tmp_path / "lb" / "results.csv")))
    assert all(0 <= int(x["kb_index"]) < 4 for x in rows)


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d["graphs"].pop("decoder"), "graphs.decoder"),
    (lambda d: d["graphs"].update(mystery={"file": "x.onnx", "sha256": "0"}), "graphs.mystery"),
    (lambda d: d.update(cbr_range=[0.07, 0.02]), "cbr_range"),
    (lambda d: d.update(rate_set=[8, 4]), "rate_set"),
    (lambda d: d.pop("kb"), "kb"),
    (lambda d: d.update(bogus=1), "bogus"),
    (lambda d: d.update(cbr_range=["0.02", 0.07]), "cbr_range"),
    (lambda d: d.update(rate_set=[4, True]), "rate_set"),
    (lambda d: d.update(block_pixels="64"), "block_pixels"),
])
def test_akb_card_errors_name_key(akb_dir, tmp_path, mutate, needle):
    from tests.helpers import assert_card_refused

    assert_card_refused(akb_dir / "model_card.yaml", tmp_path, mutate, needle)


def test_shipped_akb_model_contract():
    """models/akb-v1: card matches graphs and KB, graphs pass the checker, policy and KB present."""
    import onnx

    from testbed.akb.export import model_sha256
    from testbed.akb.runtime import AkbCodec
    from testbed.codec.export import sha256_file
    from testbed.core.paths import shipped_models

    d = shipped_models()["akb-v1"]
    c = AkbCodec(d)   # verifies every graph's sha256 and the KB hash against the card
    assert c.has_policy and len(c.kb) >= 2
    assert c.card.sha256 == model_sha256(d, c.card.graphs)
    for g in c.card.graphs.values():
        assert sha256_file(d / g["file"]) == g["sha256"]
        onnx.checker.check_model(onnx.load(str(d / g["file"])), full_check=True)
    commands = [st["command"] for st in c.card.training["lineage"]]
    assert commands[0].startswith("testbed train codec") and commands[-1].startswith("testbed train scheduler")
    assert any(cmd.startswith("testbed train akb") for cmd in commands)
    img = smooth_image(64, 96, seed=4)
    tx, side = c.encode_side(img, 10.0, 0.036)
    assert c.cbr(side, 64, 96) <= 0.036 and c.decode(tx, 10.0, 64, 96, side).shape == (64, 96, 3)


def test_fixed_rate_runtime_refuses_an_akb_model(akb_dir):
    from testbed.codec.runtime import ModelError, OnnxCodec

    with pytest.raises(ModelError, match="not a fixed-rate"):
        OnnxCodec(akb_dir)


def test_encoder_block_keeps_kb_switches_across_set_codec(akb_dir):
    """``set_codec`` without ``ckb``/``skb``/``allocation`` keeps the switches the block was built with."""
    from testbed.akb.runtime import NO_KB, AkbCodec
    from testbed.gr.jscc_encoder import jscc_encoder
    from testbed.phy.config import OfdmConfig

    seen = []

    class Spy(AkbCodec):
        def encode_side(self, img, snr_db, cbr, ckb=True, skb=True, prev_offsets=None, allocation="entropy"):
            tx, side = super().encode_side(img, snr_db, cbr, ckb=ckb, skb=skb, prev_offsets=prev_offsets,
                                      allocation=allocation)
            seen.append((ckb, skb, side.kb_index, allocation))
            return tx, side

    c = Spy(akb_dir)
    enc = jscc_encoder(c, OfdmConfig(), cbr=0.036, ckb=False, skb=False)
    img = smooth_image(64, 96, seed=1)
    enc.set_codec(c, cbr=0.05)
    enc.send(img)
    enc.set_codec(c, cbr=0.05, skb=True)
    enc.send(img)
    enc.set_codec(c, allocation="measured")
    enc.send(img)
    enc.set_codec(c, cbr=0.05)
    enc.send(img)
    assert seen[0] == (False, False, NO_KB, "entropy")
    assert seen[1][:2] == (False, True) and seen[1][2] != NO_KB and seen[1][3] == "entropy"
    assert seen[2][3] == "measured" and seen[3][3] == "measured"
    assert enc.cbr == 0.05
    with pytest.raises(ValueError, match="replaces the channel-KB policy"):
        enc.set_codec(c, cbr=0.03, ckb=True)
    assert (enc.ckb, enc.allocation, enc.cbr) == (False, "measured", 0.05)   # unchanged


def test_eval_policy_sees_previous_offsets_per_snr_and_weighted_symbol_count(akb_dir, tmp_path, monkeypatch):
    """Like the flowgraph's encoder, eval gives the policy the offsets it chose for the previous
    image of the same SNR; symbols per location weight edge blocks by the locations they hold."""
    from testbed.akb import ratemap as rm
    from testbed.akb.runtime import AkbCodec
    from testbed.core.wire import SideInfo
    from testbed.experiments.evaluate import EvalOptions, run_eval

    calls = []

    class Spy(AkbCodec):
        def encode_side(self, img, snr_db, cbr, ckb=True, skb=True, prev_offsets=None, **kw):
            tx, side = super().encode_side(img, snr_db, cbr, ckb=ckb, skb=skb, prev_offsets=prev_offsets, **kw)
            calls.append((snr_db, None if prev_offsets is None else prev_offsets.copy(), side.offsets.copy()))
            return tx, side

    spy = Spy(akb_dir)
    monkeypatch.setattr("testbed.zoo.open_codec", lambda *a, **k: spy)
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(2):
        write_png(data / f"{i}.png", smooth_image(64, 96, seed=i))
    run_eval(EvalOptions(model=str(akb_dir), data=str(data), snrs_db=[0.0, 20.0], cbr=0.036, separation=False,
                         out=str(tmp_path / "run")))
    (s0, p0, o0), (s1, p1, o1), (s2, p2, o2), (s3, p3, o3) = calls
    assert (s0, s1, s2, s3) == (0.0, 20.0, 0.0, 20.0)
    assert p0 is None and p1 is None
    assert np.array_equal(p2, o0) and np.array_equal(p3, o1)
    levels = np.array([[0, 7]] * 3)          # a 130x70 image: 9x5 locations in 3x2 blocks
    row = spy.received_fields(0, SideInfo(kb_index=0, levels=levels), 130, 70)
    h, w = rm.location_grid(130, 70)
    assert row["symbols_per_location"] == round(rm.n_symbols(levels, h, w) / (h * w), 3)
    assert row["symbols_per_location"] < np.asarray(rm.RATE_SET)[levels].mean()


def test_measured_allocation_runtime_and_errors(akb_dir):
    """``allocation="measured"``: a map within the budget chosen from the measured block distortion
    (the Lagrangian optimum of exactly what block_distortion returns), exclusive with the policy."""
    from testbed.akb import allocation as al
    from testbed.akb import ratemap as rm
    from testbed.akb.runtime import AkbCodec

    c = AkbCodec(akb_dir)
    img = smooth_image(130, 200, seed=5)      # partial blocks at the edges
    tx, side = c.encode_side(img, 10.0, 0.036, ckb=False, allocation="measured")
    assert c.cbr(side, 130, 200) <= 0.036 and side.offsets is None and side.allocation == "measured"
    assert tx.size == rm.n_symbols(side.levels, *rm.location_grid(130, 200))
    assert c.decode(tx, 10.0, 130, 200, side).shape == (130, 200, 3)
    # the map is the optimum of the transmitter's own measurement
    x = np.ascontiguousarray(img)[None]
    kbv = c.kb_vector(side.kb_index)
    feats = c.sess["encoder_analysis"].run(None, {"image": x, "snr_db": np.array([10.0], np.float32),
                                                  "target_cbr": np.array([0.036], np.float32), "kb_vector": kbv})[0]
    sse = c.block_distortion(img, feats, kbv, 10.0)
    assert sse.shape == (*rm.block_grid(130, 200), len(rm.RATE_SET)) and np.all(sse >= 0)
    assert np.array_equal(al.optimal_levels(sse, 0.036, 130, 200), side.levels)
    with pytest.raises(ValueError, match="replaces the channel-KB policy"):
        c.encode_side(img, 10.0, 0.036, allocation="measured")
    with pytest.raises(ValueError, match="'oracle' is not one of entropy, measured"):
        c.encode_side(img, 10.0, 0.036, ckb=False, allocation="oracle")


@pytest.mark.slow
def test_measured_allocation_beats_the_entropy_map_on_the_shipped_model():
    """On a shipped Kodak sample at 10 dB, CBR 0.021, the measured map beats the entropy-preset
    map by more than 0.3 dB (fresh noise, not the measurement's draw; BENCHMARKS.md has the
    24-image figures)."""
    from testbed.core import images as imgio
    from testbed.akb.runtime import AkbCodec
    from testbed.core.symbol_channel import awgn_np
    from testbed.core.paths import samples_dir, shipped_models

    c = AkbCodec(shipped_models()["akb-v1"], threads=2)
    img = imgio.load_rgb(samples_dir() / "kodim23.png")
    h, w = img.shape[:2]
    psnr = {}
    for mode in ("entropy", "measured"):
        tx, side = c.encode_side(img, 10.0, 0.021, ckb=False, allocation=mode)
        assert c.cbr(side, h, w) <= 0.021
        mse = np.mean([np.mean((c.decode(awgn_np(tx, 10.0, np.random.default_rng(s)), 10.0, h, w, side)
                                .astype(np.float64) - img) ** 2) for s in (11, 12)])
        psnr[mode] = 10 * np.log10(255.0 ** 2 / mse)
    assert psnr["measured"] > psnr["entropy"] + 0.3, psnr


def test_allocation_flag_in_eval_and_loopback(akb_dir, images_dir, tmp_path):
    import csv
    import json

    ev = json.loads(run_cli("eval", "--model", akb_dir, "--data", images_dir, "--snr-db", "10", "--cbr", "0.036",
                            "--no-separation", "--allocation", "measured", "--out", tmp_path / "ev", "--json").stdout)
    lb = json.loads(run_cli("loopback", "--model", akb_dir, "--images", images_dir, "--snr-db", "10",
                            "--cbr", "0.036", "--allocation", "measured", "--no-ms-ssim", "--out", tmp_path / "lb",
                            "--json").stdout)
    assert abs(lb["results"][0]["psnr_db"] - ev["results"][0]["psnr_db"]) < 0.5
    for run in ("ev", "lb"):
        rows = list(csv.DictReader(open(tmp_path / run / "results.csv")))
        assert {r["allocation"] for r in rows} == {"measured"} and {r["ckb"] for r in rows} == {"0"}
        assert json.loads((tmp_path / run / "summary.json").read_text())["allocation"] == "measured"
    p = run_cli("eval", "--model", "jscc-v1", "--data", images_dir, "--allocation", "measured", check=False)
    assert p.returncode == 2 and "--allocation" in p.stderr and "AKB codec" in p.stderr
    p = run_cli("eval", "--model", akb_dir, "--data", images_dir, "--allocation", "oracle", check=False)
    assert p.returncode == 2 and "oracle" in p.stderr
    # every command names the AKB-only options it was given
    p = run_cli("loopback", "--model", "jscc-v1", "--images", images_dir, "--no-skb", "--allocation", "measured",
                "--out", tmp_path / "v1", check=False)
    assert p.returncode == 2 and "--no-skb --allocation measured: need an AKB codec" in p.stderr


def _scheduler_run(d, akb_ck, timesteps=16):
    import json

    d.mkdir(parents=True, exist_ok=True)
    (d / "train_config.json").write_text(json.dumps(
        {"command": f"testbed train scheduler --akb {akb_ck} --data d --timesteps {timesteps}", "akb": str(akb_ck),
         "out": str(d)}))
    (d / "final_metrics.json").write_text(json.dumps({"timesteps": timesteps, "evaluation": [
        {"snr_db": 0.0, "reward": 0.01234, "psnr_db": 20.0, "psnr_gain_db": 0.01}]}))
    return d


def test_akb_training_record_inherits_the_codec_v1_lineage(tiny_model, tmp_path):
    """The AKB card's lineage: the stages of the codec v1 model of --init-from, the AKB run, the
    scheduler run; the commands are in the lineage only."""
    import json

    from testbed.akb.export import scheduler_record, training_record
    from testbed.codec.export import export

    parent = [{"stage": 1, "command": "testbed train codec --data a --steps 3", "steps": 3, "run": "runs/one"}]
    export(tiny_model, tmp_path / "v1", name="v1", operating_points=[2, 6], training={"data": "a", "lineage": parent})
    run = tmp_path / "akb"
    run.mkdir()
    (run / "final_metrics.json").write_text(json.dumps({"step": 6, "best_val": 21.234}))
    command = f"testbed train akb --data d --val v --init-from {tmp_path / 'v1'} --steps 4 --entropy-steps 2"
    ck = {"step": 5, "ema": {"w": 0}, "train_config": {
        "command": command, "data": "d", "val": "v", "init_from": str(tmp_path / "v1"), "out": str(run),
        "entropy_steps": 2, "batch": 1, "crop": 64, "seed": 0}}
    sched = _scheduler_run(tmp_path / "sched", run / "best.pt")
    training = training_record(run / "best.pt", ck, scheduler_record(sched))
    assert training["lineage"] == parent + [
        {"stage": "akb 1", "command": command, "steps": 6, "init_from": str(tmp_path / "v1"), "run": str(run),
         "shipped": {"checkpoint": "best.pt", "step": 5, "weights": "ema"},
         "result": {"data": "v", "best_val_psnr_db": 21.23}},
        {"stage": "scheduler", "command": f"testbed train scheduler --akb {run / 'best.pt'} --data d --timesteps 16",
         "steps": 16, "codec": str(run / "best.pt"), "run": str(sched), "result": {"reward_over_fixed": {"0": 0.012}}}]
    assert training["scheduler"]["timesteps"] == 16 and "command" not in training["scheduler"]
    assert training["codec"]["steps"] == 5 and "command" not in training["codec"]
    (sched / "final_metrics.json").unlink()
    with pytest.raises(ValueError, match="final_metrics.json"):
        scheduler_record(sched)


def test_attach_replaces_the_scheduler_stage_of_the_lineage(akb_dir, tmp_path):
    import shutil

    import yaml

    from testbed.akb.export import attach_policy, scheduler_record
    from testbed.zoo import load_card

    d = tmp_path / "model"
    shutil.copytree(akb_dir, d)
    card = yaml.safe_load((d / "model_card.yaml").read_text())
    card["training"]["lineage"] = [
        {"stage": "akb 1", "command": "testbed train akb --data d", "steps": 6},
        {"stage": "scheduler", "command": "testbed train scheduler --akb old.pt", "steps": 8}]
    (d / "model_card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    sha = load_card(d / "model_card.yaml").sha256
    attach_policy(d, d / "policy.onnx", scheduler_record(_scheduler_run(tmp_path / "sched", "new.pt", 24)))
    after = load_card(d / "model_card.yaml")
    assert after.sha256 == sha
    assert [(st["stage"], st["steps"]) for st in after.training["lineage"]] == [("akb 1", 6), ("scheduler", 24)]
    assert after.training["lineage"][-1]["codec"] == "new.pt" and after.training["scheduler"]["timesteps"] == 24
