"""The trainers' skeleton: run set-up, step loop, validation, checkpoints, resume, final metrics.

:class:`Trainer` is the loop `testbed train codec` and `testbed train akb` share (in the manner
of stable-baselines3's ``OnPolicyAlgorithm``: the skeleton drives, a subclass says what one step
computes). :meth:`Trainer.run`:

1. set-up (:func:`start_run`): ``--threads``, the run folder (a new run refuses one holding a run
   unless ``--force``, :func:`testbed.core.trainargs.check_new_run`), the data (hook
   :meth:`~Trainer.load_data`), the seeds (numpy generator, torch generator, Python and torch
   process RNGs: ``--seed`` fixes a new run's initial weights), the model (hook
   :meth:`~Trainer.build_model`, from the checkpoint when resuming), ``--precision``
   (:mod:`testbed.core.precision`), the optimiser (hook :meth:`~Trainer.make_optimizer`), the
   EMA of the weights and, on resume, every state the checkpoint carries;
2. ``train_config.json`` and the CSV logs (:func:`open_logs`: a resumed run first drops the rows
   written after its checkpoint, :func:`prepare_logs`);
3. the step loop: learning rate (hook :meth:`~Trainer.set_lr`, e.g. :func:`lr_at`), the loss of
   one batch (hook :meth:`~Trainer.batch_loss`) under autocast, a batch whose loss the subclass
   rejects (hook :meth:`~Trainer.skip_reason`; by default a non-finite one) or whose gradient
   norm is not finite is skipped, else the gradient step (clipped at ``clip_grad``) and the EMA
   update; validation (hook :meth:`~Trainer.run_validation`) before the checkpoint of the same
   step, ``best.pt`` when it beats the best so far, and every ``ckpt_every`` steps (and at the
   last) a ``train_log.csv`` row (hook :meth:`~Trainer.log_row`) and ``checkpoint.pt``;
4. ``final_metrics.json`` (hook :meth:`~Trainer.final_metrics`) and ``weights_fp16.pt``: the
   validated weights (EMA when kept) in float16 with the configs, without the optimiser (what a
   GPU run sends back; ``--init-from`` and ``testbed export`` take it like a checkpoint).

``--max-minutes`` (config ``max_minutes``) is a wall-clock budget for the step loop: the run
ends at ``steps`` or when the budget is spent, whichever comes first, with the validation,
log row and checkpoint of a last step; :meth:`Trainer.time_used` lets the learning-rate
schedule anneal by the budget (:func:`lr_at`).

Checkpoints are written atomically (:func:`save_checkpoint`) and carry the model, EMA, optimiser,
step, training config, best validation score and every RNG the run draws from
(:func:`checkpoint_state`, plus the hook :meth:`~Trainer.checkpoint_extras`), so that ``--resume``
ends with the weights of an uninterrupted run. The process-wide RNGs are restored last, right
before the loop, after everything that builds modules (their initialisation draws from them).
"""
from __future__ import annotations

import io
import logging
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from . import images as imgio
from . import precision as prec
from . import trainargs
from .runlog import CsvLog, write_bytes_atomic, write_json_atomic

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
FINAL = "final_metrics.json"
WEIGHTS = "weights_fp16.pt"
TRAIN_LOG = "train_log.csv"
VAL_LOG = "val_log.csv"


def pick_device(name: str) -> torch.device:
    """``--device``: auto (CUDA when present, else CPU), cpu, cuda."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_at(step: int, lr: float, lr_min: float, warmup: int, steps: int, time_used: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` steps, then a cosine from ``lr`` down to ``lr_min`` at ``steps``,
    or earlier: ``time_used`` is the fraction of a wall-clock budget spent (``--max-minutes``), and
    the cosine follows whichever of the two is further along, so that a run that ends on time
    ends annealed."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = max((step - warmup) / max(1, steps - warmup), time_used)
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * min(1.0, t)))


class Ema:
    """Exponential moving average of a model's parameters and buffers."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)
            else:
                self.state[k].copy_(v)


def save_atomic(path: str | Path, write: Callable[[io.BytesIO], Any]) -> None:
    """``write(buffer)``, then the buffer to ``path`` atomically (a kill leaves the old file or the new one)."""
    buf = io.BytesIO()
    write(buf)
    write_bytes_atomic(path, buf.getvalue())


