"""`testbed train scheduler`'s options and config, apart from the trainer (:mod:`.scheduler`), so that
the CLI parser is built without gymnasium and stable-baselines3 (a GPU machine's image lacks them)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from ...core import trainargs
from ...core.trainargs import add_number_options

SCHED_OUT = trainargs.default_out("scheduler-v1")


@dataclass
class SchedulerTrainConfig:
    akb: str
    data: str
    val: str | None = None
    out: str = str(SCHED_OUT)
    timesteps: int = 20000
    n_steps: int = 256
    batch_size: int = 64
    n_epochs: int = 10
    lr: float = 3e-4
    ent_coef: float = 0.01
    gamma: float = 0.9
    episode_len: int = 4
    w_quality: float = 1.0
    w_bandwidth: float = 1.0
    hidden: int = 64
    ckpt_every: int = 2048
    eval_episodes: int = 16
    seed: int = 0
    threads: int = 0
    command: str = ""
    force: bool = False              # start over in an --out folder that holds a run (--force)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = SchedulerTrainConfig(akb="", data="")
    p.add_argument("--akb", required=True, help="AKB codec checkpoint (from `testbed train akb`)")
    p.add_argument("--data", required=True, help="folder of training images")
    p.add_argument("--val", help="folder of images for the final evaluation")
    p.add_argument("--out", default=d.out, help="run folder (default: %(default)s)")
    add_number_options(p, d, ("timesteps", "n_steps", "batch_size", "n_epochs", "episode_len", "hidden", "ckpt_every",
                       "eval_episodes", "seed", "threads"),
                       ("lr", "ent_coef", "gamma", "w_quality", "w_bandwidth"))
    trainargs.add_run_options(p, "ppo_checkpoint.zip")


def config_from_args(a: argparse.Namespace) -> SchedulerTrainConfig:
    return trainargs.config_from_args(SchedulerTrainConfig, a, "scheduler")
