"""Training of the JSCC codec: ``testbed train codec``.

Random crops and flips of the training images, SNR drawn uniformly from the trained range per
image, symbols per location drawn with emphasis on the operating points (so the symbol order is
importance-ordered), AWGN and/or flat Rayleigh block fading. Checkpoints are written atomically
and ``--resume`` continues exactly where a killed run stopped (model, optimiser, schedule, RNGs,
loss-spike guard): the resumed run ends with the weights of an uninterrupted one, and the log
rows written after the checkpoint are dropped before they are written again. A new run refuses a
folder that already holds a checkpoint unless ``--force`` (see :func:`trainargs.check_new_run`).
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..core import images as imgio
from ..core import precision as prec
from ..core import trainargs
from ..core.runlog import CsvLog, write_bytes_atomic, write_json_atomic
from . import stream as st
from . import symbols as sym
from .channel import apply_channel
from .model import JSCC, CodecConfig, count_parameters, grow, pad_to_stride
from .pca_init import init_linear_paths

log = logging.getLogger(__name__)

DEFAULT_OUT = Path(os.environ.get("TESTBED_CACHE", Path.home() / ".cache" / "testbed")) / "codec-v1"


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


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class CropSampler:
    """Random crops + horizontal/vertical flips from images held in memory as uint8.

    ``mosaic`` m > 1: each sample is an m x m canvas of independent crops (side ``m * crop``).
    In a single crop every pixel lies within crop/2 of a border, and the codec learns to count
    on that (zero padding tells a convolution where the border is): on whole Kodak images, whose
    middle lies 256 pixels from any border, it is worse than when the same image is coded in
    256-pixel tiles (BENCHMARKS.md, "Stage 4"). A canvas puts most of its pixels far from a border
    while every crop still comes from one training image."""

    def __init__(self, arrays: list[np.ndarray], crop: int, mosaic: int = 1):
        self.arrays = arrays
        self.crop = crop
        self.mosaic = int(mosaic)

    def sample(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        c, m = self.crop, self.mosaic
        if m > 1:
            tiles = self._crops(rng, n * m * m)               # [n*m*m, c, c, 3]
            canvas = tiles.reshape(n, m, m, c, c, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, m * c, m * c, 3)
            return torch.from_numpy(np.ascontiguousarray(canvas)).permute(0, 3, 1, 2).float().div_(255.0)
        return torch.from_numpy(self._crops(rng, n)).permute(0, 3, 1, 2).float().div_(255.0)

    def _crops(self, rng: np.random.Generator, n: int) -> np.ndarray:
        out = np.empty((n, self.crop, self.crop, 3), dtype=np.uint8)
        c = self.crop
        for i in range(n):
            a = self.arrays[rng.integers(len(self.arrays))]
            h, w = a.shape[:2]
            if h < c or w < c:
                a = np.pad(a, ((0, max(0, c - h)), (0, max(0, c - w)), (0, 0)), mode="reflect")
                h, w = a.shape[:2]
            y = rng.integers(h - c + 1)
            x = rng.integers(w - c + 1)
            p = a[y : y + c, x : x + c]
            if rng.random() < 0.5:
                p = p[:, ::-1]
            if rng.random() < 0.5:
                p = p[::-1]
            out[i] = p
        return out


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * min(1.0, t)))


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


def psnr_from_mse(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-12))


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


def _initial_model(cfg: TrainConfig, device) -> JSCC | None:
    """The model named by ``cfg.init_from`` (ONNX model folder or checkpoint), or None."""
    if not cfg.init_from:
        return None
    p = Path(cfg.init_from)
    if p.is_file():
        try:
            return load_model(p, map_location=device)
        except Exception as e:  # e.g. an AKB checkpoint, or not a checkpoint at all
            raise ValueError(f"--init-from {p}: not a codec v1 checkpoint of `testbed train codec` "
                             f"({type(e).__name__}: {e})") from None
    from .onnx_weights import load_from_onnx
    from .runtime import resolve_model_dir

    return load_from_onnx(resolve_model_dir(cfg.init_from))


def _save_checkpoint(path: Path, model, opt, step, cfg, rng, gen, best, ema: Ema | None = None,
                     recent_loss: list[float] | None = None):
    buf = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "ema": ema.state if ema is not None else None,
            "codec_config": model.cfg.to_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "train_config": asdict(cfg),
            "np_rng": rng.bit_generator.state,
            "torch_gen": gen.get_state(),
            "py_rng": random.getstate(),
            "global_rng": trainargs.global_rng_state(gen.device),
            "recent_loss": list(recent_loss or []),
            "best_val": best,
        },
        buf,
    )
    write_bytes_atomic(path, buf.getvalue())


def load_model(path: str | Path, map_location="cpu", weights: str = "auto") -> JSCC:
    """Model of a checkpoint; ``weights`` = "ema" | "raw" | "auto" (EMA when the run kept one)."""
    ck = torch.load(path, map_location=map_location, weights_only=False)
    model = JSCC(CodecConfig.from_dict(ck["codec_config"]))
    use_ema = weights == "ema" or (weights == "auto" and ck.get("ema") is not None)
    if use_ema and ck.get("ema") is None:
        raise ValueError(f"{path}: this checkpoint has no EMA weights")
    model.load_state_dict(ck["ema"] if use_ema else ck["model"])
    model.eval()
    return model


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    out = Path(cfg.out)
    ckpt_path = out / "checkpoint.pt"
    trainargs.check_new_run(out, ckpt_path.name, resume, cfg.force, results=("best.pt", "final_metrics.json"))
    out.mkdir(parents=True, exist_ok=True)

    files = imgio.list_images(cfg.data)
    log.info("loading %d training images from %s", len(files), cfg.data)
    train_arrays = [imgio.load_rgb(f) for f in files]
    val_arrays: list[np.ndarray] = []
    if cfg.val:
        vfiles = imgio.list_images(cfg.val)
        val_arrays = [imgio.load_rgb(f) for f in vfiles]

    # seeded before any model is built: --seed fixes a new run's initial weights
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    # a resumed run takes its architecture and weights from the checkpoint; --init-from only
    # seeds a new run (the model it names may be gone by the time the run is resumed)
    resuming = resume and ckpt_path.exists()
    init = None if resuming else _initial_model(cfg, device)
    if resuming:
        ck_cfg = CodecConfig.from_dict(torch.load(ckpt_path, map_location="cpu", weights_only=False)["codec_config"])
        if (ck_cfg.max_symbols, ck_cfg.snr_min_db, ck_cfg.snr_max_db) != (cfg.max_symbols, cfg.snr_min_db, cfg.snr_max_db):
            raise ValueError(
                f"{ckpt_path}: checkpoint codec config {ck_cfg.to_dict()} does not match the requested "
                f"max_symbols={cfg.max_symbols}, SNR range {cfg.snr_min_db:g}..{cfg.snr_max_db:g} dB")
        if cfg.res_blocks and list(cfg.res_blocks) != [ck_cfg.enc_res_blocks, ck_cfg.dec_res_blocks]:
            raise ValueError(f"--res-blocks {','.join(map(str, cfg.res_blocks))}: the checkpoint {ckpt_path} has "
                             f"{ck_cfg.enc_res_blocks},{ck_cfg.dec_res_blocks}")
        model = JSCC(ck_cfg).to(device)
    elif init is not None:
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
        model = init.to(device)
    else:
        enc_res, dec_res = cfg.res_blocks or (1, 1)
        model = JSCC(CodecConfig(max_symbols=cfg.max_symbols, enc_res_blocks=enc_res, dec_res_blocks=dec_res,
                                 snr_min_db=cfg.snr_min_db, snr_max_db=cfg.snr_max_db)).to(device)
    prec.check_precision(cfg.precision, device)
    model = prec.prepare(model, cfg.precision)
    linear = [p for n, p in model.named_parameters() if ".linear." in n]
    deep = [p for n, p in model.named_parameters() if ".linear." not in n]
    opt = torch.optim.Adam([{"params": deep, "lr_scale": 1.0},
                            {"params": linear, "lr_scale": cfg.lr_linear_scale}], lr=cfg.lr)
    step = 0
    best = -1.0
    recent_loss: list[float] = []
    global_rng = None
    if resuming:
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ck["codec_config"] != model.cfg.to_dict():
            raise ValueError(
                f"{ckpt_path}: checkpoint codec config {ck['codec_config']} does not match "
                f"requested {model.cfg.to_dict()}"
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        ema_state = ck.get("ema")
        step = ck["step"]
        rng.bit_generator.state = ck["np_rng"]
        gen.set_state(ck["torch_gen"])
        random.setstate(ck["py_rng"])
        global_rng = ck.get("global_rng")
        recent_loss = list(ck.get("recent_loss", []))
        best = ck.get("best_val", -1.0)
        log.info("resumed from %s at step %d", ckpt_path, step)
    else:
        ema_state = None
        if resume:
            log.warning("--resume given but %s does not exist; starting from scratch", ckpt_path)
        if init is None:
            try:
                info = init_linear_paths(model, train_arrays, np.random.default_rng(cfg.seed + 1))
            except ValueError as e:
                raise ValueError(f"--data {cfg.data}: {e}") from None
            log.info("linear path initialised from PCA (energy kept %.4f)", info["energy_kept"])
        else:
            log.info("starting from the weights of %s", cfg.init_from)
    ema = Ema(model, cfg.ema) if cfg.ema > 0 else None
    if ema is not None and ema_state is not None:
        ema.state = {k: v.to(device) for k, v in ema_state.items()}
    # the model validated and saved as best.pt: the EMA weights when kept
    eval_model = JSCC(model.cfg).to(device) if ema is not None else model

    def _eval_model() -> JSCC:
        if ema is not None:
            eval_model.load_state_dict(ema.state)
        return eval_model

    write_json_atomic(out / "train_config.json", asdict(cfg))
    if step > 0:  # resumed: the steps after the checkpoint run again and log again
        for name in ("train_log.csv", "val_log.csv"):
            trainargs.truncate_log(out / name, "step", step)
    tlog = CsvLog(out / "train_log.csv",
                  ["step", "loss_mse", "train_psnr_db", "lr", "elapsed_s", "images_per_s", "skipped"],
                  resume=resume and step > 0)
    vlog = CsvLog(out / "val_log.csv", ["step", "snr_db", "symbols_per_location", "val_psnr_db"],
                  resume=resume and step > 0)
    sampler = CropSampler(train_arrays, cfg.crop, cfg.mosaic)
    chan = _channel_fn(cfg, rng, gen)
    log.info("model: %d parameters, device %s, %d threads, precision %s", count_parameters(model), device,
             torch.get_num_threads(), cfg.precision)

    model.train()
    # last, after everything that builds modules: the process-wide RNGs as they were at the checkpoint
    trainargs.set_global_rng_state(global_rng)
    t0 = trainargs.clock_start(out / "train_log.csv", resume and step > 0)
    t_last, n_last = time.time(), 0
    run_loss: list[float] = []
    skipped = 0
    bar = tqdm(total=cfg.steps, initial=step, desc="train codec", unit="step", dynamic_ncols=True)
    try:
        while step < cfg.steps:
            lr = _lr_at(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr * g["lr_scale"]
            x = sampler.sample(rng, cfg.batch).to(device)
            snr = torch.from_numpy(rng.uniform(cfg.snr_min_db, cfg.snr_max_db, cfg.batch)).float().to(device)
            k = _draw_k(rng, cfg.batch, cfg).to(device)
            with prec.autocast(cfg.precision, device):
                y = model(prec.batch(x, cfg.precision), snr, k, chan)
            loss = torch.mean((y.float() - x) ** 2)
            opt.zero_grad(set_to_none=True)
            lv = loss.item()
            # the last 50 accepted losses, across checkpoints (run_loss restarts at each one)
            recent = (recent_loss + run_loss)[-50:]
            if not math.isfinite(lv) or (len(recent) >= 10 and lv > 20 * float(np.median(recent))):
                skipped += 1  # a loss spike: do not let one bad batch wreck the model
                log.warning("step %d: loss %.4g skipped (recent median %.4g)", step, lv,
                            float(np.median(recent)) if recent else float("nan"))
            else:
                loss.backward()
                gn = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                if not math.isfinite(float(gn)):  # a finite loss with a NaN/inf gradient: skipped too
                    skipped += 1
                    log.warning("step %d: non-finite gradient norm skipped (loss %.4g)", step, lv)
                else:
                    opt.step()
                    if ema is not None:
                        ema.update(model)
                    run_loss.append(lv)
            step += 1
            n_last += cfg.batch
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(psnr=f"{psnr_from_mse(np.mean(run_loss[-50:])):.2f}", lr=f"{lr:.1e}")
            # validation before the checkpoint of the same step, so that the checkpoint carries its best
            if val_arrays and (step % cfg.val_every == 0 or step == cfg.steps):
                sub = val_arrays[: cfg.val_images]
                vals = []
                for k_val in sorted(set(cfg.operating_points)):
                    v = validate(_eval_model(), sub, 10.0, k_val, device)
                    vals.append(v)
                    vlog.append({"step": step, "snr_db": 10.0, "symbols_per_location": k_val, "val_psnr_db": v})
                    bar.write(f"step {step}: val PSNR {v:.2f} dB (SNR 10 dB, k={k_val})", file=sys.stderr)
                if float(np.mean(vals)) > best:
                    best = float(np.mean(vals))
                    _save_checkpoint(out / "best.pt", model, opt, step, cfg, rng, gen, best, ema, recent_loss)
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                now = time.time()
                m = float(np.mean(run_loss)) if run_loss else float("nan")
                tlog.append({"step": step, "loss_mse": m, "train_psnr_db": psnr_from_mse(m) if run_loss else None,
                             "lr": lr, "elapsed_s": round(now - t0, 1),
                             "images_per_s": n_last / max(1e-9, now - t_last), "skipped": skipped})
                recent_loss = (recent_loss + run_loss)[-50:]
                run_loss, t_last, n_last, skipped = [], now, 0, 0
                _save_checkpoint(ckpt_path, model, opt, step, cfg, rng, gen, best, ema, recent_loss)
    finally:
        bar.close()
        tlog.close()
        vlog.close()

    final = {"step": step, "parameters": count_parameters(model)}
    if val_arrays:
        res = []
        for k_val in sorted(set(cfg.operating_points)):
            for snr_db in (0.0, 10.0, 20.0):
                v = validate(_eval_model(), val_arrays, snr_db, k_val, device)
                res.append({"snr_db": snr_db, "symbols_per_location": k_val,
                            "cbr": k_val / (sym.STRIDE * sym.STRIDE * 3), "val_psnr_db": v})
                log.info("final val: SNR %.0f dB, k=%d: %.2f dB", snr_db, k_val, v)
        final["validation"] = res
        final["val_images"] = len(val_arrays)
    write_json_atomic(out / "final_metrics.json", final)
    return final


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
    trainargs.check_options(vars(a))
    return TrainConfig(
        data=a.data, val=a.val, out=a.out, steps=a.steps, batch=a.batch, crop=a.crop, mosaic=a.mosaic, lr=a.lr,
        seed=a.seed, channel=a.channel, snr_min_db=lo, snr_max_db=hi, operating_points=ops,
        max_symbols=a.max_symbols, res_blocks=res_blocks, ckpt_every=a.ckpt_every,
        val_every=a.val_every, device=a.device, threads=a.threads, init_from=a.init_from, ema=a.ema,
        warmup=a.warmup, force=a.force, precision=a.precision,
        command=trainargs.recorded_command("codec"),
    )
