"""Plumbing shared by the trainers (`testbed train codec|akb|scheduler`).

* default run folders (:func:`default_out`);
* command line: numeric options taken from a config dataclass's defaults, and the config built
  back from the parsed arguments with the command line that started the run (recorded in
  checkpoints and model cards);
* run folders: :func:`check_new_run` refuses to start a new run over one that can be resumed
  (unless ``--force``), :func:`truncate_log` drops the log rows a resumed run will write again;
* :func:`global_rng_state` / :func:`set_global_rng_state`: the process-wide RNGs (torch, CUDA,
  numpy) a checkpoint must carry for ``--resume`` to continue exactly.
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import os
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

# command-line switches that steer how a run starts, not what it trains: left out of the recorded command
RUN_CONTROL_FLAGS = ("--resume", "--force")
PRECISIONS = ("fp32", "bf16")          # training precisions (testbed.core.precision)


def default_out(name: str) -> Path:
    """A trainer's default run folder: ``$TESTBED_CACHE/NAME`` (default ``~/.cache/testbed/NAME``)."""
    return Path(os.environ.get("TESTBED_CACHE", Path.home() / ".cache" / "testbed")) / name


def add_number_options(p: argparse.ArgumentParser, defaults, ints: tuple[str, ...], floats: tuple[str, ...]) -> None:
    for names, tp in ((ints, int), (floats, float)):
        for name in names:
            p.add_argument("--" + name.replace("_", "-"), type=tp, default=getattr(defaults, name))


def add_run_options(p: argparse.ArgumentParser, checkpoint: str) -> None:
    """``--resume`` and ``--force`` (``checkpoint``: the run folder's checkpoint file name)."""
    p.add_argument("--resume", action="store_true", help=f"continue from OUT/{checkpoint}")
    p.add_argument("--force", action="store_true",
                   help=f"start a new run even though OUT holds one ({checkpoint}): its checkpoints, "
                        "results and logs are discarded")


def add_precision_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="bf16: bfloat16 autocast and channels-last, 1.4-1.6x faster on a CPU with "
                        "AVX512-BF16/AMX (see testbed/precision.py); default %(default)s")


def recorded_command(what: str, argv: list[str] | None = None) -> str:
    """``testbed train WHAT ...`` as started, without the run-control flags (--resume, --force)."""
    argv = sys.argv[1:] if argv is None else argv
    tail = argv[2:] if argv[:2] == ["train", what] else argv
    return " ".join(["testbed", "train", what] + [x for x in tail if x not in RUN_CONTROL_FLAGS])


def check_crop(crop: int) -> None:
    """Training crops are whole 16x16 blocks (the codec's stride)."""
    from .images import BLOCK_PIXELS

    if crop < BLOCK_PIXELS or crop % BLOCK_PIXELS:
        raise ValueError(f"--crop: must be a positive multiple of {BLOCK_PIXELS} (the codec's block size), got {crop}")


# every number option of the trainers: its range (inclusive; a float must also be finite). Checked
# before a run starts, so that NaN, infinities, huge values and wrong signs never reach a trainer
# (0 for an option at least 1 would divide by zero in the middle of a run, e.g. step % val_every).
BIG = 10 ** 9
INT_RANGES = {
    "steps": (1, BIG), "entropy_steps": (0, BIG), "batch": (1, 65536), "crop": (16, 8192), "mosaic": (1, 8),
    "seed": (0, 2 ** 32 - 1), "kb_entries": (1, 255), "kb_crops": (1, BIG), "ckpt_every": (1, BIG),
    "val_every": (1, BIG), "val_images": (1, 1_000_000), "threads": (0, 1024), "warmup": (0, BIG),
    "max_symbols": (1, 384), "timesteps": (1, BIG), "n_steps": (1, BIG), "batch_size": (1, BIG),
    "n_epochs": (1, 100_000), "episode_len": (1, 1_000_000), "hidden": (1, 65536), "eval_episodes": (1, 1_000_000),
}
FLOAT_RANGES = {   # learning rates > 0: 0 divides by zero in the AKB schedule
    "lr": (0.0, 10.0), "lr_entropy": (0.0, 10.0), "entropy_weight": (0.0, 1e6), "ent_coef": (0.0, 1e6),
    "gamma": (0.0, 1.0), "w_quality": (0.0, 1e6), "w_bandwidth": (0.0, 1e6), "max_minutes": (0.0, 1e7),
}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_options(values: dict) -> None:
    """The number options among ``values`` (a trainer's config fields or parsed arguments): each in
    its range of :data:`INT_RANGES` / :data:`FLOAT_RANGES` (the learning rates > 0), the
    probabilities (``p_*``) in [0, 1], ``ema`` (a decay; 0: off) in [0, 1); errors name the option."""
    from .checks import check_number

    for name, (lo, hi) in INT_RANGES.items():
        if name in values:
            check_number(_option(name), values[name], lo=lo, hi=hi, integer=True)
    for name, (lo, hi) in FLOAT_RANGES.items():
        if name in values:
            check_number(_option(name), values[name], lo=lo, hi=hi, lo_open=name.startswith("lr"))
    for name, v in values.items():      # probabilities (p_uniform, p_offsets, p_random, p_no_kb, ...)
        if name.startswith("p_") and isinstance(v, (int, float)):
            check_number(_option(name), v, lo=0.0, hi=1.0)
    if "ema" in values:   # a decay; 0: off
        check_number("--ema", values["ema"], lo=0.0, hi=1.0, hi_open=True)


