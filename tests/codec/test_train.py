import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import assert_same, load_checkpoint, shift_logged_elapsed, smooth_image, write_png
from testbed.codec.train import TrainConfig, load_model, train
from testbed.core.runlog import read_csv_rows



@pytest.mark.slow
def test_train_checkpoints_logs_and_resume(tmp_path, tiny_dataset):
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(tiny_dataset), val=str(tiny_dataset), out=str(out), steps=3, batch=2,
                      crop=32, ckpt_every=1, val_every=2, warmup=1, threads=1, seed=5)
    final = train(cfg)
    assert final["step"] == 3
    assert (out / "checkpoint.pt").exists()
    rows = read_csv_rows(out / "train_log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(np.isfinite(float(r["loss_mse"])) for r in rows)
    vrows = read_csv_rows(out / "val_log.csv")
    assert {int(r["step"]) for r in vrows} == {2, 3}
    metrics = json.loads((out / "final_metrics.json").read_text())
    assert {(v["snr_db"], v["symbols_per_location"]) for v in metrics["validation"]} == {
        (s, k) for s in (0.0, 10.0, 20.0) for k in (16, 48)}

    # resume continues from step 3 to 5 and appends to the same logs; its elapsed_s counts on
    # from the logged training time (made long here, so that a restart at 0 would show)
    log_path = out / "train_log.csv"
    shift_logged_elapsed(log_path, 1000.0)
    cfg5 = TrainConfig(**{**cfg.__dict__, "steps": 5})
    final5 = train(cfg5, resume=True)
    assert final5["step"] == 5
    rows5 = read_csv_rows(log_path)
    assert [int(r["step"]) for r in rows5] == [1, 2, 3, 4, 5]
    elapsed = [float(r["elapsed_s"]) for r in rows5]
    assert elapsed == sorted(elapsed) and elapsed[3] >= 1000.0, elapsed
    m = load_model(out / "checkpoint.pt")
    assert m.cfg.max_symbols == 48


def test_resume_refuses_a_different_model(tmp_path, tiny_dataset):
    out = tmp_path / "run"
    base = dict(data=str(tiny_dataset), out=str(out), steps=1, batch=1, crop=32, threads=1, ckpt_every=1)
    train(TrainConfig(**base))
    with pytest.raises(ValueError, match="checkpoint.pt"):
        train(TrainConfig(**{**base, "steps": 2, "max_symbols": 32, "operating_points": [16, 32]}), resume=True)


def test_train_cli_rejects_bad_arguments(tiny_dataset):
    from tests.helpers import run_cli

    p = run_cli("train", "codec", "--data", tiny_dataset, "--snr-range", "zero,20", check=False)
    assert p.returncode != 0 and "--snr-range" in p.stderr
    p = run_cli("train", "codec", "--data", tiny_dataset, "--operating-points", "16,99", check=False)
    assert p.returncode == 2 and "99" in p.stderr
    for args, needle in ((("--snr-range", "20,0"), "--snr-range"), (("--crop", "40"), "--crop")):
        p = run_cli("train", "codec", "--data", tiny_dataset, *args, check=False)
        assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr, p.stderr
    p = run_cli("train", "akb", "--data", tiny_dataset, "--crop", "40", check=False)
    assert p.returncode == 2 and "--crop" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_linear_path_fit_skips_images_smaller_than_a_block():
    from testbed.codec.pca_init import block_moments

    rng = np.random.default_rng(0)
    m = block_moments([smooth_image(8, 40), smooth_image(32, 32)], rng, n_blocks=100)
    assert m.shape == (768, 768) and np.isfinite(m).all()
    with pytest.raises(ValueError, match="16x16"):
        block_moments([smooth_image(8, 40)], rng, n_blocks=10)


@pytest.mark.slow
def test_loss_spike_is_skipped_not_applied(tmp_path, tiny_dataset, monkeypatch):
    """One absurd batch (here: a NaN loss) is logged and skipped; the model stays finite."""
    import torch

    import testbed.codec.train as tr

    real = tr.JSCC.forward
    calls = {"n": 0}

    def flaky(self, *a, **k):
        calls["n"] += 1
        y = real(self, *a, **k)
        return y * float("nan") if calls["n"] == 3 else y

    monkeypatch.setattr(tr.JSCC, "forward", flaky)
    out = tmp_path / "run"
    train(TrainConfig(data=str(tiny_dataset), out=str(out), steps=5, batch=1, crop=32, ckpt_every=5,
                      threads=1, warmup=1))
    rows = read_csv_rows(out / "train_log.csv")
    assert rows[-1]["skipped"] == "1"
    m = load_model(out / "checkpoint.pt")
    assert all(torch.isfinite(p).all() for p in m.parameters())


def test_init_from_onnx_model_and_resume_without_it(tmp_path, tiny_dataset):
    """--init-from seeds a new run from a model folder's ONNX weights; a resumed run needs only
    its checkpoint (the seed may be gone by then)."""
    import torch

    from testbed.codec.export import export
    from testbed.codec.model import JSCC, CodecConfig
    from testbed.codec.onnx_weights import load_from_onnx

    torch.manual_seed(1)
    m = JSCC(CodecConfig(widths=(8, 8, 12, 16), max_symbols=6))
    with torch.no_grad():   # distinct values everywhere (the exporter merges identical initializers)
        for p in m.parameters():
            p.add_(torch.rand_like(p) * 0.01)
    tiny_model_dir = tmp_path / "tiny"
    export(m.eval(), tiny_model_dir, name="tiny", operating_points=[2, 6], training={"data": "test"})

    out = tmp_path / "run"
    base = dict(data=str(tiny_dataset), out=str(out), batch=1, crop=32, threads=1, ckpt_every=1, max_symbols=6,
                operating_points=[2, 6], ema=0.9)
    train(TrainConfig(**base, steps=1, init_from=str(tiny_model_dir)))
    seeded = load_from_onnx(tiny_model_dir)
    trained = load_model(out / "checkpoint.pt", weights="raw")
    assert trained.cfg == seeded.cfg
    # one step moved the weights a little, from the ONNX ones (not from a fresh init)
    diffs = [float((a - b).abs().max()) for a, b in zip(trained.state_dict().values(), seeded.state_dict().values())]
    assert max(diffs) < 0.05
    final = train(TrainConfig(**base, steps=2, init_from=str(tmp_path / "gone")), resume=True)
    assert final["step"] == 2
    assert torch.isfinite(next(load_model(out / "checkpoint.pt").parameters())).all()


# --- resume exactness, best.pt, logs, seeding, refusing to overwrite a run ---------------------------------------

class _Killed(Exception):
    """Stands in for the training process being killed."""


def _kill_at_checkpoint(mp, step: int, before: bool) -> None:
    """Kill the run (raise _Killed) just before or just after checkpoint.pt is written at ``step``."""
    import testbed.codec.train as tr

    real = tr._save_checkpoint

    def save(path, model, opt, st, *a, **k):
        is_ck = Path(path).name == "checkpoint.pt" and st == step
        if is_ck and before:
            raise _Killed
        real(path, model, opt, st, *a, **k)
        if is_ck:
            raise _Killed

    mp.setattr(tr, "_save_checkpoint", save)


def _killed_and_resumed(cfg, step: int, before: bool) -> None:
    with pytest.MonkeyPatch.context() as m:
        _kill_at_checkpoint(m, step, before)
        with pytest.raises(_Killed):
            train(cfg)
    train(cfg, resume=True)


@pytest.fixture(scope="module")
def module_dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("train-data")
    for i in range(3):
        write_png(d / f"img{i}.png", smooth_image(48 + 8 * i, 64, seed=i))
    return d


@pytest.fixture(scope="module")
def killed_run(module_dataset, tmp_path_factory):
    """(uninterrupted run, run killed after step 4's log rows and before its checkpoint, then resumed):
    the checkpoint at step 2 is the last one; step 3's validation and step 4's log row were written."""
    root = tmp_path_factory.mktemp("killed-codec")
    base = dict(data=str(module_dataset), val=str(module_dataset), steps=6, batch=1, crop=32, ckpt_every=2,
                val_every=3, warmup=1, threads=1, seed=5, ema=0.9)
    train(TrainConfig(**base, out=str(root / "a")))
    _killed_and_resumed(TrainConfig(**base, out=str(root / "b")), step=4, before=True)
    return root / "a", root / "b"


@pytest.mark.slow
def test_resume_after_a_kill_ends_with_the_uninterrupted_weights(killed_run):
    a, b = (load_checkpoint(d / "checkpoint.pt") for d in killed_run)
    assert a["step"] == b["step"] == 6
    for key in ("model", "ema", "optimizer", "np_rng", "py_rng", "torch_gen", "best_val", "recent_loss"):
        assert_same(a[key], b[key], key)
    assert_same(a["global_rng"]["torch"], b["global_rng"]["torch"], "global torch RNG")
    assert_same(load_checkpoint(killed_run[0] / "best.pt")["model"], load_checkpoint(killed_run[1] / "best.pt")["model"], "best.pt")
    fa, fb = (json.loads((d / "final_metrics.json").read_text()) for d in killed_run)
    assert fa["validation"] == fb["validation"]


@pytest.mark.slow
def test_resume_drops_the_log_rows_written_after_the_checkpoint(killed_run):
    for name, key, want in (("train_log.csv", "step", [2, 4, 6]), ("val_log.csv", "step", [3, 3, 6, 6])):
        ra, rb = (read_csv_rows(d / name) for d in killed_run)
        assert [int(r[key]) for r in rb] == want, name       # no step twice
        drop = {"elapsed_s", "images_per_s"}                   # wall-clock columns
        assert [{k: v for k, v in r.items() if k not in drop} for r in rb] == \
               [{k: v for k, v in r.items() if k not in drop} for r in ra], name


@pytest.mark.slow
def test_best_pt_after_a_resume_is_the_uninterrupted_best(tmp_path, tiny_dataset, monkeypatch):
    """Validation at step 2 is the best (30 dB), at step 4 worse (29 dB). A run killed right after
    its step-2 checkpoint must keep step 2's best.pt when resumed, as the uninterrupted run does."""
    import testbed.codec.train as tr

    def scripted(calls):
        def validate(*a, **k):     # two operating points per validation: calls 1-2 at step 2, 3-4 at step 4
            calls.append(1)
            return 30.0 if len(calls) <= 2 else 29.0
        return validate

    base = dict(data=str(tiny_dataset), val=str(tiny_dataset), steps=4, batch=1, crop=32, ckpt_every=2,
                val_every=2, warmup=1, threads=1, seed=5)
    monkeypatch.setattr(tr, "validate", scripted([]))
    train(TrainConfig(**base, out=str(tmp_path / "a")))
    monkeypatch.setattr(tr, "validate", scripted([]))
    _killed_and_resumed(TrainConfig(**base, out=str(tmp_path / "b")), step=2, before=False)
    a, b = load_checkpoint(tmp_path / "a" / "best.pt"), load_checkpoint(tmp_path / "b" / "best.pt")
    assert (a["step"], a["best_val"]) == (2, 30.0)
    assert (b["step"], b["best_val"]) == (2, 30.0)
    assert_same(a["model"], b["model"], "best.pt model")
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["best_val"] == 30.0


@pytest.mark.slow
def test_same_seed_same_initial_weights(tmp_path, tiny_dataset):
    """With lr 0 the checkpoint after one step holds the initial weights."""
    def init(seed, name):
        train(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / name), steps=1, batch=1, crop=32, ckpt_every=1,
                          warmup=1, threads=1, seed=seed, lr=0.0))
        return load_checkpoint(tmp_path / name / "checkpoint.pt")["model"]

    a, b, c = init(3, "a"), init(3, "b"), init(4, "c")
    assert_same(a, b, "initial weights, same seed")
    deep = [k for k in a if ".linear." not in k and a[k].dtype.is_floating_point and a[k].abs().sum() > 0]
    assert deep and any(not np.array_equal(a[k].numpy(), c[k].numpy()) for k in deep)


