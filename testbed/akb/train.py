"""Training of the AKB codec: ``testbed train akb``.

Starts from codec v1 (``--init-from``, default the shipped ``jscc-v1``):

1. the source KB: the default embedder (v1's trunk on a thumbnail) gets its PCA projection from
   training crops, and k-means over the crops' embeddings gives the KB entries;
2. the hyperprior's quantisation step is calibrated, then the hyperprior alone is trained for
   ``--entropy-steps`` steps (encoder frozen);
3. joint training: per crop a random SNR, a random target CBR (0.015..0.08, emphasis on the
   benchmark points), the retrieved KB vector (zero with probability ``--p-no-kb``: the ``--no-skb``
   ablation) and a rate map: the entropy-preset map, with random per-block level offsets (what
   the channel KB may do, up to ``--offset-spread`` levels), uniform (the fixed-rate baseline),
   or, with probability ``--p-random``, i.i.d. random levels (so that the top rates get trained).
   Loss: MSE of the reconstruction plus the hyperprior's rate term (whose gradient stops at the
   latent). ``--precision bf16`` runs the forward passes in bfloat16 (:mod:`testbed.core.precision`).

Checkpoints are atomic; ``--resume`` continues a killed run exactly: the checkpoint carries every
RNG the training draws from, including the process-wide torch RNG of the hyperprior's training
noise (restored right before the training loop), and the log rows written after the checkpoint
are dropped before they are written again. A new run refuses a folder that already holds a
checkpoint unless ``--force`` (see :func:`testbed.core.trainargs.check_new_run`).
"""
from __future__ import annotations

import argparse
import io
import logging
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..core import images as imgio
from ..codec.channel import apply_channel
from ..codec.train import DEFAULT_OUT, CropSampler, Ema, _device, _lr_at, psnr_from_mse
from ..core import precision as prec
from ..core import trainargs
from ..core.trainargs import add_number_options
from ..core.runlog import CsvLog, write_bytes_atomic, write_json_atomic
from . import ratemap as rm
from .model import AkbConfig, AkbJSCC, count_parameters, from_v1
from .source_kb.embedder import ImageEmbedder
from .source_kb.kb import KbError, KnowledgeBase, kmeans

log = logging.getLogger(__name__)

AKB_OUT = DEFAULT_OUT.parent / "akb-v1"
BENCH_CBRS = (0.021, 0.036, 0.0625)


@dataclass
class AkbTrainConfig:
    data: str
    val: str | None = None
    out: str = str(AKB_OUT)
    init_from: str = "jscc-v1"
    steps: int = 16000
    entropy_steps: int = 400
    batch: int = 2
    crop: int = 256
    lr: float = 1e-4
    lr_entropy: float = 1e-3
    lr_min: float = 1e-5
    warmup: int = 200
    clip_grad: float = 1.0
    seed: int = 0
    snr_min_db: float = 0.0
    snr_max_db: float = 20.0
    cbr_min: float = 0.015
    cbr_max: float = 0.08
    p_bench_cbr: float = 0.6
    p_uniform: float = 0.2
    p_offsets: float = 0.5
    offset_spread: int = 1           # random per-block level offsets in -spread..+spread
    p_random: float = 0.0            # probability of an i.i.d. random level per block (every level, any budget)
    p_no_kb: float = 0.2
    kb_entries: int = 64
    kb_crops: int = 2400
    entropy_weight: float = 1e-3
    ema: float = 0.998
    ckpt_every: int = 100
    val_every: int = 500
    val_images: int = 12
    device: str = "auto"
    threads: int = 0
    precision: str = "fp32"          # fp32 | bf16 (testbed.core.precision)
    command: str = ""
    force: bool = False              # start over in an --out folder that holds a run (--force)


def _load_v1(name: str):
    p = Path(name)
    if p.is_file():
        from ..codec.train import load_model

        try:
            return load_model(p)
        except Exception as e:  # e.g. an AKB checkpoint, or not a checkpoint at all
            raise ValueError(f"--init-from {p}: not a codec v1 checkpoint of `testbed train codec` "
                             f"({type(e).__name__}: {e})") from None
    from ..codec.onnx_weights import load_from_onnx
    from ..core.codecs import resolve_model_dir

    return load_from_onnx(resolve_model_dir(name))


