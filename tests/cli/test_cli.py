import json

import numpy as np
import pytest

from tests.helpers import SAMPLES, run_cli, run_entry_point
from testbed.core.images import list_images, load_rgb
from testbed.core.metrics import psnr


def _flat_baseline_db() -> float:
    """Mean PSNR of replacing each sample image by its mean colour (zero transmitted information)."""
    vals = []
    for f in list_images(SAMPLES):
        a = load_rgb(f)
        flat = np.broadcast_to(a.reshape(-1, 3).mean(0).round().astype(np.uint8), a.shape)
        vals.append(psnr(a, flat))
    return float(np.mean(vals))


FLAT_BASELINE_DB = _flat_baseline_db()


def test_doctor_reports_versions_without_touching_the_network():
    p = run_cli("doctor", "--no-scan", "--json")
    d = json.loads(p.stdout)
    comps = d["components"]
    for name in ("gnuradio", "numpy", "torch", "onnxruntime", "libiio", "uhd", "paho-mqtt"):
        assert comps[name]["ok"], (name, comps[name])
    assert comps["gnuradio"]["version"].startswith("3.10")
    assert comps["numpy"]["version"].startswith("1.")
    assert d["radio_scan"] == "off" and d["ok"] is True
    gui = comps["qt live view (--gui)"]
    assert gui["required"] is False and gui["ok"] and gui["version"].startswith("PyQt5 5.")


def test_doctor_human_output_lists_components():
    p = run_cli("doctor", "--no-scan")
    assert "gnuradio" in p.stdout and "radios: scan skipped" in p.stdout


@pytest.mark.slow
def test_demo_runs_default_on_shipped_model_and_samples(tmp_path):
    p = run_cli("demo", "--out", tmp_path / "demo", "--json")
    d = json.loads(p.stdout)
    cbrs = sorted(r["cbr"] for r in d["runs"])
    assert abs(cbrs[0] - 1 / 48) < 1e-3 and abs(cbrs[1] - 1 / 16) < 1e-3
    for r in d["runs"]:
        assert [x["snr_db"] for x in r["results"]] == [0, 5, 10, 15, 20]
        assert all(x["n_images"] == 3 for x in r["results"])
        assert (tmp_path / "demo" / f"cbr-{r['cbr']:.4f}" / "psnr_vs_snr.png").exists()
        psnrs = [x["psnr_db"] for x in r["results"]]
        assert psnrs == sorted(psnrs), f"PSNR must rise with SNR (no cliff): {psnrs}"
        # graceful: at 0 dB still far better than knowing nothing but each image's mean colour
        assert psnrs[0] > FLAT_BASELINE_DB + 3.0, (psnrs, FLAT_BASELINE_DB)
    hi = next(r for r in d["runs"] if r["cbr"] > 0.05)["results"]
    lo = next(r for r in d["runs"] if r["cbr"] < 0.05)["results"]
    # more symbols, better images; at 0 dB the PHY misses about 8 % of the frames (measured: 280/305
    # with the light loopback channel, 282/305 with channel_model), so there it depends on which
    assert all(h["psnr_db"] > l["psnr_db"] for h, l in zip(hi, lo) if h["snr_db"] >= 5)


def test_help_lists_commands():
    """The installed `testbed` executable starts (a real process, unlike the other CLI tests)."""
    p = run_entry_point("--help")
    for cmd in ("doctor", "train", "export", "eval", "demo"):
        assert cmd in p.stdout


def test_bench_codec_reports_latency(tiny_model_dir):
    p = run_cli("bench", "codec", "--model", tiny_model_dir, "--size", "96x64", "--repeat", "2", "--json")
    d = json.loads(p.stdout)
    assert d["width"] == 96 and d["height"] == 64
    assert d["encode"]["median_ms"] > 0 and d["decode"]["median_ms"] > 0
    bad = run_cli("bench", "codec", "--model", tiny_model_dir, "--size", "big", check=False)
    assert bad.returncode == 2 and "'big'" in bad.stderr
    bad = run_cli("bench", "codec", "--model", tiny_model_dir, "--repeat", "0", check=False)
    assert bad.returncode == 2 and "--repeat" in bad.stderr and "Traceback" not in bad.stderr