@pytest.mark.slow
def test_resume_keeps_the_loss_spike_guard(tmp_path, tiny_dataset, monkeypatch):
    """The median of the recent losses is checkpointed: the first step after a resume is guarded too."""
    import testbed.codec.train as tr

    base = dict(data=str(tiny_dataset), out=str(tmp_path / "run"), batch=1, crop=32, ckpt_every=10, warmup=1,
                threads=1)
    train(TrainConfig(**base, steps=10))
    real = tr.JSCC.forward
    monkeypatch.setattr(tr.JSCC, "forward", lambda self, *a, **k: real(self, *a, **k) + 10.0)  # MSE ~100
    train(TrainConfig(**base, steps=11), resume=True)
    assert read_csv_rows(tmp_path / "run" / "train_log.csv")[-1]["skipped"] == "1"


@pytest.mark.slow
def test_new_run_refuses_a_folder_holding_a_run_unless_forced(tmp_path, tiny_dataset):
    from testbed.core.trainargs import RunExistsError

    out = tmp_path / "run"
    base = dict(data=str(tiny_dataset), out=str(out), batch=1, crop=32, ckpt_every=1, warmup=1, threads=1)
    train(TrainConfig(**base, steps=1, val=str(tiny_dataset)))
    files = {n: (out / n).read_bytes() for n in ("checkpoint.pt", "best.pt", "train_log.csv", "val_log.csv")}
    with pytest.raises(RunExistsError) as e:
        train(TrainConfig(**base, steps=2))
    assert str(out) in str(e.value) and "--resume" in str(e.value) and "--force" in str(e.value)
    assert {n: (out / n).read_bytes() for n in files} == files           # nothing touched
    # --force starts over: a new run (seed 7, no validation) and no best.pt of the old one left behind
    train(TrainConfig(**base, steps=2, seed=7, force=True))
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["step"] == 2 and ck["train_config"]["seed"] == 7
    assert not (out / "best.pt").exists()
    assert [int(r["step"]) for r in read_csv_rows(out / "train_log.csv")] == [1, 2]


