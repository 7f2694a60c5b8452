"""The GPU training path, run on the CPU: --arch v2, data on the device, --max-minutes, float16
weights, --init-from those weights, and scripts/train_gpu.sh end to end for a few steps."""
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import REPO, smooth_image, write_png
from testbed.codec.checkpoint import load_model
from testbed.codec.train import TrainConfig, train
from testbed.core.runlog import read_csv_rows
from testbed.core.trainer import lr_at



def test_lr_anneals_by_the_time_budget():
    assert lr_at(500, 1e-3, 1e-5, 10, 1_000_000, time_used=1.0) == pytest.approx(1e-5)
    assert lr_at(500, 1e-3, 1e-5, 10, 1_000_000, time_used=0.5) == pytest.approx(0.5 * (1e-3 + 1e-5))
    assert lr_at(500, 1e-3, 1e-5, 10, 1000, time_used=0.0) == lr_at(500, 1e-3, 1e-5, 10, 1000)
    assert lr_at(5, 1e-3, 1e-5, 10, 1000, time_used=0.9) == pytest.approx(6e-4)   # warm-up first


def test_time_budget_ends_the_run_with_a_last_checkpoint_and_fp16_weights(tmp_path, tiny_dataset):
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(tiny_dataset), val=str(tiny_dataset), out=str(out), steps=100000, batch=1, crop=32,
                      ckpt_every=1000, val_every=1000, warmup=1, threads=1, arch="v2", data_on_device="on",
                      max_minutes=0.02)
    final = train(cfg)
    assert final["stopped"] == "max_minutes" and 1 <= final["step"] < 100000
    rows = read_csv_rows(out / "train_log.csv")
    assert [int(r["step"]) for r in rows] == [final["step"]]        # the last step is logged and checkpointed
    assert float(rows[0]["lr"]) < 2e-4
    assert {int(r["step"]) for r in read_csv_rows(out / "val_log.csv")} == {final["step"]}
    ck = torch.load(out / "weights_fp16.pt", weights_only=False)
    assert "optimizer" not in ck and ck["step"] == final["step"] and ck["codec_config"]["arch"] == "v2"
    assert all(v.dtype == torch.float16 for v in ck["model"].values() if v.is_floating_point())
    assert (out / "weights_fp16.pt").stat().st_size < 0.6 * (out / "checkpoint.pt").stat().st_size
    m = load_model(out / "weights_fp16.pt")
    full = load_model(out / "checkpoint.pt")
    for (k, a), (_, b) in zip(m.state_dict().items(), full.state_dict().items()):
        assert torch.allclose(a, b, rtol=1e-2, atol=1e-3), k

    # a new run continues from the weights that came back, keeping the architecture
    out2 = tmp_path / "run2"
    final2 = train(TrainConfig(data=str(tiny_dataset), out=str(out2), steps=2, batch=1, crop=32, ckpt_every=1,
                               warmup=1, threads=1, init_from=str(out / "weights_fp16.pt")))
    assert final2["step"] == 2 and final2["stopped"] == "steps"
    assert load_model(out2 / "checkpoint.pt").cfg.arch == "v2"
    with pytest.raises(ValueError, match="--arch v1: --init-from .* arch v2"):
        train(TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "run3"), steps=1, batch=1, crop=32,
                          threads=1, arch="v1", init_from=str(out / "weights_fp16.pt")))


def test_cli_refuses_bad_budget_and_v2_res_blocks(tmp_path, tiny_dataset):
    from tests.helpers import run_cli

    for bad in ("nan", "-1", "inf"):
        r = run_cli("train", "codec", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--max-minutes", bad,
                    check=False)
        assert r.returncode == 2 and "--max-minutes" in r.stderr, (bad, r.stderr)
    r = run_cli("train", "codec", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--arch", "v2",
                "--res-blocks", "2,2", check=False)
    assert r.returncode == 2 and "--res-blocks: codec v1 only" in r.stderr


@pytest.mark.slow
def test_train_gpu_script_runs_end_to_end_on_cpu(tmp_path, tiny_dataset):
    pack = tmp_path / "pack"
    (pack / "val").mkdir(parents=True)
    (pack / "train").symlink_to(tiny_dataset)
    write_png(pack / "val" / "v.png", smooth_image(32, 48, seed=9))
    (pack / "pack.json").write_text("{}")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "PACK": str(pack), "TMPDIR": str(tmp_path)}
    r = subprocess.run([str(REPO / "scripts" / "train_gpu.sh"), "--device", "cpu", "--minutes", "5", "--out", str(out),
                        "--", "--steps", "3", "--batch", "1", "--crop", "32", "--mosaic", "1", "--val-every", "2",
                        "--ckpt-every", "2", "--threads", "1"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr + r.stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == ["final_metrics.json", "pack.json", "run.log", "train_config.json", "train_log.csv",
                     "val_log.csv", "weights_fp16.pt"]
    cfgd = json.loads((out / "train_config.json").read_text())
    assert cfgd["arch"] == "v2" and cfgd["precision"] == "bf16" and cfgd["data_on_device"] == "on"
    assert json.loads((out / "final_metrics.json").read_text())["step"] == 3
    assert "# exit 0" in (out / "run.log").read_text()

    # the AKB codec on what came back (the second GPU run of docs/training.md)
    out_akb = tmp_path / "out-akb"
    r = subprocess.run([str(REPO / "scripts" / "train_gpu.sh"), "--what", "akb", "--device", "cpu", "--minutes", "5",
                        "--init-from", str(out / "weights_fp16.pt"), "--out", str(out_akb), "--",
                        "--steps", "2", "--entropy-steps", "1", "--batch", "1", "--crop", "32", "--kb-crops", "40",
                        "--kb-entries", "4", "--val-images", "1", "--val-every", "1", "--ckpt-every", "1",
                        "--threads", "1"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr + r.stdout
    cfgd = json.loads((out_akb / "train_config.json").read_text())
    assert cfgd["rate_grad"] is True and cfgd["init_from"].endswith("weights_fp16.pt")
    from testbed.akb.train import load_akb
    model, _, _ = load_akb(out_akb / "weights_fp16.pt")
    assert model.cfg.backbone is not None and model.cfg.backbone["arch"] == "v2"
    r = subprocess.run([str(REPO / "scripts" / "train_gpu.sh"), "--what", "akb", "--device", "cpu"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "--what akb needs --init-from" in r.stderr
    # a missing pack is named
    r = subprocess.run([str(REPO / "scripts" / "train_gpu.sh"), "--device", "cpu"], capture_output=True, text=True,
                       env={**env, "PACK": str(tmp_path / "nope")}, timeout=60)
    assert r.returncode == 2 and "nope/train missing" in r.stderr


def test_training_commands_work_without_the_policy_packages():
    """A GPU machine's image has PyTorch but not gymnasium: `testbed train codec` must still parse,
    and `testbed train scheduler` names what is missing."""
    code = ("import sys; sys.modules['gymnasium'] = None\n"
            "from testbed.cli.main import main\n"
            "from testbed.cli.main import build_parser\n"
            "a = build_parser().parse_args(['train', 'codec', '--data', 'x', '--arch', 'v2'])\n"
            "assert a.arch == 'v2'\n"
            "sys.exit(main(['train', 'scheduler', '--akb', 'x', '--data', 'y']))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2 and "needs the Python package 'gymnasium'" in r.stderr, r.stderr
