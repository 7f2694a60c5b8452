"""`testbed train akb`: exact resume after a kill, best.pt and logs across a resume, refusing to
overwrite a run (tiny codec, a few steps)."""
from pathlib import Path

import pytest

from tests.helpers.akb import tiny_training_data, tiny_v1_checkpoint
from tests.helpers import assert_same, load_checkpoint
from testbed.core.runlog import read_csv_rows

import testbed.akb.train as at


class _Killed(Exception):
    """Stands in for the training process being killed."""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """(training images, validation images, a tiny codec v1 checkpoint)."""
    root = tmp_path_factory.mktemp("akb-inputs")
    data, val = tiny_training_data(root)
    return data, val, tiny_v1_checkpoint(root / "v1.pt")


def _cfg(inputs, out, **kw):
    data, val, v1 = inputs
    base = dict(data=str(data), val=str(val), out=str(out), init_from=str(v1), crop=64, batch=1, entropy_steps=2,
                steps=4, kb_crops=40, kb_entries=4, ckpt_every=2, val_every=1, val_images=1, threads=1)
    return at.AkbTrainConfig(**{**base, **kw})


def _killed_and_resumed(cfg, step: int, before: bool) -> None:
    """Run ``cfg``, killed just before or just after checkpoint.pt is written at ``step``; then resume it."""
    real = at._save

    def save(path, state):
        is_ck = Path(path).name == "checkpoint.pt" and state["step"] == step
        if is_ck and before:
            raise _Killed
        real(path, state)
        if is_ck:
            raise _Killed

    with pytest.MonkeyPatch.context() as m:
        m.setattr(at, "_save", save)
        with pytest.raises(_Killed):
            at.train(cfg)
    at.train(cfg, resume=True)


@pytest.fixture(scope="module")
def killed_run(inputs, tmp_path_factory):
    """(uninterrupted run, run killed before its step-4 checkpoint, then resumed): the checkpoint at
    step 2 (end of the entropy phase) is the last one; validation rows of steps 3 and 4 and the
    train-log row of step 4 were written. The joint phase draws the hyperprior's training noise
    from the process-wide torch RNG."""
    root = tmp_path_factory.mktemp("killed-akb")
    at.train(_cfg(inputs, root / "a"))
    _killed_and_resumed(_cfg(inputs, root / "b"), step=4, before=True)
    return root / "a", root / "b"


@pytest.mark.slow
def test_akb_resume_after_a_kill_ends_with_the_uninterrupted_weights(killed_run):
    a, b = (load_checkpoint(d / "checkpoint.pt") for d in killed_run)
    assert a["step"] == b["step"] == 6
    for key in ("model", "ema", "optimizer", "np_rng", "py_rng", "torch_gen", "best_val"):
        assert_same(a[key], b[key], key)
    assert_same(a["global_rng"]["torch"], b["global_rng"]["torch"], "global torch RNG")
    ba, bb = (load_checkpoint(d / "best.pt") for d in killed_run)
    assert ba["step"] == bb["step"]
    assert_same(ba["ema"], bb["ema"], "best.pt ema")


@pytest.mark.slow
def test_akb_resume_drops_the_log_rows_written_after_the_checkpoint(killed_run):
    drop = {"elapsed_s"}
    for name, want in (("train_log.csv", [2, 4, 6]), ("val_log.csv", [3, 3, 4, 4, 5, 5, 6, 6])):
        ra, rb = (read_csv_rows(d / name) for d in killed_run)
        assert [int(r["step"]) for r in rb] == want, name      # no step twice
        assert [{k: v for k, v in r.items() if k not in drop} for r in rb] == \
               [{k: v for k, v in r.items() if k not in drop} for r in ra], name


def test_akb_best_pt_after_a_resume_is_the_uninterrupted_best(inputs, tmp_path, monkeypatch):
    """Validation at step 4 is the best (30 dB), at step 6 worse (29 dB). A run killed right after
    its step-4 checkpoint must keep step 4's best.pt when resumed, as the uninterrupted run does."""
    def scripted(calls):
        def validate(model, arrays, kb_fn, snr_db, cbr, *a, **k):   # two CBRs per validation
            calls.append(1)
            return (30.0 if len(calls) <= 2 else 29.0), cbr
        return validate

    kw = dict(val_every=2)
    monkeypatch.setattr(at, "validate", scripted([]))
    at.train(_cfg(inputs, tmp_path / "a", **kw))
    monkeypatch.setattr(at, "validate", scripted([]))
    _killed_and_resumed(_cfg(inputs, tmp_path / "b", **kw), step=4, before=False)
    a, b = load_checkpoint(tmp_path / "a" / "best.pt"), load_checkpoint(tmp_path / "b" / "best.pt")
    assert (a["step"], a["best_val"]) == (4, 30.0)
    assert (b["step"], b["best_val"]) == (4, 30.0)
    assert_same(a["model"], b["model"], "best.pt model")
    assert_same(a["ema"], b["ema"], "best.pt ema")


def test_akb_new_run_refuses_a_folder_holding_a_run_unless_forced(inputs, tmp_path):
    from testbed.core.trainargs import RunExistsError

    out = tmp_path / "run"
    out.mkdir()
    old = {"checkpoint.pt": b"old checkpoint", "best.pt": b"old best", "train_log.csv": b"step\n1\n"}
    for n, data in old.items():
        (out / n).write_bytes(data)
    with pytest.raises(RunExistsError) as e:
        at.train(_cfg(inputs, out, val=None))
    assert str(out) in str(e.value) and "--resume" in str(e.value) and "--force" in str(e.value)
    assert {n: (out / n).read_bytes() for n in old} == old
    at.train(_cfg(inputs, out, val=None, entropy_steps=1, steps=1, force=True))
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2
    assert not (out / "best.pt").exists()          # the old run's best model is not left behind
    assert [r["step"] for r in read_csv_rows(out / "train_log.csv")] == ["2"]


