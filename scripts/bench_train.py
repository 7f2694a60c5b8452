"""Training speed of `testbed train codec` and `testbed train akb` in fp32 and bf16 (BENCHMARKS.md,
"Training speed"). Runs the real trainers for a few checkpoint intervals on ../shared/data/train
(batch 2, 256x256 crops, the shipped defaults) and prints a markdown table of steps per second.

    .venv/bin/python scripts/bench_train.py [--data ../shared/data/train] [--steps 100] [--threads 2] [--json out.json]

The first interval (warm-up) is left out; the figure is the median over the others. Run it on
otherwise idle cores.
"""
import argparse
import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from testbed.core.runlog import read_csv_rows

ap = argparse.ArgumentParser()
ap.add_argument("--data", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "train"))
ap.add_argument("--steps", type=int, default=100, help="steps per run (5 checkpoint intervals)")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--json")
a = ap.parse_args()
logging.basicConfig(level=logging.WARNING)
every = max(1, a.steps // 5)


def steps_per_s(rows) -> float:
    """Median steps/s over the checkpoint intervals after the first."""
    st = np.array([int(r["step"]) for r in rows], float)
    el = np.array([float(r["elapsed_s"]) for r in rows], float)
    rates = np.diff(st) / np.maximum(np.diff(el), 1e-9)
    return float(np.median(rates))


def run_codec(precision: str, out: Path) -> float:
    from testbed.codec.train import TrainConfig, train

    train(TrainConfig(data=a.data, out=str(out), steps=a.steps, ckpt_every=every, threads=a.threads,
                      precision=precision, init_from="jscc-v1", ema=0.998))
    return steps_per_s(read_csv_rows(out / "train_log.csv"))


def run_akb(precision: str, out: Path) -> float:
    from testbed.akb.train import AkbTrainConfig, train

    train(AkbTrainConfig(data=a.data, out=str(out), steps=a.steps, entropy_steps=0, kb_crops=64, kb_entries=8,
                         ckpt_every=every, threads=a.threads, precision=precision))
    return steps_per_s(read_csv_rows(out / "train_log.csv"))


res = {}
with tempfile.TemporaryDirectory() as tmp:
    for what, fn in (("codec", run_codec), ("akb", run_akb)):
        for p in ("fp32", "bf16"):
            res[f"{what}/{p}"] = fn(p, Path(tmp) / f"{what}-{p}")
print(f"\n| trainer (batch 2, 256x256 crops, {a.threads} threads) | fp32 steps/s | bf16 steps/s | speed-up |")
print("|---|---:|---:|---:|")
for what in ("codec", "akb"):
    f, b = res[f"{what}/fp32"], res[f"{what}/bf16"]
    print(f"| `testbed train {what}` | {f:.2f} | {b:.2f} | {b / f:.2f}x |")
if a.json:
    Path(a.json).write_text(json.dumps(res, indent=2))