def config_from_args(cls, a: argparse.Namespace, what: str):
    """``cls`` filled from ``a``; ``command`` = the ``testbed train WHAT ...`` line without --resume/--force."""
    fields = {k: getattr(a, k) for k in cls.__dataclass_fields__ if hasattr(a, k)}
    fields["command"] = recorded_command(what)
    if "crop" in fields:
        check_crop(fields["crop"])
    check_options(fields)
    return cls(**fields)


class RunExistsError(ValueError):
    """A new run was asked for in a folder that holds a resumable one (exit code 2 on the CLI)."""


def check_new_run(out: str | Path, checkpoint: str, resume: bool, force: bool, results: tuple[str, ...] = ()) -> None:
    """Guard a run folder before training starts.

    Without ``resume``, a folder holding ``checkpoint`` or any of the old run's ``results`` (e.g. a
    ``best.pt`` written before the run was killed, ahead of its first checkpoint) is refused
    (starting over would truncate its logs and overwrite its checkpoint and best model, or leave a
    stale best model that an export would take for the new run's) unless ``force``: then they are
    deleted first, so that neither a later ``--resume`` nor an export can pick up the old run's
    files as the new one's.
    """
    out = Path(out)
    ck = out / checkpoint
    if resume and ck.exists():
        return
    held = [out / n for n in (checkpoint, *results) if (out / n).exists()]
    if not held:
        return
    if resume:   # nothing to resume: a new run starts, and must not inherit the old results
        raise RunExistsError(
            f"--resume: {out} has no {checkpoint} to resume, but holds {', '.join(p.name for p in held)} "
            f"of an earlier run; pass --force (without --resume) to start over")
    if not force:
        raise RunExistsError(
            f"{out} already holds a training run ({', '.join(str(p) for p in held)}); pass --resume to "
            f"continue it, or --force to start over (discards its checkpoint, results and logs)")
    for p in held:
        p.unlink(missing_ok=True)
    log.warning("--force: starting a new run in %s; the previous run's checkpoint and results were deleted", out)


def truncate_log(path: str | Path, key: str, last: int) -> int:
    """Keep the rows of a CSV log (a :class:`testbed.core.runlog.CsvLog` file) whose ``key`` is at most
    ``last``; returns the number of rows dropped.

    A resumed run repeats the steps after its checkpoint, and with them the log rows they wrote
    before the run was stopped. A torn last line is dropped too. The file is replaced atomically
    (temporary file + ``os.replace``) and left untouched when nothing is dropped.
    """
    from .runlog import write_bytes_atomic

    p = Path(path)
    if not p.exists():
        return 0
    data = p.read_text()
    torn = bool(data) and not data.endswith("\n")
    if torn:
        data = data[: data.rfind("\n") + 1]
    rows = list(csv.reader(io.StringIO(data)))
    if not rows:
        if torn:
            write_bytes_atomic(p, b"")
        return 0
    header, body = rows[0], rows[1:]
    if key not in header:
        raise ValueError(f"{p}: no column {key!r} in the header {header}")
    col = header.index(key)

    def keep(row: list[str]) -> bool:
        try:
            return float(row[col]) <= last
        except (IndexError, ValueError):
            return True     # not a row this function understands: never drop data it cannot judge

    kept = [r for r in body if keep(r)]
    dropped = len(body) - len(kept)
    if dropped or torn:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([header, *kept])
        write_bytes_atomic(p, buf.getvalue().encode())
    if dropped:
        log.info("%s: dropped %d row(s) after %s %d (written again by the resumed run)", p, dropped, key, last)
    return dropped


def global_rng_state(device=None) -> dict:
    """The process-wide RNG states: torch (CPU and, on a CUDA device, CUDA) and numpy's legacy global.

    Checkpoint it with the trainer's own generators: layers that draw noise without a generator
    (e.g. the AKB hyperprior's training noise) draw from these.
    """
    import numpy as np
    import torch

    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
    if device is not None and getattr(device, "type", str(device)) == "cuda" and torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_global_rng_state(st: dict | None) -> bool:
    """Restore :func:`global_rng_state`; False (nothing restored) for ``None`` (an older checkpoint)."""
    import numpy as np
    import torch

    if not st:
        return False
    torch.set_rng_state(st["torch"].cpu() if hasattr(st["torch"], "cpu") else st["torch"])
    if st.get("numpy") is not None:
        np.random.set_state(st["numpy"])
    if st.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in st["cuda"]])
    return True


def elapsed_before(path: str | Path, column: str = "elapsed_s") -> float:
    """Training time already spent by the run a resumed run continues: the ``elapsed_s`` of the
    last row of its (already truncated) log, 0.0 when there is none. A resumed run counts on from
    there, so the log's ``elapsed_s`` is the run's total training time."""
    p = Path(path)
    if not p.exists():
        return 0.0
    rows = list(csv.reader(io.StringIO(p.read_text())))
    if len(rows) < 2 or column not in rows[0]:
        return 0.0
    col = rows[0].index(column)
    for row in reversed(rows[1:]):
        try:
            v = float(row[col])
        except (IndexError, ValueError):
            continue
        if math.isfinite(v) and v >= 0:
            return v
    return 0.0


def clock_start(log_path: str | Path, resumed: bool) -> float:
    """The ``time.time()`` a run's ``elapsed_s`` counts from: now for a new run; for a resumed
    one, now minus the training time its log already holds (:func:`elapsed_before`)."""
    return time.time() - (elapsed_before(log_path) if resumed else 0.0)