def test_train_cli_refuses_to_overwrite_a_run(tmp_path, tiny_dataset):
    from tests.helpers import run_cli

    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"an earlier run")
    p = run_cli("train", "codec", "--data", tiny_dataset, "--out", out, "--steps", "1", "--crop", "32", check=False)
    assert p.returncode == 2 and str(out) in p.stderr and "--resume" in p.stderr and "--force" in p.stderr
    assert (out / "checkpoint.pt").read_bytes() == b"an earlier run"


@pytest.mark.parametrize("what,args", [
    ("codec", ["--data", "d"]), ("akb", ["--data", "d"]), ("scheduler", ["--akb", "a.pt", "--data", "d"])])
def test_train_commands_take_force_and_do_not_record_it(what, args, monkeypatch):
    import importlib

    from testbed.cli.main import build_parser

    argv = ["train", what, *args, "--seed", "3", "--force", "--resume"]
    monkeypatch.setattr("sys.argv", ["testbed", *argv])
    a = build_parser().parse_args(argv)
    assert a.force and a.resume
    mod = importlib.import_module({"codec": "testbed.codec.train", "akb": "testbed.akb.train",
                                   "scheduler": "testbed.akb.channel_kb.scheduler"}[what])
    cfg = mod.config_from_args(a)
    assert cfg.force is True and cfg.seed == 3
    assert cfg.command == " ".join(["testbed", "train", what, *args, "--seed", "3"])


