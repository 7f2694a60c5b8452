"""Training of the JSCC codec: ``testbed train codec``.

Random crops and flips of the training images, SNR drawn uniformly from the trained range per
image, symbols per location drawn with emphasis on the operating points (so the symbol order is
importance-ordered), AWGN and/or flat Rayleigh block fading. Checkpoints are written atomically
and ``--resume`` continues exactly where a killed run stopped (model, optimiser, schedule, RNGs,
loss-spike guard): the resumed run ends with the weights of an uninterrupted one, and the log
rows written after the checkpoint are dropped before they are written again. A new run refuses a
folder that already holds a checkpoint unless ``--force`` (see :func:`trainargs.check_new_run`).

The loop, checkpoints and resume are :class:`testbed.core.trainer.Trainer`'s; :class:`CodecTrainer`
gives it the model (new, ``--init-from``, or a checkpoint's), the batch loss, the loss-spike guard
and the validation.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core import precision as prec
from ..core import trainargs
from ..core.crops import CropSampler, DeviceCropSampler
from ..core.metrics import psnr_from_mse
from ..core.trainer import Trainer, checkpoint_state, lr_at, save_checkpoint
from . import stream as st
from . import symbols as sym
from .channel import apply_channel
from .checkpoint import load_model, load_codec  # noqa: F401 (load_model: `testbed export`, tests)
from .arch_v2 import CodecConfigV2
from .model import JSCC, CodecConfig, arch_of, config_from_dict, count_parameters, grow, pad_to_stride
from .pca_init import init_linear_paths

log = logging.getLogger(__name__)

DEFAULT_OUT = trainargs.default_out("codec-v1")


@dataclass
class TrainConfig:
    data: str
    val: str | None = None
    out: str = str(DEFAULT_OUT)
    steps: int = 13000
    batch: int = 2
    crop: int = 256                  # 128-pixel crops overfit the codec to small images (see BENCHMARKS.md)
    mosaic: int = 1                  # m > 1: train on m x m canvases of crops (see CropSampler)
    lr: float = 2e-4
    lr_linear_scale: float = 0.1     # the PCA-initialised linear paths learn 10x slower
    clip_grad: float = 1.0
    lr_min: float = 1e-5
    warmup: int = 100
    seed: int = 0
    channel: str = "awgn"            # awgn | rayleigh | mixed
    snr_min_db: float = 0.0
    snr_max_db: float = 20.0
    operating_points: list[int] = field(default_factory=lambda: [16, 48])
    p_uniform_k: float = 0.15        # probability of a uniformly drawn k instead of an operating point
    max_symbols: int = 48
    res_blocks: list[int] | None = None  # residual blocks at 1/16 resolution (encoder, decoder); grows --init-from
    arch: str | None = None          # v1 | v2 for a new model (default v1); a start model's is kept
    max_minutes: float = 0.0         # wall-clock budget of the step loop (0: none; see core.trainer)
    data_on_device: str = "auto"     # auto | on | off: training images and crops on the training device
    ckpt_every: int = 100
    val_every: int = 500
    val_images: int = 12
    device: str = "auto"
    threads: int = 0
    init_from: str | None = None     # start from a shipped ONNX model folder or a checkpoint
    ema: float = 0.0                 # EMA decay of the weights used for validation/export (0: off)
    precision: str = "fp32"          # fp32 | bf16 (testbed.core.precision)
    command: str = ""                # the command line that started the run (for the model card)
    force: bool = False              # start over in an --out folder that holds a run (--force)


def _draw_k(rng: np.random.Generator, n: int, cfg: TrainConfig) -> torch.Tensor:
    ks = []
    for _ in range(n):
        if rng.random() < cfg.p_uniform_k:
            ks.append(int(rng.integers(1, cfg.max_symbols + 1)))
        else:
            ks.append(int(rng.choice(cfg.operating_points)))
    return torch.tensor(ks, dtype=torch.int64)


def _channel_fn(cfg: TrainConfig, rng: np.random.Generator, gen: torch.Generator):
    def fn(x, snr_db):
        ch = cfg.channel
        if ch == "mixed":
            ch = "rayleigh" if rng.random() < 0.5 else "awgn"
        return apply_channel(x, snr_db, ch, gen)

    return fn


@torch.no_grad()
def validate(model: JSCC, arrays: list[np.ndarray], snr_db: float, k: int, device, seed: int = 1234,
             channel: str = "awgn") -> float:
    """Mean PSNR (dB, on 8-bit rounded output) over ``arrays`` at one SNR and k."""
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    psnrs = []
    for a in arrays:
        x = torch.from_numpy(a).permute(2, 0, 1)[None].float().div(255.0).to(device)
        xp = pad_to_stride(x)
        snr = torch.tensor([snr_db], device=device)
        kk = torch.tensor([k], device=device)
        zc = model.encode(xp, snr, kk)
        rx, snr_rx = apply_channel(zc, snr, channel, gen)
        mask = st.symbols_mask(kk, model.cfg.max_symbols)[:, :, None, None, None]
        y = model.decode(rx * mask, snr_rx, kk)[..., : a.shape[0], : a.shape[1]]
        y = torch.round(y.clamp(0, 1) * 255) / 255
        mse = torch.mean((y - x) ** 2).item()
        psnrs.append(psnr_from_mse(mse))
    model.train()
    return float(np.mean(psnrs))


def _save_checkpoint(path, model, opt, step, cfg, rng, gen, best, ema=None, recent_loss=None) -> None:
    save_checkpoint(path, checkpoint_state(model, opt, step, cfg, rng, gen, best, ema, "codec_config",
                                           recent_loss=list(recent_loss or [])))


class CodecTrainer(Trainer):
    """`testbed train codec` on the shared loop (:class:`testbed.core.trainer.Trainer`)."""

    what, title, config_key = "codec", "model", "codec_config"
    train_columns = ["step", "loss_mse", "train_psnr_db", "lr", "elapsed_s", "images_per_s", "skipped"]
    val_columns = ["step", "snr_db", "symbols_per_location", "val_psnr_db"]
    count_parameters = staticmethod(count_parameters)

    def load_data(self) -> None:
        cfg = self.cfg
        self.train_arrays = self.read_images(cfg.data, "training")
        if cfg.val:
            self.val_arrays = self.read_images(cfg.val)
        self.on_device = cfg.data_on_device == "on" or (cfg.data_on_device == "auto" and self.device.type == "cuda")
        if self.on_device:
            self.sampler = DeviceCropSampler(self.train_arrays, cfg.crop, cfg.mosaic, self.device)
            log.info("training images on %s: %.1f MB", self.device, self.sampler.nbytes / 1e6)
        else:
            self.sampler = CropSampler(self.train_arrays, cfg.crop, cfg.mosaic)
        # the losses of the spike guard: the last 50 accepted ones before the last checkpoint
        # (checkpointed) and those accepted since
        self.recent_loss: list[float] = []
        self.run_loss: list[float] = []

    def build_model(self, ck: dict | None) -> JSCC:
        # a resumed run takes its architecture and weights from the checkpoint; --init-from only
        # seeds a new run (the model it names may be gone by the time the run is resumed)
        cfg, device = self.cfg, self.device
        if ck is not None:
            ck_cfg = config_from_dict(ck["codec_config"])
            if cfg.arch and cfg.arch != arch_of(ck_cfg):
                raise ValueError(f"--arch {cfg.arch}: the checkpoint {self.ckpt_path} is arch {arch_of(ck_cfg)}")
            if (ck_cfg.max_symbols, ck_cfg.snr_min_db, ck_cfg.snr_max_db) != (cfg.max_symbols, cfg.snr_min_db, cfg.snr_max_db):
                raise ValueError(
                    f"{self.ckpt_path}: checkpoint codec config {ck_cfg.to_dict()} does not match the requested "
                    f"max_symbols={cfg.max_symbols}, SNR range {cfg.snr_min_db:g}..{cfg.snr_max_db:g} dB")
            if cfg.res_blocks and list(cfg.res_blocks) != [getattr(ck_cfg, "enc_res_blocks", None),
                                                           getattr(ck_cfg, "dec_res_blocks", None)]:
                raise ValueError(f"--res-blocks {','.join(map(str, cfg.res_blocks))}: the checkpoint {self.ckpt_path} "
                                 f"has {getattr(ck_cfg, 'enc_res_blocks', '-')},{getattr(ck_cfg, 'dec_res_blocks', '-')} "
                                 f"(arch {arch_of(ck_cfg)})")
            model = JSCC(ck_cfg).to(device)
            if ck["codec_config"] != model.cfg.to_dict():
                raise ValueError(f"{self.ckpt_path}: checkpoint codec config {ck['codec_config']} does not match "
                                 f"requested {model.cfg.to_dict()}")
            return model
        if cfg.init_from:
            init = load_codec(cfg.init_from, map_location=device)
            if cfg.arch and cfg.arch != arch_of(init.cfg):
                raise ValueError(f"--arch {cfg.arch}: --init-from {cfg.init_from} is a codec of arch {arch_of(init.cfg)} "
                                 "(a run started from a model keeps its architecture)")
            if init.cfg.max_symbols != cfg.max_symbols:
                raise ValueError(f"{cfg.init_from}: has {init.cfg.max_symbols} symbols per block, "
                                 f"training asks for {cfg.max_symbols} (--max-symbols)")
            # the SNR range is the model's record of what it was trained on (not an input of its
            # layers): a run that fine-tunes over --snr-range records that range, so that its
            # checkpoint matches the run's configuration (and --resume accepts it)
            init.cfg = dataclasses.replace(init.cfg, snr_min_db=cfg.snr_min_db, snr_max_db=cfg.snr_max_db)
            if cfg.res_blocks:
                try:
                    init = grow(init, *cfg.res_blocks)
                except ValueError as e:
                    raise ValueError(f"--res-blocks with --init-from {cfg.init_from}: {e}") from None
            log.info("starting from the weights of %s", cfg.init_from)
            return init.to(device)
        if (cfg.arch or "v1") == "v2":
            if cfg.res_blocks:
                raise ValueError("--res-blocks: codec v1 only (--arch v2 sets its depths in its config)")
            mcfg = CodecConfigV2(max_symbols=cfg.max_symbols, snr_min_db=cfg.snr_min_db, snr_max_db=cfg.snr_max_db)
        else:
            enc_res, dec_res = cfg.res_blocks or (1, 1)
            mcfg = CodecConfig(max_symbols=cfg.max_symbols, enc_res_blocks=enc_res, dec_res_blocks=dec_res,
                               snr_min_db=cfg.snr_min_db, snr_max_db=cfg.snr_max_db)
        model = JSCC(mcfg).to(device)
        try:
            info = init_linear_paths(model, self.train_arrays, np.random.default_rng(cfg.seed + 1))
        except ValueError as e:
            raise ValueError(f"--data {cfg.data}: {e}") from None
        log.info("linear path initialised from PCA (energy kept %.4f)", info["energy_kept"])
        return model

    def make_optimizer(self) -> torch.optim.Optimizer:
        linear = [p for n, p in self.model.named_parameters() if ".linear." in n]
        deep = [p for n, p in self.model.named_parameters() if ".linear." not in n]
        return torch.optim.Adam([{"params": deep, "lr_scale": 1.0},
                                 {"params": linear, "lr_scale": self.cfg.lr_linear_scale}], lr=self.cfg.lr)

    def restore(self, ck: dict):
        self.recent_loss = list(ck.get("recent_loss", []))
        return super().restore(ck)

    def setup(self):
        global_rng = super().setup()
        self.chan = _channel_fn(self.cfg, self.rng, self.gen)
        return global_rng

    def set_lr(self, step: int) -> float:
        cfg = self.cfg
        lr = lr_at(step, cfg.lr, cfg.lr_min, cfg.warmup, cfg.steps, self.time_used())
        for g in self.opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        return lr

    def batch_loss(self, step: int):
        cfg, rng, device = self.cfg, self.rng, self.device
        x = self.sampler.sample(self.gen if self.on_device else rng, cfg.batch).to(device)
        snr = torch.from_numpy(rng.uniform(cfg.snr_min_db, cfg.snr_max_db, cfg.batch)).float().to(device)
        k = _draw_k(rng, cfg.batch, cfg).to(device)
        with prec.autocast(cfg.precision, device):
            y = self.model(prec.batch(x, cfg.precision), snr, k, self.chan)
        return torch.mean((y.float() - x) ** 2), None

    def skip_reason(self, loss: float) -> str | None:
        # the last 50 accepted losses, across checkpoints (run_loss restarts at each one)
        recent = (self.recent_loss + self.run_loss)[-50:]
        if not math.isfinite(loss) or (len(recent) >= 10 and loss > 20 * float(np.median(recent))):
            return "loss %.4g skipped (recent median %.4g)" % (loss, float(np.median(recent)) if recent else float("nan"))
        return None

    def on_accepted(self, loss: float, aux) -> None:
        self.run_loss.append(loss)

    def postfix(self, lr: float) -> dict:
        return {"psnr": f"{psnr_from_mse(np.mean(self.run_loss[-50:])):.2f}", "lr": f"{lr:.1e}"}

    def run_validation(self, model: JSCC) -> list[float]:
        vals = []
        for k_val in sorted(set(self.cfg.operating_points)):
            v = validate(model, self.val_arrays[: self.cfg.val_images], 10.0, k_val, self.device)
            vals.append(v)
            self.vlog.append({"step": self.step, "snr_db": 10.0, "symbols_per_location": k_val, "val_psnr_db": v})
            self.bar.write(f"step {self.step}: val PSNR {v:.2f} dB (SNR 10 dB, k={k_val})", file=sys.stderr)
        return vals

    def log_row(self, lr: float, elapsed: float, now: float) -> dict:
        m = float(np.mean(self.run_loss)) if self.run_loss else float("nan")
        return {"step": self.step, "loss_mse": m, "train_psnr_db": psnr_from_mse(m) if self.run_loss else None,
                "lr": lr, "elapsed_s": elapsed, "images_per_s": self.interval_images / max(1e-9, now - self.interval_start),
                "skipped": self.skipped}

    def end_interval(self) -> None:
        self.recent_loss = (self.recent_loss + self.run_loss)[-50:]
        self.run_loss = []

    def write_checkpoint(self, path) -> None:   # through _save_checkpoint (tests stand in for it to kill a run)
        _save_checkpoint(path, self.model, self.opt, self.step, self.cfg, self.rng, self.gen, self.best, self.ema,
                         self.recent_loss)

    def final_metrics(self) -> dict:
        final = {"step": self.step, "parameters": count_parameters(self.model)}
        if self.val_arrays:
            res = []
            for k_val in sorted(set(self.cfg.operating_points)):
                for snr_db in (0.0, 10.0, 20.0):
                    v = validate(self.eval_model(), self.val_arrays, snr_db, k_val, self.device)
                    res.append({"snr_db": snr_db, "symbols_per_location": k_val,
                                "cbr": k_val / (sym.STRIDE * sym.STRIDE * 3), "val_psnr_db": v})
                    log.info("final val: SNR %.0f dB, k=%d: %.2f dB", snr_db, k_val, v)
            final["validation"] = res
            final["val_images"] = len(self.val_arrays)
        return final


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    return CodecTrainer(cfg, resume).run()


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig(data="")
    p.add_argument("--data", required=True, help="folder of training images")
    p.add_argument("--val", help="folder of validation images")
    p.add_argument("--out", default=d.out, help="run folder for checkpoints and logs (default: %(default)s)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--crop", type=int, default=d.crop)
    p.add_argument("--mosaic", type=int, default=d.mosaic,
                   help="train on M x M canvases of independent crops (side M*crop), so that most pixels lie far "
                        "from a border, as in large images (default %(default)s: single crops)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--channel", choices=["awgn", "rayleigh", "mixed"], default=d.channel)
    p.add_argument("--snr-range", default=f"{d.snr_min_db:g},{d.snr_max_db:g}", help="MIN,MAX in dB")
    p.add_argument("--operating-points", default="16,48",
                   help="symbols per 16x16 block to emphasise (16 -> CBR 1/48, 48 -> CBR 1/16)")
    p.add_argument("--max-symbols", type=int, default=d.max_symbols, help="S, complex symbols per 16x16 block")
    p.add_argument("--arch", choices=["v1", "v2"],
                   help="architecture of a new model (default v1; v2: testbed.codec.arch_v2, about half v1's CPU "
                        "cost); a run started from --init-from or a checkpoint keeps that model's")
    p.add_argument("--max-minutes", type=float, default=d.max_minutes,
                   help="wall-clock budget of the training loop in minutes: the run ends at --steps or when it is "
                        "spent, with the learning rate annealed by the budget (0: none)")
    p.add_argument("--data-on-device", choices=["auto", "on", "off"], default=d.data_on_device,
                   help="hold the training images on the training device and draw the crops there "
                        "(auto: on CUDA)")
    p.add_argument("--res-blocks", help="ENC,DEC: residual blocks at 1/16 resolution in encoder and decoder "
                                        "(default 1,1); with --init-from, the model is grown to this many, the "
                                        "added blocks starting as identities")
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every)
    p.add_argument("--val-every", type=int, default=d.val_every)
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    trainargs.add_run_options(p, "checkpoint.pt")
    p.add_argument("--init-from", help="start from these weights: a model folder (e.g. models/jscc-v1) or a checkpoint")
    p.add_argument("--ema", type=float, default=d.ema,
                   help="EMA decay of the weights validated and exported (e.g. 0.999; 0: off)")
    p.add_argument("--warmup", type=int, default=d.warmup, help="linear learning-rate warm-up steps")
    trainargs.add_precision_argument(p)


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    try:
        lo, hi = (float(v) for v in a.snr_range.split(","))
    except ValueError:
        raise ValueError(f"--snr-range: expected MIN,MAX in dB, got {a.snr_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"--snr-range: MIN must be below MAX (finite dB values), got {a.snr_range!r}")
    s_cap = sym.STRIDE * sym.STRIDE * 3 // 2   # a 16x16 RGB block has 768 real values: 384 complex symbols
    if not 1 <= a.max_symbols <= s_cap:
        raise ValueError(f"--max-symbols: must be in 1..{s_cap} (a 16x16 RGB block holds {2 * s_cap} real "
                         f"values), got {a.max_symbols}")
    try:
        ops = [int(v) for v in a.operating_points.split(",")]
    except ValueError:
        raise ValueError(f"--operating-points: expected integers, got {a.operating_points!r}") from None
    for o in ops:
        if not 1 <= o <= a.max_symbols:
            raise ValueError(f"--operating-points: {o} is outside 1..{a.max_symbols} (--max-symbols)")
    res_blocks = None
    if a.res_blocks is not None:
        try:
            res_blocks = [int(v) for v in a.res_blocks.split(",")]
        except ValueError:
            res_blocks = []
        if len(res_blocks) != 2 or not all(1 <= v <= 8 for v in res_blocks):
            raise ValueError(f"--res-blocks: expected ENC,DEC, each 1..8, got {a.res_blocks!r}")
    trainargs.check_crop(a.crop)
    if not 1 <= a.mosaic <= 8:
        raise ValueError(f"--mosaic: must be in 1..8 (crops per canvas side), got {a.mosaic}")
    if a.arch == "v2" and res_blocks:
        raise ValueError("--res-blocks: codec v1 only (--arch v2 sets its depths in its config)")
    trainargs.check_options(vars(a))
    return TrainConfig(
        data=a.data, val=a.val, out=a.out, steps=a.steps, batch=a.batch, crop=a.crop, mosaic=a.mosaic, lr=a.lr,
        seed=a.seed, channel=a.channel, snr_min_db=lo, snr_max_db=hi, operating_points=ops,
        max_symbols=a.max_symbols, res_blocks=res_blocks, arch=a.arch, max_minutes=a.max_minutes,
        data_on_device=a.data_on_device, ckpt_every=a.ckpt_every,
        val_every=a.val_every, device=a.device, threads=a.threads, init_from=a.init_from, ema=a.ema,
        warmup=a.warmup, force=a.force, precision=a.precision,
        command=trainargs.recorded_command("codec"),
    )
