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


class CliResult:
    """What :func:`run_cli` returns: the fields of :class:`subprocess.CompletedProcess` that the
    tests read, plus ``exception`` (an exception that escaped ``main``, else None)."""

    def __init__(self, args, returncode, stdout, stderr, exception=None):
        self.args, self.returncode, self.stdout, self.stderr = args, returncode, stdout, stderr
        self.exception = exception

    def __repr__(self):
        return f"CliResult(args={self.args!r}, returncode={self.returncode!r})"


class _CliTimeout(BaseException):
    """Raised by SIGALRM when an in-process CLI call runs past its ``timeout`` (a BaseException:
    ``main`` turns TimeoutError into exit code 2)."""


# The warning filters a fresh interpreter starts with (pytest adds its own; a CLI run in-process
# sees the same warnings as one in its own process, each call as if the first).
_STARTUP_WARNING_FILTERS = (("default", DeprecationWarning, "__main__"), ("ignore", DeprecationWarning, ""),
                            ("ignore", PendingDeprecationWarning, ""), ("ignore", ImportWarning, ""),
                            ("ignore", ResourceWarning, ""))


def run_cli(*args, check=True, cwd=None, env=None, input=None, timeout=900):
    """Run ``testbed ARGS`` in this process through :func:`testbed.cli.main.main`, as the installed
    entry point would; returns a :class:`CliResult` (``returncode``, ``stdout``, ``stderr``).

    stdout and stderr (logging included) are captured; SystemExit (argparse errors, ``--help``)
    becomes the return code, an exception that escapes ``main`` a traceback on stderr and code 1,
    as in a real process. ``cwd``, ``env`` (the whole environment, as for subprocess), ``input``
    (stdin text) and ``timeout`` (seconds, then :class:`subprocess.TimeoutExpired`) are applied
    for the call only. Everything the call changes in the process is put back afterwards: the
    working folder, environment, ``sys.argv``/``sys.stdin``, logging handlers and levels, warning
    filters, SIGINT/SIGTERM handlers, torch's thread count and the global random states. Tests
    about the entry point itself (a real process) use :func:`run_entry_point`."""
    import io
    import logging
    import os
    import random
    import signal
    import subprocess
    import threading
    import traceback
    import warnings
    from contextlib import redirect_stderr, redirect_stdout

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    if "torch" not in sys.modules and any(a.split("=")[0] == "--threads" for a in argv):
        import torch  # noqa: F401  (loaded first, so that its thread count can be put back)
    torch = sys.modules.get("torch")
    main_thread = threading.current_thread() is threading.main_thread()

    saved_cwd, saved_env, saved_argv, saved_stdin = os.getcwd(), dict(os.environ), sys.argv, sys.stdin
    root = logging.getLogger()
    saved_level = root.level
    loggers = [root, *(lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    saved_handlers = {id(lg): lg.handlers[:] for lg in loggers}   # loggers live as long as the process
    saved_capture = getattr(logging, "_warnings_showwarning", None)
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    saved_rng = (random.getstate(), np.random.get_state(),
                 (torch.get_num_threads(), torch.random.get_rng_state()) if torch is not None else None)

    def on_alarm(*_):
        raise _CliTimeout()

    code, exc = 0, None
    try:
        if cwd is not None:
            os.chdir(cwd)
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        sys.argv = [str(Path(sys.executable).parent / "testbed"), *argv]
        sys.stdin = io.StringIO(input or "")
        for h in root.handlers[:]:       # main() installs its own (basicConfig(force=True)): keep pytest's
            root.removeHandler(h)
        logging._warnings_showwarning = None
        if timeout and main_thread:
            saved_signals[signal.SIGALRM] = signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout)
        with warnings.catch_warnings(), redirect_stdout(out), redirect_stderr(err):
            warnings.resetwarnings()
            for action, category, module in reversed(_STARTUP_WARNING_FILTERS):
                warnings.filterwarnings(action, category=category, module=module)
            try:
                from testbed.cli.main import main

                code = main(argv)
            except SystemExit as e:
                if e.code is None or isinstance(e.code, int):
                    code = e.code
                else:
                    print(e.code, file=sys.stderr)
                    code = 1
            except _CliTimeout:
                raise
            except Exception as e:   # what an uncaught exception does to a real process
                exc = e
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                logging.captureWarnings(False)
    except _CliTimeout:
        raise subprocess.TimeoutExpired(["testbed", *argv], timeout, out.getvalue(), err.getvalue()) from None
    finally:
        if timeout and main_thread:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for s, h in saved_signals.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        logging._warnings_showwarning = saved_capture
        for lg in [root, *logging.Logger.manager.loggerDict.values()]:
            if not isinstance(lg, logging.Logger):
                continue
            keep = saved_handlers.get(id(lg), [])
            for h in lg.handlers[:]:   # new root handlers (main's), and any writing to the captured streams
                if h not in keep and (lg is root or getattr(h, "stream", None) in (out, err)):
                    lg.removeHandler(h)
                    h.close()
            for h in keep:
                if h not in lg.handlers:
                    lg.addHandler(h)
        root.setLevel(saved_level)
        random.setstate(saved_rng[0])
        np.random.set_state(saved_rng[1])
        if saved_rng[2] is not None:
            torch.set_num_threads(saved_rng[2][0])
            torch.random.set_rng_state(saved_rng[2][1])
        sys.argv, sys.stdin = saved_argv, saved_stdin
        if dict(os.environ) != saved_env:
            os.environ.clear()
            os.environ.update(saved_env)
        os.chdir(saved_cwd)

    p = CliResult(["testbed", *argv], 0 if code is None else code, out.getvalue(), err.getvalue(), exc)
    if check and p.returncode != 0:
        raise AssertionError(f"testbed {' '.join(argv)} exited {p.returncode}\n{p.stderr[-3000:]}") from exc
    return p


def run_entry_point(*args, check=True, **kw):
    """Run the installed ``testbed`` executable in a subprocess (for tests about the entry point
    itself: a fresh process, its exit code, signals); returns CompletedProcess."""
    import subprocess

    exe = Path(sys.executable).parent / "testbed"
    kw.setdefault("timeout", 900)
    p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, **kw)
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


def assert_card_refused(card_path: Path, tmp_path: Path, mutate, needle: str) -> None:
    """The card at ``card_path``, changed by ``mutate(dict)``, is refused naming its file and ``needle``."""
    import pytest
    import yaml

    from testbed.zoo import ModelCardError, load_card

    d = yaml.safe_load(Path(card_path).read_text())
    mutate(d)
    p = tmp_path / "model_card.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(ModelCardError) as e:
        load_card(p)
    assert str(p) in str(e.value) and needle in str(e.value)


def perturbed(model, seed: int = 0, scale: float = 0.02):
    """``model`` (eval mode) with every parameter perturbed, as after training: zero-started layers
    take part, and no two parameters are equal (the ONNX exporter merges equal initialisers)."""
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model.eval()