def test_truncate_log_keeps_rows_up_to_the_checkpoint(tmp_path):
    from testbed.core.runlog import CsvLog
    from testbed.core.trainargs import truncate_log

    p = tmp_path / "log.csv"
    with CsvLog(p, ["step", "loss"]) as lg:
        for s in (1, 2, 3, 4):
            lg.append({"step": s, "loss": 0.5 / s})
    before = p.stat().st_mtime_ns
    assert truncate_log(p, "step", 4) == 0 and p.stat().st_mtime_ns == before      # nothing to drop: untouched
    p.write_text(p.read_text() + "5,0.1\n6,0.0")                                    # ... and a torn last line
    assert truncate_log(p, "step", 2) == 3
    assert p.read_text() == "step,loss\n1,0.5\n2,0.25\n"
    assert truncate_log(tmp_path / "missing.csv", "step", 2) == 0
    with pytest.raises(ValueError, match="timesteps"):
        truncate_log(p, "timesteps", 2)
    with CsvLog(p, ["step", "loss"], resume=True) as lg:                             # CsvLog appends after it
        lg.append({"step": 3, "loss": 0.1})
    assert [r["step"] for r in read_csv_rows(p)] == ["1", "2", "3"]
    assert not list(tmp_path.glob(".*tmp*"))                                         # no temporary file left