def test_bench_phy_reports_samples_per_second():
    """``testbed bench phy``: the PHY alone, frames back to back, every frame decoded (in a
    process of its own: it runs GNU Radio flowgraphs)."""
    p = run_entry_point("bench", "phy", "--frames", "12", "--repeat", "2", "--json", "-v")
    d = json.loads(p.stdout)
    assert d["what"] == "phy" and d["impl"] in ("cpp", "python") and d["repeat"] == 2
    assert d["frames_lost"] == 0 and all(r["frames_received"] == r["frames_sent"] == d["frames"] for r in d["runs"])
    assert d["msps_min"] <= d["msps"] <= d["msps_max"] and d["msps"] > 0
    assert d["msps"] == pytest.approx(sorted(r["samples"] / r["wall_s"] / 1e6 for r in d["runs"])[1])
    assert "run 2/2" in p.stderr
    bad = run_entry_point("bench", "phy", "--impl", "fortran", check=False)
    assert bad.returncode == 2 and "--impl" in bad.stderr


def test_bench_codec_runs_an_akb_model():
    p = run_cli("bench", "codec", "--model", "akb-v1", "--size", "96x64", "--repeat", "1", "--cbr", "0.036",
                "--json")
    d = json.loads(p.stdout)
    assert d["model"] == "akb-v1" and d["cbr"] == 0.036 and d["symbols_per_location"] is None
    assert d["encode"]["median_ms"] > 0 and d["decode"]["median_ms"] > 0


def test_cli_errors_name_the_option_and_list_the_choices(tmp_path):
    p = run_cli("ota", "--config", "firmware_configs/loopback.yaml", "--images", SAMPLES, "--tx-gain-db", "abc",
                check=False)
    assert p.returncode == 2 and "--tx-gain-db" in p.stderr and "--snr-db" not in p.stderr, p.stderr
    p = run_cli("demo", "--cbr", "abc", check=False)
    assert p.returncode == 2 and "--cbr: expected comma-separated numbers, got 'abc'" in p.stderr, p.stderr
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("an earlier run")
    p = run_cli("demo", "--out", used, check=False)
    assert p.returncode == 2 and "--force" in p.stderr and not (used / "cbr-0.0625").exists(), p.stderr
    p = run_cli("train", check=False)
    assert p.returncode == 2 and "{codec,akb,scheduler,pack}" in p.stderr
    p = run_cli("train", "codec", "--data", tmp_path / "none", check=False)
    assert p.returncode == 2 and "testbed train codec: error" in p.stderr, p.stderr


def test_abbreviated_options_are_refused_not_guessed(tmp_path):
    """`--resum` must not silently mean `--resume`: training records its command line."""
    r = run_cli("train", "scheduler", "--akb", str(tmp_path / "x.pt"), "--data", str(tmp_path), "--resum", check=False)
    assert r.returncode == 2 and "unrecognized arguments: --resum" in r.stderr
    r = run_cli("eval", "--mod", "jscc-v1", "--data", str(tmp_path), check=False)
    assert r.returncode == 2 and "--model" in r.stderr


def test_run_cli_runs_in_process_and_leaves_the_process_as_it_was(tmp_path, caplog):
    """The helper itself: exit codes, captured output and logging, and nothing leaks into later tests."""
    import logging
    import os

    root = logging.getLogger()
    handlers, level, cwd, env = root.handlers[:], root.level, os.getcwd(), dict(os.environ)
    p = run_cli("--version", cwd=tmp_path, env={**env, "TESTBED_HELPER_CHECK": "1"})
    assert p.returncode == 0 and p.stdout.strip() and p.stderr == ""
    p = run_cli("eval", "--model", tmp_path / "none", "--data", tmp_path, "-v", check=False)
    assert p.returncode == 2 and "testbed eval: error" in p.stderr and p.stdout == ""
    assert root.handlers == handlers and root.level == level and os.getcwd() == cwd and dict(os.environ) == env
    logging.getLogger("testbed").warning("after the call")
    assert "after the call" in caplog.text
