"""`testbed compare`: runs of a learned and a digital codec side by side, the report rendered in
headless Chromium (installed by ./scripts/setup.sh --tests, which ./scripts/test.sh runs)."""
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from tests.helpers import SAMPLES, run_cli, write_png


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from testbed.core.images import load_rgb

    d = tmp_path_factory.mktemp("compare")
    imgs = d / "imgs"
    imgs.mkdir()
    write_png(imgs / "crop.png", np.ascontiguousarray(load_rgb(SAMPLES / "kodim23.png")[:256, :384]))
    for name, extra in (("jscc", ["--model", "jscc-v1"]), ("j2k", ["--model", "jpeg2000-ldpc", "--mcs", "qpsk-1/2"])):
        run_cli("eval", *extra, "--data", imgs, "--snr-db", "0,4,12", "--no-separation", "--out", d / name, "--json")
    return d


def _chromium_dom(html_file, tmp_path) -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is missing: ./scripts/setup.sh --tests installs it (./scripts/test.sh does that)"
    p = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--disable-default-apps", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                        "--virtual-time-budget=5000", "--dump-dom", html_file.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def test_compare_writes_plot_grid_and_a_report_the_browser_renders(runs, tmp_path):
    out = tmp_path / "report"
    res = json.loads(run_cli("compare", runs / "jscc", runs / "j2k", "--out", out, "--json").stdout)
    for f in ("compare.html", "compare_psnr.png", "compare_grid.png", "compare.json"):
        assert (out / f).stat().st_size > 1000, f
    assert res["image"] == "crop.png" and res["grid_snrs_db"] == [0.0, 4.0, 12.0]
    labels = [r["label"] for r in res["runs"]]
    assert labels == ["jscc-v1, CBR 0.0625, eval", "jpeg2000-ldpc qpsk-1/2, CBR 0.0625, eval"]
    for run, name in zip(res["runs"], ("jscc", "j2k")):
        summary = json.loads((runs / name / "summary.json").read_text())
        assert [x["psnr_db"] for x in run["results"]] == [x["psnr_db"] for x in summary["results"]]
        # the grid re-creates the very images the eval rows scored
        for g, x in zip(run["grid"], summary["results"]):
            assert g["psnr_db"] == pytest.approx(x["psnr_db"], abs=1e-4)
    dom = _chromium_dom(out / "compare.html", tmp_path)
    assert 'data-images-loaded="2/2"' in dom                         # both pictures decoded
    cells = re.findall(r'<tr data-run="([^"]+)"><th>[^<]*</th>(.*?)</tr>', dom)
    assert len(cells) == 2
    for (run_dir, row), name in zip(cells, ("jscc", "j2k")):
        shown = [float(v) for v in re.findall(r'class="psnr" data-snr="[^"]+">([0-9.]+)<', row)]
        summary = json.loads((runs / name / "summary.json").read_text())
        assert shown == [round(x["psnr_db"], 2) for x in summary["results"]]
    # a picture that does not decode is seen as such
    broken = tmp_path / "broken.html"
    text = (out / "compare.html").read_text()
    i = text.index("base64,") + len("base64,")
    broken.write_text(text[:i] + "AAAA" + text[i + 4000:])
    assert 'data-images-loaded="1/2"' in _chromium_dom(broken, tmp_path)


def test_compare_refuses_what_is_not_a_run(runs, tmp_path):
    p = run_cli("compare", tmp_path, "--out", tmp_path / "x", check=False)
    assert p.returncode == 2 and "summary.json" in p.stderr
    fake = tmp_path / "ota"
    fake.mkdir()
    (fake / "summary.json").write_text('{"model": "jscc-v1", "results": []}')
    p = run_cli("compare", fake, "--out", tmp_path / "y", check=False)
    assert p.returncode == 2 and "takes runs of testbed eval and testbed loopback" in p.stderr
    p = run_cli("compare", runs / "jscc", "--image", "nope.png", "--out", tmp_path / "z", check=False)
    assert p.returncode == 2 and "--image 'nope.png'" in p.stderr


@pytest.mark.slow
def test_compare_takes_loopback_sweeps_of_a_learned_and_a_digital_codec(runs, tmp_path):
    """One loopback sweep of each kind through the OFDM flowgraph (subprocesses: GNU Radio keeps an
    in-process flowgraph's shared memory until the process ends), compared and rendered."""
    from tests.helpers import run_entry_point

    for name, extra in (("lb-jscc", ["--model", "jscc-v1"]), ("lb-j2k", ["--model", "jpeg2000-ldpc", "--mcs", "auto"])):
        run_entry_point("loopback", *extra, "--images", runs / "imgs", "--snr-db", "4,12", "--no-ms-ssim",
                        "--out", tmp_path / name, "--json")
    out = tmp_path / "report"
    res = json.loads(run_cli("compare", tmp_path / "lb-jscc", tmp_path / "lb-j2k", "--out", out, "--json").stdout)
    for f in ("compare.html", "compare_psnr.png", "compare_grid.png", "compare.json"):
        assert (out / f).stat().st_size > 1000, f
    assert [r["label"] for r in res["runs"]] == ["jscc-v1, CBR 0.0625, loopback",
                                                 "jpeg2000-ldpc auto, CBR 0.0625, loopback"]
    dom = _chromium_dom(out / "compare.html", tmp_path)
    assert 'data-images-loaded="2/2"' in dom
    cells = re.findall(r'<tr data-run="([^"]+)"><th>[^<]*</th>(.*?)</tr>', dom)
    for (run_dir, row), name in zip(cells, ("lb-jscc", "lb-j2k")):
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        shown = [float(v) for v in re.findall(r'class="psnr" data-snr="[^"]+">([0-9.]+)<', row)]
        assert len(shown) == 2 and shown == [round(x["psnr_db"], 2) for x in summary["results"]]