# --- review fixes: spike guard across checkpoints, non-finite gradients, --init-from + --snr-range, ----------------
# --- errors naming the folder/option ----------------------------------------------------------------------------

@pytest.mark.slow
def test_loss_spike_guard_stays_armed_right_after_a_checkpoint(tmp_path, tiny_dataset, monkeypatch):
    """The guard's window spans checkpoints: a spike 2 steps after the step-10 checkpoint is skipped
    (it used to look at the 1 loss since the checkpoint only, and was off for 9 steps after each)."""
    import torch

    import testbed.codec.train as tr

    real = tr.JSCC.forward
    calls = {"n": 0}

    def spiky(self, *a, **k):
        calls["n"] += 1
        y = real(self, *a, **k)
        return y + 10.0 if calls["n"] == 12 else y      # MSE ~100 at step 12

    monkeypatch.setattr(tr.JSCC, "forward", spiky)
    out = tmp_path / "run"
    train(TrainConfig(data=str(tiny_dataset), out=str(out), steps=13, batch=1, crop=32, ckpt_every=10,
                      threads=1, warmup=1))
    rows = read_csv_rows(out / "train_log.csv")
    assert [(r["step"], r["skipped"]) for r in rows] == [("10", "0"), ("13", "1")]
    assert len(load_checkpoint(out / "checkpoint.pt")["recent_loss"]) == 12    # 10 + 2 accepted, spike excluded
    assert all(torch.isfinite(p).all() for p in load_model(out / "checkpoint.pt").parameters())


def test_non_finite_gradient_is_skipped_not_applied(tmp_path, tiny_dataset, monkeypatch):
    """A finite loss whose gradient is NaN (e.g. a 0/0 in a normalisation) must not reach the weights."""
    import torch

    from tests.helpers import nan_gradient_at

    nan_gradient_at(monkeypatch, 3)
    out = tmp_path / "run"
    train(TrainConfig(data=str(tiny_dataset), out=str(out), steps=5, batch=1, crop=32, ckpt_every=5,
                      threads=1, warmup=1))
    assert read_csv_rows(out / "train_log.csv")[-1]["skipped"] == "1"
    assert all(torch.isfinite(p).all() for p in load_model(out / "checkpoint.pt", weights="raw").parameters())


