import json

import numpy as np
import pytest

from conftest import smooth_image, write_png
from testbed.codec.train import TrainConfig, load_model, train
from testbed.runlog import read_csv_rows


@pytest.fixture()
def tiny_dataset(tmp_path):
    d = tmp_path / "train"
    d.mkdir()
    for i in range(3):
        write_png(d / f"img{i}.png", smooth_image(48 + 8 * i, 64, seed=i))
    return d


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

    # resume continues from step 3 to 5 and appends to the same logs
    cfg5 = TrainConfig(**{**cfg.__dict__, "steps": 5})
    final5 = train(cfg5, resume=True)
    assert final5["step"] == 5
    assert [int(r["step"]) for r in read_csv_rows(out / "train_log.csv")] == [1, 2, 3, 4, 5]
    m = load_model(out / "checkpoint.pt")
    assert m.cfg.max_symbols == 48


def test_resume_refuses_a_different_model(tmp_path, tiny_dataset):
    out = tmp_path / "run"
    base = dict(data=str(tiny_dataset), out=str(out), steps=1, batch=1, crop=32, threads=1, ckpt_every=1)
    train(TrainConfig(**base))
    with pytest.raises(ValueError, match="checkpoint.pt"):
        train(TrainConfig(**{**base, "steps": 2, "max_symbols": 32, "operating_points": [16, 32]}), resume=True)


def test_train_cli_rejects_bad_arguments(tiny_dataset):
    from conftest import run_cli

    p = run_cli("train", "codec", "--data", tiny_dataset, "--snr-range", "zero,20", check=False)
    assert p.returncode != 0 and "--snr-range" in p.stderr
    p = run_cli("train", "codec", "--data", tiny_dataset, "--operating-points", "16,99", check=False)
    assert p.returncode != 0 and "99" in p.stderr


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