def test_akb_validates_the_final_step(inputs, tmp_path):
    """A run shorter than --val-every (or not a multiple of it) still validates its last step and
    leaves a best.pt (it used to leave none: `export-akb OUT/best.pt` had nothing to export)."""
    out = tmp_path / "run"
    final = at.train(_cfg(inputs, out, entropy_steps=1, steps=1, val_every=500))
    assert final["step"] == 2 and final["best_val"] > 0
    assert {int(r["step"]) for r in read_csv_rows(out / "val_log.csv")} == {2}
    assert load_checkpoint(out / "best.pt")["step"] == 2


def test_akb_non_finite_gradient_is_skipped_not_applied(inputs, tmp_path, monkeypatch):
    import torch

    from tests.helpers import nan_gradient_at

    nan_gradient_at(monkeypatch, 1)
    out = tmp_path / "run"
    at.train(_cfg(inputs, out, val=None, entropy_steps=2, steps=1, ckpt_every=3))
    ck = load_checkpoint(out / "checkpoint.pt")
    for key in ("model", "ema"):
        assert all(torch.isfinite(v).all() for v in ck[key].values() if v.dtype.is_floating_point), key


def test_akb_bad_init_from_and_kb_options_are_named(inputs, tmp_path):
    import torch

    bad = tmp_path / "akb.pt"
    torch.save({"akb_config": {}, "model": {}}, bad)     # an AKB checkpoint, not a codec v1 one
    with pytest.raises(ValueError, match="--init-from .*akb.pt"):
        at.train(_cfg(inputs, tmp_path / "a", init_from=str(bad)))
    with pytest.raises(ValueError, match="--kb-crops 10"):      # too few crops for the embedder's PCA
        at.train(_cfg(inputs, tmp_path / "b", kb_crops=10))


def test_akb_cli_without_val_says_so_instead_of_a_score(inputs, tmp_path, capsys):
    """Without --val there is no best validation: JSON null, and the CLI line says so (it printed
    "best validation -1.00 dB")."""
    from testbed.cli.main import main

    data, _, v1 = inputs
    out = tmp_path / "run"
    assert main(["train", "akb", "--data", str(data), "--out", str(out), "--init-from", str(v1), "--crop", "64",
                 "--batch", "1", "--entropy-steps", "1", "--steps", "1", "--kb-crops", "40", "--kb-entries", "4",
                 "--threads", "1"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == "AKB codec: 2 steps, no validation (no --val)"
    import json
    assert json.loads((out / "final_metrics.json").read_text())["best_val"] is None


def test_akb_bf16_training_keeps_float32_weights_and_validates(inputs, tmp_path):
    import json
    import math

    import torch

    out = tmp_path / "bf16"
    final = at.train(_cfg(inputs, out, precision="bf16"))
    assert final["step"] == 6 and math.isfinite(final["best_val"])
    rows = read_csv_rows(out / "val_log.csv")
    assert rows and all(math.isfinite(float(r["val_psnr_db"])) for r in rows)
    assert json.loads((out / "train_config.json").read_text())["precision"] == "bf16"
    ck = load_checkpoint(out / "checkpoint.pt")
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all()
               for v in ck["model"].values() if v.is_floating_point())
    model, _, _ = at.load_akb(out / "checkpoint.pt")
    assert model.entropy.quant_step.dtype == torch.float32


def test_training_rate_maps_reach_every_level_with_p_random_and_wider_offsets():
    """--p-random draws i.i.d. levels (so the top rates, 64 and 96 symbols, get trained);
    --offset-spread 2 shifts preset maps by up to two levels."""
    import numpy as np

    from testbed.akb import ratemap as rm

    rng = np.random.default_rng(0)
    bits = np.linspace(5.0, 60.0, 16).reshape(4, 4)
    cfg = at.AkbTrainConfig(data="", p_random=1.0)
    maps = [at._draw_levels(bits, 0.0625, 256, 256, rng, cfg) for _ in range(20)]
    assert all(m.shape == (4, 4) and m.dtype == np.int64 for m in maps)
    assert set(np.concatenate([m.ravel() for m in maps]).tolist()) == set(range(len(rm.RATE_SET)))
    # preset maps with offsets only: the offsets handed to the budget solver span -spread..+spread
    seen = {}
    real = rm.preset_levels

    def spy(b, c, h, w, offsets=None, **kw):
        seen.setdefault(spread, set()).update(np.asarray(offsets).ravel().tolist())
        return real(b, c, h, w, offsets, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(at.rm, "preset_levels", spy)
        for spread in (1, 2):
            cfg = at.AkbTrainConfig(data="", p_uniform=0.0, p_offsets=1.0, offset_spread=spread)
            for _ in range(20):
                at._draw_levels(bits, 0.036, 256, 256, rng, cfg)
    assert seen == {1: {-1, 0, 1}, 2: {-2, -1, 0, 1, 2}}


@pytest.mark.parametrize("args,needle", [(["--p-random", "1.5"], "--p-random"), (["--p-uniform=-0.1"], "--p-uniform")])
def test_akb_probabilities_outside_0_1_are_refused(args, needle):
    from testbed.cli.main import build_parser

    a = build_parser().parse_args(["train", "akb", "--data", "d", *args])
    with pytest.raises(ValueError, match=needle):
        at.config_from_args(a)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "akb", "--data", "d", "--offset-spread", "4"])
