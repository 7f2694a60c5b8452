import json

from conftest import run_cli


def test_doctor_reports_versions_without_touching_the_network():
    p = run_cli("doctor", "--no-scan", "--json")
    d = json.loads(p.stdout)
    comps = d["components"]
    for name in ("gnuradio", "numpy", "torch", "onnxruntime", "libiio", "uhd", "paho-mqtt"):
        assert comps[name]["ok"], (name, comps[name])
    assert comps["gnuradio"]["version"].startswith("3.10")
    assert comps["numpy"]["version"].startswith("1.")
    assert d["radio_scan"] == "off" and d["ok"] is True


def test_doctor_human_output_lists_components():
    p = run_cli("doctor", "--no-scan")
    assert "gnuradio" in p.stdout and "radios: scan skipped" in p.stdout


def test_demo_runs_default_on_shipped_model_and_samples(tmp_path):
    p = run_cli("demo", "--snr-db", "10", "--out", tmp_path / "demo", "--json")
    d = json.loads(p.stdout)
    cbrs = sorted(r["cbr"] for r in d["runs"])
    assert abs(cbrs[0] - 1 / 48) < 1e-3 and abs(cbrs[1] - 1 / 16) < 1e-3
    for r in d["runs"]:
        assert r["results"][0]["n_images"] == 3
        assert (tmp_path / "demo" / f"cbr-{r['cbr']:.4f}" / "psnr_vs_snr.png").exists()
    hi = next(r for r in d["runs"] if r["cbr"] > 0.05)["results"][0]["psnr_db"]
    lo = next(r for r in d["runs"] if r["cbr"] < 0.05)["results"][0]["psnr_db"]
    assert hi > lo


def test_help_lists_commands():
    p = run_cli("--help")
    for cmd in ("doctor", "train", "export", "eval", "demo"):
        assert cmd in p.stdout


def test_bench_codec_reports_latency(tiny_model_dir):
    p = run_cli("bench", "codec", "--model", tiny_model_dir, "--size", "96x64", "--repeat", "2", "--json")
    d = json.loads(p.stdout)
    assert d["width"] == 96 and d["height"] == 64
    assert d["encode"]["median_ms"] > 0 and d["decode"]["median_ms"] > 0
    bad = run_cli("bench", "codec", "--model", tiny_model_dir, "--size", "big", check=False)
    assert bad.returncode == 2 and "'big'" in bad.stderr
