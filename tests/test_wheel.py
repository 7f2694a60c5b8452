"""The package as a user installs it: `pip wheel .` holds every module and the shipped data, and
the installed wheel runs `testbed doctor` and `testbed demo` outside the checkout."""
import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO

PKG = REPO / "testbed"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy of the sources: a stale build/ folder in the checkout would leak into the wheel
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(PKG, src / "testbed", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # no build isolation: setuptools and wheel come from the venv (the tests run without a network)
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(out)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    (whl,) = out.glob("*.whl")
    return whl


def _source_files() -> set[str]:
    """What a wheel must carry: every module, the GRC block definitions, the shipped data."""
    files = set()
    for f in PKG.rglob("*"):
        rel = f.relative_to(REPO)
        if not f.is_file() or "__pycache__" in rel.parts or f.suffix == ".pyc":
            continue
        if f.suffix == ".py" or f.name == "py.typed" or f.suffix == ".yml" or rel.parts[1] == "data":
            files.add(rel.as_posix())
    return files


@pytest.mark.slow
def test_wheel_holds_every_module_and_the_shipped_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_source_files() - names)
    assert not missing, f"{wheel.name} lacks {missing}"
    for must in ("testbed/akb/__init__.py", "testbed/py.typed", "testbed/data/models/jscc-v1/model_card.yaml",
                 "testbed/data/models/akb-v1/kb.npz", "testbed/data/samples/kodim23.png"):
        assert must in names
    extra = sorted(n for n in names if n.startswith("testbed/") and n not in _source_files())
    assert not extra, f"{wheel.name} holds files the source tree does not: {extra}"


@pytest.mark.slow
def test_installed_wheel_runs_doctor_and_demo_outside_the_checkout(wheel, tmp_path):
    """A fresh venv (system site packages, for GNU Radio) with the wheel; its Python dependencies
    are the test venv's, seen through a .pth file, so nothing is downloaded."""
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    own_site = subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"], check=True,
                              capture_output=True, text=True).stdout.strip()
    deps = [p for p in site.getsitepackages() if p.startswith(sys.prefix)]
    Path(own_site, "testbed-deps.pth").write_text("\n".join(deps) + "\n")
    p = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("TESTBED_MODELS", "TESTBED_SAMPLES", "PYTHONPATH")}

    def run(*args):
        return subprocess.run([str(venv / "bin" / "testbed"), *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600)

    where = subprocess.run([str(py), "-c", "import testbed; print(testbed.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(venv)), f"testbed imported from {where}, not from the installed wheel"
    doc = run("doctor", "--json")
    assert doc.returncode in (0, 1), doc.stderr[-3000:]     # 1: something optional is missing (e.g. no radio)
    json.loads(doc.stdout)
    demo = run("demo", "--snr-db", "10", "--out", "demo-run", "--json")
    assert demo.returncode == 0, demo.stderr[-3000:]
    runs = sorted((work / "demo-run").glob("*/summary.json"))
    assert len(runs) == 2, runs                  # one run per CBR
    for s in runs:
        summary = json.loads(s.read_text())
        assert summary["model"] == "jscc-v1" and summary["n_images"] == 3
        assert str(venv) in summary["images"]     # the samples came from the installed package
        assert summary["results"][0]["frames_decoded"] == summary["results"][0]["frames_sent"] > 0
