import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import SAMPLES, run_cli
from testbed.experiments.evaluate import ROW_FIELDS
from testbed.core.runlog import read_csv_rows


@pytest.mark.slow
def test_eval_cli_writes_rows_summary_plot_and_json(shipped_model, tmp_path):
    out = tmp_path / "run"
    p = run_cli("eval", "--model", shipped_model, "--data", SAMPLES, "--snr-db", "0,20", "--seed", "3",
                "--out", out, "--json")
    js = json.loads(p.stdout)
    assert js["model"] == "jscc-v1" and js["cbr"] == pytest.approx(0.0625, rel=1e-3)
    assert [r["snr_db"] for r in js["results"]] == [0.0, 20.0]
    assert all(r["n_images"] == 3 for r in js["results"])
    assert js["results"][1]["psnr_db"] > js["results"][0]["psnr_db"]
    rows = read_csv_rows(out / "results.csv")
    assert len(rows) == 6
    assert list(rows[0].keys()) == ROW_FIELDS
    assert all(r["seed"] == "3" and len(r["model_sha256"]) == 64 for r in rows)
    assert all(float(r["encode_ms"]) > 0 and float(r["decode_ms"]) > 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is False
    assert summary["results"][0]["jpeg2000_psnr_db"] is not None
    png = (out / "psnr_vs_snr.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


@pytest.mark.slow
def test_eval_is_reproducible_with_seed(shipped_model, tmp_path):
    a = json.loads(run_cli("eval", "--model", shipped_model, "--data", SAMPLES / "kodim15.png", "--snr-db", "5",
                           "--seed", "7", "--no-separation", "--out", tmp_path / "a", "--json").stdout)
    b = json.loads(run_cli("eval", "--model", shipped_model, "--data", SAMPLES / "kodim15.png", "--snr-db", "5",
                           "--seed", "7", "--no-separation", "--out", tmp_path / "b", "--json").stdout)
    assert a["results"][0]["psnr_db"] == b["results"][0]["psnr_db"]


def test_graceful_loss_when_trailing_symbols_are_not_sent(shipped_model):
    """Fewer symbols per location -> lower but still useful PSNR (no cliff)."""
    from testbed.core.symbol_channel import awgn_np
    from testbed.codec.runtime import OnnxCodec
    from testbed.core.images import load_rgb
    from testbed.core.metrics import psnr

    c = OnnxCodec(shipped_model)
    img = load_rgb(SAMPLES / "kodim23.png")
    full = c.encode_k(img, 10.0, 48)
    res = []
    for keep in (48, 32, 16, 8):
        rng = np.random.default_rng(0)
        # only the first `keep` symbols of every location arrive; the decoder zero-fills the rest
        rx = awgn_np(full[: keep * 32 * 48], 10.0, rng)
        res.append(psnr(img, c.decode(rx, 10.0, 512, 768)))
    # fewer symbols never help (0.1 dB noise allowance) and the full set is clearly better than 8
    assert all(a >= b - 0.1 for a, b in zip(res, res[1:])), res
    assert res[0] > res[-1] + 1.0, res
    flat = np.broadcast_to(img.reshape(-1, 3).mean(0).round().astype(np.uint8), img.shape)
    assert res[3] > psnr(img, flat) + 3.0, res  # 8 of 48 symbols still carry the picture


@pytest.mark.slow
def test_ctrl_c_leaves_valid_log(shipped_model, tmp_path):
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(4):
        (data / f"im{i}.png").write_bytes((SAMPLES / "kodim15.png").read_bytes())
    out = tmp_path / "run"
    exe = Path(sys.executable).parent / "testbed"
    proc = subprocess.Popen([str(exe), "eval", "--model", str(shipped_model), "--data", str(data),
                             "--snr-db", "0,5,10,15,20", "--out", str(out), "--no-separation"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if (out / "results.csv").exists() and len(read_csv_rows(out / "results.csv")) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    rows = read_csv_rows(out / "results.csv")
    assert 2 <= len(rows) < 20
    assert all(math.isfinite(float(r["psnr_db"])) for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert sum(r["n_images"] for r in summary["results"]) == len(rows)


def test_record_in_card(tmp_path, tiny_model_dir):
    import shutil

    from testbed.zoo import load_card

    m = tmp_path / "model"
    shutil.copytree(tiny_model_dir, m)
    run_cli("eval", "--model", m, "--data", SAMPLES / "kodim15.png", "--snr-db", "0,10", "--cbr", str(2 / 768),
            "--no-separation", "--out", tmp_path / "run", "--record-in-card", "samples")
    card = load_card(m / "model_card.yaml")
    entry = card.evaluation["samples/awgn/cbr=0.0026"]
    assert set(entry["psnr_db"]) == {"0", "10"} and entry["n_images"] == 1
    assert entry["command"].startswith("testbed eval")
    # the card still verifies against its graphs
    run_cli("eval", "--model", m, "--data", SAMPLES / "kodim15.png", "--snr-db", "5", "--no-separation",
            "--out", tmp_path / "run2")


def test_rayleigh_channel_reports_effective_snr(tmp_path, tiny_model_dir):
    run_cli("eval", "--model", tiny_model_dir, "--data", SAMPLES, "--snr-db", "10", "--channel", "rayleigh",
            "--no-separation", "--out", tmp_path / "run")
    rows = read_csv_rows(tmp_path / "run" / "results.csv")
    assert {r["channel"] for r in rows} == {"rayleigh"}
    assert len({r["snr_rx_db"] for r in rows}) == 3  # one fade per image


def test_eval_refuses_to_overwrite_an_earlier_run(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    args = ("eval", "--model", tiny_model_dir, "--data", SAMPLES / "kodim15.png", "--no-separation", "--out", out)
    run_cli(*args, "--snr-db", "0,10")
    p = run_cli(*args, "--snr-db", "20", check=False)
    assert p.returncode == 2 and str(out) in p.stderr and "--force" in p.stderr
    assert len(read_csv_rows(out / "results.csv")) == 2          # the first run is intact
    run_cli(*args, "--snr-db", "20", "--force")
    assert [float(r["snr_db"]) for r in read_csv_rows(out / "results.csv")] == [20.0]


def test_default_run_folders_are_unique(tmp_path, monkeypatch):
    from testbed.core.runlog import prepare_run_dir

    monkeypatch.chdir(tmp_path)
    a, b = prepare_run_dir(None, "eval"), prepare_run_dir(None, "eval")
    assert a != b and a.is_dir() and b.is_dir()


def test_summary_table_counts_partial_separation_and_omits_it_when_off():
    from testbed.experiments.evaluate import format_table, parse_snrs

    r = {"snr_db": 5.0, "psnr_db": 23.7, "ms_ssim": 0.8, "encode_ms": 1.0, "decode_ms": 2.0,
         "jpeg_psnr_db": 23.76, "jpeg_achievable": 23, "jpeg2000_psnr_db": 24.1, "jpeg2000_achievable": 24,
         "n_images": 24}
    s = {"model": "m", "cbr": 0.02, "channel": "awgn", "n_images": 24, "run_dir": "x", "results": [r]}
    t = format_table(s)
    assert "23.76 (23/24)" in t and "24.10 (" not in t and "(k/n)" in t
    t = format_table({**s, "separation": False})
    assert "JPEG" not in t and "budget" not in t
    with pytest.raises(ValueError, match="10 is given more than once"):
        parse_snrs("0,10,10")