def save_checkpoint(path: str | Path, state: dict) -> None:
    save_atomic(path, lambda f: torch.save(state, f))


def checkpoint_state(model, opt, step: int, cfg, rng: np.random.Generator, gen: torch.Generator, best: float,
                     ema: Ema | None, config_key: str, **extras) -> dict:
    """What a checkpoint carries: weights (raw and EMA), the model's config under ``config_key``,
    optimiser, step, training config, every RNG, the best validation score, and ``extras``."""
    return {"model": model.state_dict(), "ema": ema.state if ema is not None else None,
            config_key: model.cfg.to_dict(), "optimizer": opt.state_dict(), "step": step,
            "train_config": asdict(cfg), "np_rng": rng.bit_generator.state, "torch_gen": gen.get_state(),
            "py_rng": random.getstate(), "global_rng": trainargs.global_rng_state(gen.device),
            "best_val": best, **extras}


def start_run(cfg, checkpoint: str, resume: bool, results: tuple[str, ...]) -> tuple[Path, Path, bool]:
    """``--threads``, then the run folder checked (:func:`trainargs.check_new_run`) and made:
    (folder, checkpoint path, whether the run resumes from it)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    ckpt = out / checkpoint
    trainargs.check_new_run(out, checkpoint, resume, cfg.force, results=results)
    out.mkdir(parents=True, exist_ok=True)
    return out, ckpt, resume and ckpt.exists()


def prepare_logs(out: Path, cfg, names, key: str, last: int, resuming: bool) -> None:
    """``train_config.json``; a resumed run then drops the rows of the CSV logs ``names`` whose
    ``key`` is past ``last`` (the checkpoint's): the steps after the checkpoint run again and log
    again, appended to the logs (``CsvLog(..., resume=True)``)."""
    write_json_atomic(out / "train_config.json", asdict(cfg))
    if resuming:
        for name in names:
            trainargs.truncate_log(out / name, key, last)


def open_logs(out: Path, cfg, logs: dict[str, list[str]], key: str, last: int, resuming: bool) -> list[CsvLog]:
    """:func:`prepare_logs`, then one :class:`CsvLog` per ``logs`` entry (file name: columns)."""
    prepare_logs(out, cfg, logs, key, last, resuming)
    return [CsvLog(out / name, columns, resume=resuming) for name, columns in logs.items()]


class Trainer:
    """The training loop of a model (see the module docstring); a subclass provides the hooks.

    Attributes for the hooks: ``cfg``, ``device``, ``out``, ``rng`` (numpy), ``gen`` (torch),
    ``model``, ``opt``, ``ema``, ``step``, ``best``, ``val_arrays`` (set by :meth:`load_data`;
    no validation when empty), ``bar`` (the progress bar), ``tlog``/``vlog`` (the CSV logs),
    ``skipped`` (batches skipped since the last log row), ``interval_start`` and
    ``interval_images`` (wall-clock time and images since the last log row). The config needs
    ``out, force, threads, device, seed, precision, ema, clip_grad, val_every, ckpt_every, batch``.
    """

    what = ""                       # `testbed train WHAT` (the progress bar's label)
    title = "model"                 # the start-up log line's name of the model
    config_key = ""                 # the checkpoint key of the model's config
    train_columns: list[str] = []
    val_columns: list[str] = []
    val_after = 0                   # validation starts after this many steps (and counts from there)

    def __init__(self, cfg, resume: bool = False):
        self.cfg, self.resume = cfg, resume
        self.log = logging.getLogger(type(self).__module__)
        self.val_arrays: list[np.ndarray] = []
        self.skipped, self.interval_images = 0, 0
        self.loop_start: float | None = None
        self.out_of_time = False

    # -- hooks -------------------------------------------------------------------------------------------------
    def load_data(self) -> None:
        """Load the training (and validation) images; runs before the seeds are set."""

    def build_model(self, ck: dict | None) -> torch.nn.Module:
        """The model on ``self.device``: a new one (``ck`` None), or the architecture of checkpoint ``ck``
        (its weights are loaded afterwards)."""
        raise NotImplementedError

    def make_optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError

    def total_steps(self) -> int:
        return self.cfg.steps

    def count_parameters(self, model: torch.nn.Module) -> int:
        raise NotImplementedError

    def set_lr(self, step: int) -> float:
        """Set the optimiser's learning rates for ``step``; returns the one to log."""
        raise NotImplementedError

    def batch_loss(self, step: int) -> tuple[torch.Tensor, Any]:
        """Draw a batch and compute its loss: (loss, what :meth:`on_accepted` keeps of it)."""
        raise NotImplementedError

    def skip_reason(self, loss: float) -> str | None:
        """Why this batch's loss must not be applied (logged), or None."""
        return None if math.isfinite(loss) else "non-finite loss skipped"

    def on_accepted(self, loss: float, aux: Any) -> None:
        """A gradient step was taken on a batch (running statistics for the log)."""

    def postfix(self, lr: float) -> dict:
        """The progress bar's figures (every 20 steps)."""
        return {}

    def run_validation(self, model: torch.nn.Module) -> list[float]:
        """Validate ``model`` (the EMA weights when kept), write the ``val_log.csv`` rows; the scores
        (their mean decides ``best.pt``)."""
        raise NotImplementedError

    def log_row(self, lr: float, elapsed: float, now: float) -> dict:
        """The ``train_log.csv`` row at a checkpoint (``elapsed``: the run's training time)."""
        raise NotImplementedError

    def end_interval(self) -> None:
        """After a log row: reset the running statistics (before the checkpoint is written)."""

    def checkpoint_extras(self) -> dict:
        return {}

    def write_checkpoint(self, path: Path) -> None:
        save_checkpoint(path, self.state())

    def final_metrics(self) -> dict:
        raise NotImplementedError

    # -- the skeleton ------------------------------------------------------------------------------------------
    def read_images(self, folder: str, name: str | None = None) -> list[np.ndarray]:
        """Every image of ``folder`` as uint8 RGB (for :meth:`load_data`); ``name``: log their number."""
        files = imgio.list_images(folder)
        if name:
            self.log.info("loading %d %s images from %s", len(files), name, folder)
        return [imgio.load_rgb(f) for f in files]

    def time_used(self) -> float:
        """Fraction of ``--max-minutes`` spent by this process's step loop (0 without a budget)."""
        budget = float(getattr(self.cfg, "max_minutes", 0.0) or 0.0)
        if budget <= 0 or self.loop_start is None:
            return 0.0
        return (time.time() - self.loop_start) / (60.0 * budget)

    def weights_state(self) -> dict:
        """:meth:`state` without the optimiser, with the validated weights (EMA when kept) in float16."""
        st = self.state()
        st.pop("optimizer", None)
        st["model"] = {k: (v.detach().to("cpu", torch.float16) if v.dtype.is_floating_point else v.detach().cpu())
                       for k, v in self.eval_model().state_dict().items()}
        st["ema"] = None
        st["weights"] = "ema" if self.ema is not None else "raw"
        st["dtype"] = "float16"
        return st

    def state(self) -> dict:
        return checkpoint_state(self.model, self.opt, self.step, self.cfg, self.rng, self.gen, self.best,
                                self.ema, self.config_key, **self.checkpoint_extras())

    def eval_model(self) -> torch.nn.Module:
        """The model validated and saved as best: the EMA weights when kept."""
        if self.ema is not None:
            self._eval.load_state_dict(self.ema.state)
        return self._eval

    def restore(self, ck: dict):
        """Load checkpoint ``ck`` into the run; returns its process-wide RNG states (restored last)."""
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        if self.ema is not None and ck.get("ema") is not None:
            self.ema.state = {k: v.to(self.device) for k, v in ck["ema"].items()}
        self.step, self.best = ck["step"], ck.get("best_val", -1.0)
        self.rng.bit_generator.state = ck["np_rng"]
        self.gen.set_state(ck["torch_gen"])
        random.setstate(ck["py_rng"])
        self.log.info("resumed from %s at step %d", self.ckpt_path, self.step)
        return ck.get("global_rng")

    def setup(self):
        """Everything before the loop; returns the process-wide RNG states to restore (None: a new run)."""
        cfg = self.cfg
        self.device = pick_device(cfg.device)
        self.out, self.ckpt_path, self.resuming = start_run(cfg, CHECKPOINT, self.resume, (BEST, FINAL))
        self.load_data()
        self.rng = np.random.default_rng(cfg.seed)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)     # before any model is built: --seed fixes a new run's initial weights
        ck = torch.load(self.ckpt_path, map_location=self.device, weights_only=False) if self.resuming else None
        if ck is None and self.resume:
            self.log.warning("--resume given but %s does not exist; starting a new run", self.ckpt_path)
        self.model = self.build_model(ck)
        prec.check_precision(cfg.precision, self.device)
        self.model = prec.prepare(self.model, cfg.precision)
        self.opt = self.make_optimizer()
        self.ema = Ema(self.model, cfg.ema) if cfg.ema > 0 else None
        self.step, self.best = 0, -1.0
        global_rng = self.restore(ck) if ck is not None else None
        self._eval = type(self.model)(self.model.cfg).to(self.device) if self.ema is not None else self.model
        self.tlog, self.vlog = open_logs(self.out, cfg, {TRAIN_LOG: self.train_columns, VAL_LOG: self.val_columns},
                                         "step", self.step, self.resuming)
        self.log.info("%s: %d parameters, device %s, %d threads, precision %s", self.title,
                      self.count_parameters(self.model), self.device, torch.get_num_threads(), cfg.precision)
        return global_rng

    def run(self) -> dict:
        global_rng = self.setup()
        total = self.total_steps()
        self.model.train()
        # last, after everything that builds modules: the process-wide RNGs as they were at the checkpoint
        trainargs.set_global_rng_state(global_rng)
        t0 = trainargs.clock_start(self.out / TRAIN_LOG, self.resuming)
        self.interval_start = time.time()
        self.bar = tqdm(total=total, initial=self.step, desc=f"train {self.what}", unit="step", dynamic_ncols=True)
        self.loop_start = time.time()
        try:
            while self.step < total and not self.out_of_time:
                self.train_step(total, t0)
        finally:
            self.bar.close()
            self.tlog.close()
            self.vlog.close()
        if self.out_of_time:
            self.log.info("--max-minutes %g reached at step %d of %d", self.cfg.max_minutes, self.step, total)
        final = self.final_metrics()
        final["stopped"] = "max_minutes" if self.out_of_time else "steps"
        save_atomic(self.out / WEIGHTS, lambda f: torch.save(self.weights_state(), f))
        write_json_atomic(self.out / FINAL, final)
        return final

    def train_step(self, total: int, t0: float) -> None:
        """One step: the gradient step (or a skipped batch), then validation and checkpoint when due."""
        cfg, step = self.cfg, self.step
        lr = self.set_lr(step)
        loss, aux = self.batch_loss(step)
        self.opt.zero_grad(set_to_none=True)
        lv = loss.item()
        reason = self.skip_reason(lv)
        if reason is not None:          # e.g. a loss spike: do not let one bad batch wreck the model
            self.skipped += 1
            self.log.warning("step %d: %s", step, reason)
        else:
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
            if not math.isfinite(float(gn)):  # a finite loss with a NaN/inf gradient: skipped too
                self.skipped += 1
                self.log.warning("step %d: non-finite gradient norm skipped (loss %.4g)", step, lv)
            else:
                self.opt.step()
                if self.ema is not None:
                    self.ema.update(self.model)
                self.on_accepted(lv, aux)
        self.step = step = step + 1
        self.out_of_time = self.time_used() >= 1.0
        last = step == total or self.out_of_time
        self.interval_images += cfg.batch
        self.bar.update(1)
        if step % 20 == 0:
            self.bar.set_postfix(self.postfix(lr))
        # validation before the checkpoint of the same step, so that the checkpoint carries its best;
        # always at the last step (the final weights are validated)
        n = step - self.val_after
        if self.val_arrays and n > 0 and (n % cfg.val_every == 0 or last):
            vals = self.run_validation(self.eval_model())
            if float(np.mean(vals)) > self.best:
                self.best = float(np.mean(vals))
                self.write_checkpoint(self.out / BEST)
        if step % cfg.ckpt_every == 0 or last:
            now = time.time()
            self.tlog.append(self.log_row(lr, round(now - t0, 1), now))
            self.end_interval()
            self.skipped, self.interval_images, self.interval_start = 0, 0, now
            self.write_checkpoint(self.ckpt_path)