@torch.no_grad()
def build_source_kb(v1, sampler: CropSampler, cfg: AkbTrainConfig, rng: np.random.Generator):
    """Embedder (PCA fitted on training crops) and KB (k-means of their embeddings)."""
    emb = ImageEmbedder.from_v1(v1)
    pooled = []
    for i in range(0, cfg.kb_crops, 32):
        x = sampler.sample(rng, min(32, cfg.kb_crops - i))
        img = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
        pooled.append(emb.pooled(img))
    pooled = torch.cat(pooled)
    try:
        kept = emb.fit_projection(pooled)
        vecs = ((pooled - emb.mean) @ emb.proj).numpy()
        cent = kmeans(vecs, cfg.kb_entries, rng)
    except KbError as e:
        raise KbError(f"--kb-crops {cfg.kb_crops}, --kb-entries {cfg.kb_entries}: {e}") from None
    kb = KnowledgeBase(cent, "image-embedder", {"entries": cfg.kb_entries, "crops": cfg.kb_crops,
                                                "crop": cfg.crop, "data": cfg.data, "pca_variance_kept": kept})
    log.info("source KB: %d entries from %d crops (PCA keeps %.3f of the variance), sha256 %s",
             len(kb), cfg.kb_crops, kept, kb.sha256[:12])
    return emb, kb