def test_init_from_with_another_snr_range_records_it_and_resumes(tmp_path, tiny_dataset):
    """Fine-tuning a 0..20 dB model over --snr-range -5,25: the checkpoint records the range trained
    on, and --resume accepts it (it used to refuse: 'does not match the requested ... SNR range')."""
    from tests.helpers.akb import tiny_v1_checkpoint

    v1 = tiny_v1_checkpoint(tmp_path / "v1.pt")
    base = dict(data=str(tiny_dataset), out=str(tmp_path / "run"), batch=1, crop=32, threads=1, ckpt_every=1,
                warmup=1, init_from=str(v1), snr_min_db=-5.0, snr_max_db=25.0)
    train(TrainConfig(**base, steps=1))
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["codec_config"]
    assert (ck["snr_min_db"], ck["snr_max_db"], ck["widths"]) == (-5.0, 25.0, [8, 8, 12, 16])
    assert train(TrainConfig(**base, steps=2), resume=True)["step"] == 2


def test_images_too_small_for_the_linear_path_name_the_data_folder(tmp_path):
    d = tmp_path / "tiny-images"
    d.mkdir()
    write_png(d / "a.png", smooth_image(8, 8))
    with pytest.raises(ValueError, match="tiny-images.*16x16"):
        train(TrainConfig(data=str(d), out=str(tmp_path / "run"), steps=1, batch=1, crop=32, threads=1))


@pytest.mark.parametrize("what,args,needle", [
    ("codec", ["--val-every", "0"], "--val-every"), ("codec", ["--ckpt-every", "0"], "--ckpt-every"),
    ("codec", ["--batch", "0"], "--batch"), ("codec", ["--ema", "1"], "--ema"),
    ("akb", ["--val-every", "0"], "--val-every"), ("akb", ["--val-images", "0"], "--val-images"),
    ("akb", ["--ema", "-0.5"], "--ema"), ("akb", ["--lr", "0"], "--lr"), ("codec", ["--lr=-1e-4"], "--lr"),
    ("akb", ["--lr-entropy", "nan"], "--lr-entropy"), ("codec", ["--max-symbols", "385"], "--max-symbols"),
    ("codec", ["--max-symbols", "0"], "--max-symbols"), ("codec", ["--mosaic", "0"], "--mosaic")])
def test_train_options_that_would_fail_mid_run_are_refused_up_front(what, args, needle):
    """--val-every 0 / --ckpt-every 0 used to stop the run at its first step with a ZeroDivisionError."""
    import importlib

    from testbed.cli.main import build_parser

    a = build_parser().parse_args(["train", what, "--data", "d", *args])
    mod = importlib.import_module({"codec": "testbed.codec.train", "akb": "testbed.akb.train"}[what])
    with pytest.raises(ValueError, match=needle):
        mod.config_from_args(a)


def test_init_from_a_file_that_is_not_a_codec_checkpoint_names_the_option(tmp_path, tiny_dataset):
    import torch

    for name, write in (("notes.txt", lambda p: p.write_text("not a checkpoint")),
                        ("akb.pt", lambda p: torch.save({"akb_config": {}, "model": {}}, p))):
        bad = tmp_path / name
        write(bad)
        with pytest.raises(ValueError, match=f"--init-from .*{name}"):
            train(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "run"), steps=1, batch=1, crop=32,
                              threads=1, init_from=str(bad)))


def test_new_run_refuses_a_folder_with_results_but_no_checkpoint(tmp_path):
    """A run killed after writing best.pt but before its first checkpoint: a new run there (or a
    --resume, which has nothing to resume) would leave that best.pt to be exported as its own."""
    from testbed.core.trainargs import RunExistsError, check_new_run

    out = tmp_path / "run"
    out.mkdir()
    (out / "best.pt").write_bytes(b"old best")
    for resume in (False, True):
        with pytest.raises(RunExistsError, match="best.pt.*--force"):
            check_new_run(out, "checkpoint.pt", resume, False, results=("best.pt",))
    assert (out / "best.pt").read_bytes() == b"old best"
    check_new_run(out, "checkpoint.pt", False, True, results=("best.pt",))
    assert not (out / "best.pt").exists()
    check_new_run(out, "checkpoint.pt", True, False, results=("best.pt",))   # empty folder: fine
    (out / "checkpoint.pt").write_bytes(b"ck")
    (out / "best.pt").write_bytes(b"best")
    check_new_run(out, "checkpoint.pt", True, False, results=("best.pt",))   # resumable: fine


