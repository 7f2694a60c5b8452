"""Helpers shared by the tests (plain functions and paths; fixtures live in conftest.py files)."""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "jscc-v1"
SAMPLES = REPO / "samples"
KODAK = REPO.parent / "shared" / "data" / "kodak"


def write_png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A natural-ish test image: smooth gradients plus mild texture (compresses like a photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([
        128 + 90 * np.sin(x / 23.0 + seed) * np.cos(y / 31.0),
        128 + 80 * np.cos((x + y) / 40.0),
        110 + 60 * np.sin(y / 17.0 - seed),
    ], axis=-1)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def run_cli(*args, check=True, **kw):
    """Run the installed `testbed` CLI in a subprocess; returns CompletedProcess."""
    import subprocess

    exe = Path(sys.executable).parent / "testbed"
    p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=900, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"testbed {' '.join(map(str, args))} exited {p.returncode}\n{p.stderr[-3000:]}")
    return p


def assert_same(a, b, where="checkpoint"):
    """Equal nested checkpoint contents; tensors and arrays bit for bit."""
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def load_checkpoint(path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def nan_gradient_at(monkeypatch, call: int) -> None:
    """Make the ``call``-th ``clip_grad_norm_`` of a training run see a NaN gradient (a finite
    loss with a non-finite gradient, which the trainers must skip)."""
    import torch

    real = torch.nn.utils.clip_grad_norm_
    calls = {"n": 0}

    def clip(params, *a, **k):
        params = [p for p in params if p.grad is not None]
        calls["n"] += 1
        if calls["n"] == call:
            params[0].grad.view(-1)[0] = float("nan")
        return real(params, *a, **k)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)


def shift_logged_elapsed(path, seconds: float) -> None:
    """Add ``seconds`` to every ``elapsed_s`` of a training log (a run that has trained long), so
    that a resumed run whose clock restarted at 0 would show in its rows."""
    lines = Path(path).read_text().splitlines()
    col = lines[0].split(",").index("elapsed_s")
    rows = [r.split(",") for r in lines[1:]]
    for r in rows:
        r[col] = str(float(r[col]) + seconds)
    Path(path).write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n")
