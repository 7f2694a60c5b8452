"""ONNX contract: separate graphs, SNR/k inputs, dynamic size, metadata, onnxruntime == PyTorch."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from testbed.codec.export import DECODER_FILE, ENCODER_FILE, check_against_torch, export, model_sha256, sha256_file
from testbed.zoo import load_card

REQUIRED_META = ["testbed.cbr", "testbed.snr_range_db", "testbed.training_data", "testbed.git_commit",
                 "testbed.opset", "testbed.input_layout", "testbed.stride", "testbed.graph"]

# Stated tolerance: symbols within 1e-4 (float32 reordering), decoded pixels within 1 level of 255
# (a value on a rounding boundary may round either way), mean pixel error below 0.01 levels.
SYM_TOL, PIX_TOL, PIX_MEAN_TOL = 1e-4, 1, 0.01


def _meta(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.mark.parametrize("graph", [ENCODER_FILE, DECODER_FILE])
def test_checker_and_metadata(tiny_model_dir, graph):
    m = onnx.load(str(tiny_model_dir / graph))
    onnx.checker.check_model(m, full_check=True)
    meta = _meta(tiny_model_dir / graph)
    for key in REQUIRED_META:
        assert key in meta, key
    assert meta["testbed.snr_range_db"] == "0,20"
    assert int(meta["testbed.opset"]) == m.opset_import[0].version


def test_snr_and_rate_are_graph_inputs(tiny_model_dir):
    enc = ort.InferenceSession(str(tiny_model_dir / ENCODER_FILE))
    dec = ort.InferenceSession(str(tiny_model_dir / DECODER_FILE))
    assert [i.name for i in enc.get_inputs()] == ["image", "snr_db", "symbols_per_location"]
    assert [i.name for i in dec.get_inputs()] == ["symbols", "snr_db", "image_size"]
    img = np.random.default_rng(0).integers(0, 256, (1, 40, 56, 3), dtype=np.uint8)
    a = enc.run(None, {"image": img, "snr_db": np.array([0.0], np.float32), "symbols_per_location": np.array([6])})[0]
    b = enc.run(None, {"image": img, "snr_db": np.array([20.0], np.float32), "symbols_per_location": np.array([6])})[0]
    assert not np.allclose(a, b)


@pytest.mark.parametrize("h,w,k", [(72, 88, 6), (33, 17, 2), (5, 7, 1), (128, 64, 4)])
def test_onnxruntime_matches_pytorch(tiny_model, tiny_model_dir, h, w, k):
    err = check_against_torch(tiny_model, tiny_model_dir, h, w, k=k, snr_db=3.0)
    gh, gw = -(-h // 16), -(-w // 16)
    assert err["symbols_shape"] == [1, k * gh * gw, 2]
    assert err["image_shape"] == [1, h, w, 3]
    assert err["symbols_max_abs_err"] < SYM_TOL
    assert err["image_max_abs_err"] <= PIX_TOL
    assert err["image_mean_abs_err"] < PIX_MEAN_TOL


def test_card_hashes_match_graphs(tiny_model_dir):
    card = load_card(tiny_model_dir / "model_card.yaml")
    assert card.encoder["sha256"] == sha256_file(tiny_model_dir / ENCODER_FILE)
    assert card.decoder["sha256"] == sha256_file(tiny_model_dir / DECODER_FILE)
    assert card.sha256 == model_sha256(tiny_model_dir / ENCODER_FILE, tiny_model_dir / DECODER_FILE)


def test_shipped_model_contract(shipped_model):
    card = load_card(shipped_model / "model_card.yaml")
    assert card.sha256 == model_sha256(shipped_model / ENCODER_FILE, shipped_model / DECODER_FILE)
    cbrs = sorted(card.cbrs())
    assert cbrs[0] == pytest.approx(1 / 48, rel=1e-3) and cbrs[-1] == pytest.approx(1 / 16, rel=1e-3)
    for g in (ENCODER_FILE, DECODER_FILE):
        onnx.checker.check_model(onnx.load(str(shipped_model / g)), full_check=True)
        meta = _meta(shipped_model / g)
        for key in REQUIRED_META:
            assert key in meta, f"{g}: {key}"
    lineage = card.training["lineage"]   # the training stages, oldest first, each with its command
    assert [st["stage"] for st in lineage] == list(range(1, len(lineage) + 1))
    assert all(st["command"].startswith("testbed train codec") for st in lineage)
    # the card records the measured Kodak PSNR for both operating points
    kodak = [k for k in card.evaluation if k.startswith("kodak/awgn/")]
    assert len(kodak) >= 2, card.evaluation.keys()


@pytest.mark.parametrize("model", ["jscc-v1", "akb-v1"])
def test_flowgraph_codecs_run_without_spinning_pools(model):
    """Codecs opened for a flowgraph must not busy-wait between operators and run on one thread
    unless told otherwise (they share the cores with the PHY's threads); standalone ones keep
    onnxruntime's default."""
    from testbed.akb.runtime import AkbCodec
    from testbed.zoo import open_codec

    key = "session.intra_op.allow_spinning"

    def sessions(codec):
        return list(codec.sess.values()) if isinstance(codec, AkbCodec) else [codec.enc, codec.dec]

    for s in sessions(open_codec(model, spinning=False)):
        assert s.get_session_options().get_session_config_entry(key) == "0"
        assert s.get_session_options().intra_op_num_threads == 1   # the flowgraph's blocks run in parallel
    for s in sessions(open_codec(model, threads=2, spinning=False)):
        assert s.get_session_options().intra_op_num_threads == 2
    for s in sessions(open_codec(model)):
        try:
            value = s.get_session_options().get_session_config_entry(key)
        except RuntimeError:   # not set: onnxruntime's default (spinning)
            value = None
        assert value != "0"


def test_export_refuses_operating_points_outside_the_model(tiny_model, tmp_path):
    from testbed.codec.export import export

    with pytest.raises(ValueError, match=r"1\.\.6"):
        export(tiny_model, tmp_path / "m", name="m", operating_points=[2, 9], training={})
    assert not (tmp_path / "m" / "model_card.yaml").exists()


def test_export_cli_names_a_wrong_checkpoint(tmp_path):
    import torch

    from tests.helpers import run_cli

    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    akb = tmp_path / "akb.pt"
    torch.save({"akb_config": {}, "step": 1}, akb)
    for path, needle in ((text, "not a training checkpoint"), (akb, "export-akb")):
        p = run_cli("export", path, "--out", tmp_path / "out", check=False)
        assert p.returncode == 2 and str(path) in p.stderr and needle in p.stderr, p.stderr


def test_only_a_codec_v1_model_rebuilds_as_pytorch():
    from testbed.codec.onnx_weights import load_from_onnx
    from testbed.core.paths import shipped_models

    with pytest.raises(ValueError, match="akb-jscc"):
        load_from_onnx(shipped_models()["akb-v1"])


def test_a_grown_model_exports_matches_pytorch_and_rebuilds(tiny_model, tmp_path):
    """Extra residual blocks (``--res-blocks``) go into the graphs, and the exported folder
    rebuilds as the same PyTorch model (``--init-from``)."""
    import torch

    from testbed.codec.model import grow
    from testbed.codec.onnx_weights import load_from_onnx

    torch.manual_seed(3)
    g = grow(tiny_model, 2, 3)
    with torch.no_grad():
        for p in g.parameters():   # distinct values (the exporter merges identical initializers)
            p.add_(torch.rand_like(p) * 0.01)
    g.eval()
    export(g, tmp_path / "g", name="grown", operating_points=[2, 6], training={"data": "test"})
    err = check_against_torch(g, tmp_path / "g", 40, 56, k=6, snr_db=5.0)
    assert err["symbols_max_abs_err"] < SYM_TOL and err["image_max_abs_err"] <= PIX_TOL
    back = load_from_onnx(tmp_path / "g")
    assert (back.cfg.enc_res_blocks, back.cfg.dec_res_blocks) == (2, 3)
    for (n, a), b in zip(g.state_dict().items(), back.state_dict().values()):
        assert torch.allclose(a, b), n


def _fake_run(tiny_model, run, command, init_from=None, step=5):
    """A finished `testbed train codec` run folder holding the tiny model as its best.pt."""
    import json

    import torch

    run.mkdir(parents=True, exist_ok=True)
    tc = {"command": command, "data": "train/", "val": "val/", "out": str(run), "init_from": init_from,
          "operating_points": [2, 6], "batch": 1, "crop": 32, "seed": 0}
    torch.save({"codec_config": tiny_model.cfg.to_dict(), "model": tiny_model.state_dict(), "ema": None,
                "step": step, "train_config": tc}, run / "best.pt")
    (run / "final_metrics.json").write_text(json.dumps({"step": step + 2, "val_images": 1, "validation": [
        {"snr_db": 10.0, "symbols_per_location": 6, "cbr": 0.03125, "val_psnr_db": 12.3456}]}))
    return run / "best.pt"


def test_export_records_the_training_command_as_a_lineage_stage(tiny_model, tmp_path):
    from tests.helpers import run_cli

    command = "testbed train codec --data train/ --val val/ --steps 7 --crop 32"
    ck = _fake_run(tiny_model, tmp_path / "run", command)
    run_cli("export", ck, "--out", tmp_path / "m")
    card = load_card(tmp_path / "m" / "model_card.yaml")
    assert "command" not in card.training
    assert card.training["lineage"] == [{
        "stage": 1, "command": command, "steps": 7, "run": str(tmp_path / "run"),
        "shipped": {"checkpoint": "best.pt", "step": 5, "weights": "raw"},
        "result": {"data": "val/", "images": 1, "psnr_db": {"cbr=0.0312": {"10": 12.35}}}}]
    # --training-command replaces the recorded command
    run_cli("export", ck, "--out", tmp_path / "m2", "--training-command", "testbed train codec --steps 7")
    assert load_card(tmp_path / "m2" / "model_card.yaml").training["lineage"][0]["command"] == \
        "testbed train codec --steps 7"


@pytest.mark.slow
def test_export_inherits_the_lineage_of_the_init_from_model(tiny_model, tmp_path):
    from tests.helpers import run_cli

    parent = [{"stage": 1, "command": "testbed train codec --data a --steps 3", "steps": 3, "run": "runs/one"},
              {"stage": 2, "command": "testbed train codec --data a --steps 4 --init-from runs/one/best.pt",
               "steps": 4, "init_from": "runs/one/best.pt", "run": "runs/two"}]
    export(tiny_model, tmp_path / "parent", name="parent", operating_points=[2, 6],
           training={"data": "a", "lineage": parent})
    command = f"testbed train codec --data train/ --init-from {tmp_path / 'parent'} --steps 7"
    ck = _fake_run(tiny_model, tmp_path / "run", command, init_from=str(tmp_path / "parent"))
    run_cli("export", ck, "--out", tmp_path / "child")
    lineage = load_card(tmp_path / "child" / "model_card.yaml").training["lineage"]
    assert lineage[:2] == parent
    assert lineage[2]["stage"] == 3 and lineage[2]["command"] == command
    assert lineage[2]["init_from"] == str(tmp_path / "parent")
    # exported again over the model it started from: this run's stage is replaced, not repeated
    run_cli("export", ck, "--out", tmp_path / "parent")
    assert load_card(tmp_path / "parent" / "model_card.yaml").training["lineage"] == parent + [lineage[2]]
    run_cli("export", ck, "--out", tmp_path / "parent")
    assert load_card(tmp_path / "parent" / "model_card.yaml").training["lineage"] == parent + [lineage[2]]


def test_lineage_follows_init_from_checkpoints_back(tiny_model, tmp_path):
    """--init-from a checkpoint: the stages of the runs that wrote it, oldest first."""
    import torch

    from testbed.codec.export import training_record

    first = _fake_run(tiny_model, tmp_path / "one", "testbed train codec --data train/ --steps 3", step=3)
    second = _fake_run(tiny_model, tmp_path / "two", f"testbed train codec --data train/ --init-from {first}",
                       init_from=str(first), step=4)
    ck = torch.load(second, weights_only=False)
    lineage = training_record(second, ck)["lineage"]
    assert [(st["stage"], st["command"], st["steps"], st.get("init_from")) for st in lineage] == [
        (1, "testbed train codec --data train/ --steps 3", 5, None),
        (2, f"testbed train codec --data train/ --init-from {first}", 6, str(first))]
    first.unlink()   # gone: the lineage starts at the run that still has its checkpoint
    assert [st["stage"] for st in training_record(second, ck)["lineage"]] == [1]