def test_elapsed_before_reads_the_last_logged_training_time(tmp_path):
    from testbed.core.trainargs import elapsed_before

    p = tmp_path / "train_log.csv"
    assert elapsed_before(p) == 0.0                       # no log yet
    p.write_text("step,elapsed_s\n")
    assert elapsed_before(p) == 0.0                       # header only
    p.write_text("step,elapsed_s\n1,12.5\n2,30.0\n3,\n")
    assert elapsed_before(p) == 30.0                      # an empty cell is skipped
    p.write_text("step,loss\n1,0.5\n")
    assert elapsed_before(p) == 0.0                       # no such column


@pytest.mark.slow
def test_bf16_training_is_close_to_fp32_and_keeps_float32_weights(tmp_path, tiny_dataset):
    """--precision bf16: same run as fp32 (same seed and batches), the losses differ by the
    bfloat16 rounding only, and the checkpoint holds float32 weights that load as a normal model."""
    import torch

    losses = {}
    for p in ("fp32", "bf16"):
        out = tmp_path / p
        cfg = TrainConfig(data=str(tiny_dataset), val=str(tiny_dataset), out=str(out), steps=2, batch=2,
                          crop=32, ckpt_every=1, val_every=2, warmup=1, threads=1, seed=3, precision=p)
        final = train(cfg)
        assert all(np.isfinite(v["val_psnr_db"]) for v in final["validation"])
        losses[p] = float(read_csv_rows(out / "train_log.csv")[0]["loss_mse"])
        assert json.loads((out / "train_config.json").read_text())["precision"] == p
    rel = abs(losses["bf16"] - losses["fp32"]) / losses["fp32"]
    assert 0.0 < rel < 0.05, losses
    ck = torch.load(tmp_path / "bf16" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert all(v.dtype == torch.float32 for v in ck["model"].values() if v.is_floating_point())
    m = load_model(tmp_path / "bf16" / "checkpoint.pt")
    assert all(torch.isfinite(t).all() for t in m.state_dict().values() if t.is_floating_point())


def test_unknown_precision_is_refused_naming_the_option(tiny_dataset):
    import torch

    from testbed.cli.main import build_parser
    from testbed.core.precision import check_precision

    with pytest.raises(ValueError, match="--precision"):
        check_precision("fp16", torch.device("cpu"))
    for what in ("codec", "akb"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", what, "--data", str(tiny_dataset), "--precision", "fp16"])
        a = build_parser().parse_args(["train", what, "--data", str(tiny_dataset), "--precision", "bf16"])
        assert a.precision == "bf16"


def test_mosaic_canvases_are_grids_of_crops_of_the_training_images():
    """--mosaic 2: each sample is a 2x2 canvas whose quarters are crops (maybe flipped) of the
    training images; --mosaic 1 draws the same single crops as no mosaic."""
    from testbed.core.crops import CropSampler

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(3)]

    def is_crop(q):
        for a in arrays:
            for b in (a, a[:, ::-1], a[::-1], a[::-1, ::-1]):
                for y in range(b.shape[0] - q.shape[0] + 1):
                    for x in range(b.shape[1] - q.shape[1] + 1):
                        if np.array_equal(b[y:y + q.shape[0], x:x + q.shape[1]], q):
                            return True
        return False

    x = CropSampler(arrays, 16, mosaic=2).sample(np.random.default_rng(1), 3)
    assert x.shape == (3, 3, 32, 32)
    u8 = (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    quarters = [u8[i, r:r + 16, c:c + 16] for i in range(3) for r in (0, 16) for c in (0, 16)]
    assert all(is_crop(q) for q in quarters)
    assert len({q.tobytes() for q in quarters}) == 12          # independent crops, not one repeated
    one = CropSampler(arrays, 16).sample(np.random.default_rng(1), 4)
    again = CropSampler(arrays, 16, mosaic=1).sample(np.random.default_rng(1), 4)
    assert one.shape == (4, 3, 16, 16) and np.array_equal(one.numpy(), again.numpy())


@pytest.mark.slow
def test_mosaic_training_runs_and_records_the_option(tmp_path, tiny_dataset):
    cfg = TrainConfig(data=str(tiny_dataset), val=str(tiny_dataset), out=str(tmp_path / "m"), steps=2, batch=1,
                      crop=16, mosaic=2, ckpt_every=1, val_every=2, warmup=1, threads=1, seed=3)
    final = train(cfg)
    assert all(np.isfinite(v["val_psnr_db"]) for v in final["validation"])
    assert json.loads((tmp_path / "m" / "train_config.json").read_text())["mosaic"] == 2
    # the model card of an export says how the codec was trained
    from tests.helpers import run_cli
    from testbed.zoo import load_card

    run_cli("export", tmp_path / "m" / "checkpoint.pt", "--out", tmp_path / "exported")
    assert load_card(tmp_path / "exported" / "model_card.yaml").training["mosaic"] == 2


@pytest.mark.slow
def test_res_blocks_grow_an_init_from_model_and_must_match_on_resume(tmp_path, tiny_dataset):
    import torch

    from testbed.codec.model import JSCC, CodecConfig

    torch.manual_seed(2)
    seed = JSCC(CodecConfig(widths=(8, 8, 12, 16), max_symbols=6))
    seed_ck = tmp_path / "seed.pt"
    torch.save({"model": seed.state_dict(), "ema": None, "codec_config": seed.cfg.to_dict()}, seed_ck)
    out = tmp_path / "run"
    base = dict(data=str(tiny_dataset), out=str(out), batch=1, crop=32, threads=1, ckpt_every=1, max_symbols=6,
                operating_points=[2, 6])
    train(TrainConfig(**base, steps=1, init_from=str(seed_ck), res_blocks=[2, 3]))
    grown = load_model(out / "checkpoint.pt", weights="raw")
    assert (grown.cfg.enc_res_blocks, grown.cfg.dec_res_blocks) == (2, 3)
    # the seed's weights were kept (one small step away), the new blocks were added
    gs = grown.state_dict()
    diffs = [float((gs[n] - v).abs().max()) for n, v in seed.state_dict().items()]
    assert 0 < max(diffs) < 0.05
    assert len(grown.decoder.res_more) == 2
    with pytest.raises(ValueError, match="--res-blocks 1,1.*checkpoint"):
        train(TrainConfig(**base, steps=2, res_blocks=[1, 1]), resume=True)
    assert train(TrainConfig(**base, steps=2, res_blocks=[2, 3]), resume=True)["step"] == 2
    # a new run without --init-from builds the blocks directly; fewer than the seed has is refused
    fresh = tmp_path / "fresh"
    train(TrainConfig(**{**base, "out": str(fresh)}, steps=1, res_blocks=[1, 2]))
    assert load_model(fresh / "checkpoint.pt").cfg.dec_res_blocks == 2
    with pytest.raises(ValueError, match="--res-blocks with --init-from.*only be grown"):
        train(TrainConfig(**{**base, "out": str(tmp_path / "shrink")}, steps=1,
                          init_from=str(out / "checkpoint.pt"), res_blocks=[1, 1]))


@pytest.mark.parametrize("value", ["3", "0,2", "2,x", "9,1"])
def test_res_blocks_option_is_checked(value):
    from testbed.cli.main import build_parser
    from testbed.codec.train import config_from_args

    a = build_parser().parse_args(["train", "codec", "--data", "d", "--res-blocks", value])
    with pytest.raises(ValueError, match="--res-blocks"):
        config_from_args(a)