def _kb_vectors(emb: ImageEmbedder, kb: KnowledgeBase, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        img = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
        e = emb(img).numpy()
    return torch.from_numpy(np.stack([kb.lookup(v)[1] for v in e])).to(x.device)


def _draw_cbr(rng: np.random.Generator, cfg: AkbTrainConfig) -> float:
    if rng.random() < cfg.p_bench_cbr:
        return float(rng.choice(BENCH_CBRS))
    return float(rng.uniform(cfg.cbr_min, cfg.cbr_max))


OFFSET_PROBS = {1: [0.2, 0.6, 0.2], 2: [0.1, 0.15, 0.5, 0.15, 0.1], 3: [0.05, 0.1, 0.15, 0.4, 0.15, 0.1, 0.05]}


def _draw_levels(bits: np.ndarray, cbr: float, height: int, width: int, rng, cfg) -> np.ndarray:
    """The rate map of one training crop: i.i.d. random levels (``p_random``), uniform at the
    budget (``p_uniform``), or the entropy-preset map, with random per-block offsets
    (``p_offsets``). Without ``p_random`` no extra random number is drawn (older runs resume
    exactly)."""
    if cfg.p_random > 0 and rng.random() < cfg.p_random:
        return rng.integers(0, len(rm.RATE_SET), size=rm.block_grid(height, width)).astype(np.int64)
    u = rng.random()
    if u < cfg.p_uniform:
        return rm.uniform_levels(cbr, height, width)
    be = rm.block_entropy(bits)
    offsets = None
    if u < cfg.p_uniform + cfg.p_offsets * (1 - cfg.p_uniform):
        s = cfg.offset_spread
        offsets = rng.choice(np.arange(-s, s + 1), size=be.shape, p=OFFSET_PROBS[s])
    return rm.preset_levels(be, cbr, height, width, offsets)


@torch.no_grad()
def validate(model: AkbJSCC, arrays, kb_fn, snr_db: float, cbr: float, device, mode: str = "preset",
             seed: int = 1234) -> tuple[float, float]:
    """Mean (PSNR, actual CBR) over ``arrays``; mode: preset (entropy map) | uniform."""
    from ..codec.model import pad_to_stride

    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    psnrs, cbrs = [], []
    for a in arrays:
        x = torch.from_numpy(a).permute(2, 0, 1)[None].float().div(255.0).to(device)
        H, W = a.shape[:2]
        xp = pad_to_stride(x)
        snr = torch.tensor([snr_db], device=device)
        kb = kb_fn(x)
        feats, bits, _ = model.analyse(xp, snr, torch.tensor([cbr * 768.0], device=device), kb)
        if mode == "uniform":
            lv = rm.uniform_levels(cbr, H, W)
        else:
            lv = rm.preset_levels(rm.block_entropy(bits[0].cpu().numpy()[: (H + 15) // 16, : (W + 15) // 16]), cbr, H, W)
        y = model.transmit(feats, torch.from_numpy(lv)[None].to(device), snr, kb,
                           lambda z, s: apply_channel(z, s, "awgn", gen))[..., :H, :W]
        y = torch.round(y.clamp(0, 1) * 255) / 255
        psnrs.append(psnr_from_mse(torch.mean((y - x) ** 2).item()))
        cbrs.append(rm.cbr_of(lv, H, W))
    model.train()
    return float(np.mean(psnrs)), float(np.mean(cbrs))


def _save(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(path, buf.getvalue())


def load_akb(path: str | Path, weights: str = "auto"):
    """(model, embedder, kb) of a checkpoint; EMA weights when the run kept them."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model = AkbJSCC(AkbConfig.from_dict(ck["akb_config"]))
    use_ema = weights == "ema" or (weights == "auto" and ck.get("ema") is not None)
    model.load_state_dict(ck["ema"] if use_ema else ck["model"])
    emb = ImageEmbedder(model.cfg.widths, model.cfg.enc_kernels, dim=model.cfg.kb_dim)
    emb.load_state_dict(ck["embedder"])
    kb = KnowledgeBase(ck["kb_vectors"], "image-embedder", ck.get("kb_meta", {}))
    return model.eval(), emb.eval(), kb


def train(cfg: AkbTrainConfig, resume: bool = False) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    out = Path(cfg.out)
    ckpt_path = out / "checkpoint.pt"
    trainargs.check_new_run(out, ckpt_path.name, resume, cfg.force, results=("best.pt", "final_metrics.json"))
    out.mkdir(parents=True, exist_ok=True)
    files = imgio.list_images(cfg.data)
    log.info("loading %d training images from %s", len(files), cfg.data)
    arrays = [imgio.load_rgb(f) for f in files]
    val_arrays = [imgio.load_rgb(f) for f in imgio.list_images(cfg.val)][: cfg.val_images] if cfg.val else []
    sampler = CropSampler(arrays, cfg.crop)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)     # before any model is built: --seed fixes a new run's initial weights

    resuming = resume and ckpt_path.exists()
    global_rng = None
    if resuming:
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model = AkbJSCC(AkbConfig.from_dict(ck["akb_config"])).to(device)
        model.load_state_dict(ck["model"])
        emb = ImageEmbedder(model.cfg.widths, model.cfg.enc_kernels, dim=model.cfg.kb_dim)
        emb.load_state_dict(ck["embedder"])
        kb = KnowledgeBase(ck["kb_vectors"], "image-embedder", ck.get("kb_meta", {}))
        step, best = ck["step"], ck.get("best_val", -1.0)
        rng.bit_generator.state = ck["np_rng"]
        gen.set_state(ck["torch_gen"])
        random.setstate(ck["py_rng"])
        global_rng = ck.get("global_rng")
        if global_rng is None:
            log.warning("%s predates saved global RNG states: the resumed run is not bit-exact", ckpt_path)
        log.info("resumed from %s at step %d", ckpt_path, step)
    else:
        if resume:
            log.warning("--resume given but %s does not exist; starting a new run", ckpt_path)
        v1 = _load_v1(cfg.init_from)
        model = from_v1(v1).to(device)
        emb, kb = build_source_kb(v1, sampler, cfg, rng)
        with torch.no_grad():
            x = sampler.sample(rng, 16).to(device)
            feats = model.encoder.analysis(x, torch.zeros(16, 2 + model.cfg.kb_dim, device=device)
                                           + torch.tensor([0.5, 1.0] + [0.0] * model.cfg.kb_dim, device=device))
            q = model.entropy.calibrate(model.encoder.latent(feats))
        log.info("entropy model: quantisation step %.4g", q)
        step, best = 0, -1.0
    prec.check_precision(cfg.precision, device)
    model = prec.prepare(model, cfg.precision)
    emb = emb.eval()    # stays on the CPU: _kb_vectors feeds it CPU images and reads its output with .numpy()

    codec_params = [p for n, p in model.named_parameters() if not n.startswith("entropy.")]
    opt = torch.optim.Adam([
        {"params": codec_params, "lr_scale": 1.0, "base": cfg.lr},
        {"params": list(model.entropy.parameters()), "lr_scale": 1.0, "base": cfg.lr_entropy},
    ], lr=cfg.lr)
    ema = Ema(model, cfg.ema) if cfg.ema > 0 else None
    if resuming:
        opt.load_state_dict(ck["optimizer"])
        if ema is not None and ck.get("ema") is not None:
            ema.state = {k: v.to(device) for k, v in ck["ema"].items()}
    eval_model = AkbJSCC(model.cfg).to(device) if ema is not None else model

    def _eval_model():
        if ema is not None:
            eval_model.load_state_dict(ema.state)
        return eval_model

    def _state(st):
        return {"model": model.state_dict(), "ema": ema.state if ema is not None else None,
                "akb_config": model.cfg.to_dict(), "optimizer": opt.state_dict(), "step": st,
                "train_config": asdict(cfg), "np_rng": rng.bit_generator.state, "torch_gen": gen.get_state(),
                "py_rng": random.getstate(), "global_rng": trainargs.global_rng_state(device),
                "best_val": best, "embedder": emb.state_dict(),
                "kb_vectors": kb.vectors, "kb_meta": kb.meta}

    write_json_atomic(out / "train_config.json", asdict(cfg))
    if resuming:  # the steps after the checkpoint run again and log again
        for name in ("train_log.csv", "val_log.csv"):
            trainargs.truncate_log(out / name, "step", step)
    tlog = CsvLog(out / "train_log.csv", ["step", "phase", "loss_mse", "train_psnr_db", "bits_per_pixel",
                                          "lr", "elapsed_s"], resume=resuming)
    vlog = CsvLog(out / "val_log.csv", ["step", "snr_db", "target_cbr", "mode", "cbr", "val_psnr_db"],
                  resume=resuming)
    log.info("AKB codec: %d parameters, device %s, %d threads, precision %s", count_parameters(model), device,
             torch.get_num_threads(), cfg.precision)
    total = cfg.entropy_steps + cfg.steps
    bar = tqdm(total=total, initial=step, desc="train akb", unit="step", dynamic_ncols=True)
    t0 = trainargs.clock_start(out / "train_log.csv", resuming)
    run_mse: list[float] = []
    run_bpp: list[float] = []
    kb_dim = model.cfg.kb_dim
    model.train()
    # last, after everything that builds modules (their init draws from it): the process-wide RNGs
    # as they were at the checkpoint; the hyperprior's training noise comes from the torch one
    trainargs.set_global_rng_state(global_rng)
    try:
        while step < total:
            phase = "entropy" if step < cfg.entropy_steps else "joint"
            jstep = step - cfg.entropy_steps
            lr = _lr_at(max(0, jstep), _Sched(cfg)) if phase == "joint" else cfg.lr_entropy
            opt.param_groups[0]["lr"] = lr if phase == "joint" else 0.0
            opt.param_groups[1]["lr"] = cfg.lr_entropy * (lr / cfg.lr if phase == "joint" else 1.0)
            x = sampler.sample(rng, cfg.batch).to(device)
            b, _, H, W = x.shape
            snr = torch.from_numpy(rng.uniform(cfg.snr_min_db, cfg.snr_max_db, b)).float().to(device)
            cbrs = [_draw_cbr(rng, cfg) for _ in range(b)]
            kb_vec = _kb_vectors(emb, kb, x)
            kb_vec = kb_vec * torch.from_numpy((rng.random(b) >= cfg.p_no_kb).astype(np.float32))[:, None].to(device)
            target = torch.tensor([c * 768.0 for c in cbrs], device=device)
            if phase == "entropy":
                with torch.no_grad(), prec.autocast(cfg.precision, device):
                    feats = model.encoder.analysis(prec.batch(x, cfg.precision),
                                                   torch.cat([torch.stack([snr / 20.0, target / 48.0], 1), kb_vec], 1))
                with prec.autocast(cfg.precision, device):
                    bits, z_bits = model.entropy(model.encoder.latent(feats), True)
                bits, z_bits = bits.float(), z_bits.float()
                bpp = (bits.sum(dim=(1, 2)) + z_bits).mean() / (H * W)
                loss = bpp
                mse_v = float("nan")
            else:
                with prec.autocast(cfg.precision, device):
                    feats, bits, z_bits = model.analyse(prec.batch(x, cfg.precision), snr, target, kb_vec, noise=True)
                bits, z_bits = bits.float(), z_bits.float()
                bnp = bits.detach().cpu().numpy()
                levels = np.stack([_draw_levels(bnp[i], cbrs[i], H, W, rng, cfg) for i in range(b)])
                with prec.autocast(cfg.precision, device):
                    y = model.transmit(feats, torch.from_numpy(levels).to(device), snr, kb_vec,
                                       lambda z, s: apply_channel(z, s, "awgn", gen))
                mse = torch.mean((y.float() - x) ** 2)
                bpp = (bits.sum(dim=(1, 2)) + z_bits).mean() / (H * W)
                loss = mse + cfg.entropy_weight * bpp
                mse_v = mse.item()
            opt.zero_grad(set_to_none=True)
            if not math.isfinite(loss.item()):
                log.warning("step %d: non-finite loss skipped", step)
            else:
                loss.backward()
                gn = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                if not math.isfinite(float(gn)):  # a finite loss with a NaN/inf gradient: skipped too
                    log.warning("step %d: non-finite gradient norm skipped", step)
                else:
                    opt.step()
                    if ema is not None:
                        ema.update(model)
                    if phase == "joint":
                        run_mse.append(mse_v)
                    run_bpp.append(bpp.item())
            step += 1
            bar.update(1)
            if step % 20 == 0:
                post = {"bpp": f"{np.mean(run_bpp[-50:]):.3f}"}
                if run_mse:
                    post["psnr"] = f"{psnr_from_mse(np.mean(run_mse[-50:])):.2f}"
                bar.set_postfix(post)
            # validation before the checkpoint of the same step, so that the checkpoint carries its best
            # ... and at the last step, as the codec trainer does (the final weights are always validated)
            if val_arrays and phase == "joint" and ((jstep + 1) % cfg.val_every == 0 or step == total):
                em = _eval_model()
                kb_fn = lambda img: _kb_vectors(emb, kb, img)  # noqa: E731
                vals = []
                for c in (BENCH_CBRS[0], BENCH_CBRS[2]):
                    v, c_act = validate(em, val_arrays, kb_fn, 10.0, c, device)
                    vals.append(v)
                    vlog.append({"step": step, "snr_db": 10.0, "target_cbr": c, "mode": "preset",
                                 "cbr": c_act, "val_psnr_db": v})
                    bar.write(f"step {step}: val PSNR {v:.2f} dB (SNR 10 dB, CBR {c_act:.4f}, entropy preset)", file=sys.stderr)
                if float(np.mean(vals)) > best:
                    best = float(np.mean(vals))
                    _save(out / "best.pt", _state(step))
            if step % cfg.ckpt_every == 0 or step == total:
                m = float(np.mean(run_mse)) if run_mse else None
                tlog.append({"step": step, "phase": phase, "loss_mse": m,
                             "train_psnr_db": psnr_from_mse(m) if m else None,
                             "bits_per_pixel": float(np.mean(run_bpp)) if run_bpp else None,
                             "lr": lr, "elapsed_s": round(time.time() - t0, 1)})
                run_mse, run_bpp = [], []
                _save(ckpt_path, _state(step))
    finally:
        bar.close()
        tlog.close()
        vlog.close()
    # best_val: the best validation score in dB; None when the run had no --val
    final = {"step": step, "parameters": count_parameters(model), "best_val": best if cfg.val else None}
    write_json_atomic(out / "final_metrics.json", final)
    return final


class _Sched:
    """Adapter giving :func:`testbed.codec.train._lr_at` the joint phase's schedule."""

    def __init__(self, cfg: AkbTrainConfig):
        self.lr, self.lr_min, self.warmup, self.steps = cfg.lr, cfg.lr_min, cfg.warmup, cfg.steps


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = AkbTrainConfig(data="")
    p.add_argument("--data", required=True, help="folder of training images")
    p.add_argument("--val", help="folder of validation images")
    p.add_argument("--out", default=d.out, help="run folder (default: %(default)s)")
    p.add_argument("--init-from", default=d.init_from, help="codec v1 to start from: model folder/name or checkpoint")
    add_number_options(p, d, ("steps", "entropy_steps", "batch", "crop", "seed", "kb_entries", "kb_crops", "ckpt_every",
                       "val_every", "val_images", "threads", "warmup"),
                       ("lr", "lr_entropy", "ema", "p_no_kb", "p_uniform", "p_offsets", "p_random", "entropy_weight"))
    p.add_argument("--offset-spread", type=int, choices=sorted(OFFSET_PROBS), default=d.offset_spread,
                   help="random per-block level offsets of the training rate maps: -N..+N (default %(default)s)")
    p.add_argument("--device", default="auto")
    trainargs.add_precision_argument(p)
    trainargs.add_run_options(p, "checkpoint.pt")


def config_from_args(a: argparse.Namespace) -> AkbTrainConfig:
    return trainargs.config_from_args(AkbTrainConfig, a, "akb")
