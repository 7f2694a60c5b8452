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
checkpoint unless ``--force`` (see :func:`testbed.core.trainargs.check_new_run`). The loop,
checkpoints and resume are :class:`testbed.core.trainer.Trainer`'s; :class:`AkbTrainer` gives it
the model, source KB, the two phases' batch loss and the validation.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..codec.channel import apply_channel
from ..codec.checkpoint import load_codec
from ..core import precision as prec
from ..core import trainargs
from ..core.crops import CropSampler, DeviceCropSampler
from ..core.metrics import psnr_from_mse
from ..core.trainargs import add_number_options
from ..core.trainer import Trainer, lr_at, save_checkpoint
from . import ratemap as rm
from .model import AkbConfig, AkbJSCC, count_parameters, from_codec
from .source_kb.embedder import ImageEmbedder
from .source_kb.kb import KbError, KnowledgeBase, kmeans

log = logging.getLogger(__name__)

AKB_OUT = trainargs.default_out("akb-v1")
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
    rate_grad: bool = False          # the rate term's gradient reaches the analysis transform (NTSCC-style)
    max_minutes: float = 0.0         # wall-clock budget of the step loop (0: none; see core.trainer)
    data_on_device: str = "auto"     # auto | on | off: training crops drawn on the training device
    command: str = ""
    force: bool = False              # start over in an --out folder that holds a run (--force)


@torch.no_grad()
def build_source_kb(v1, sampler: CropSampler, cfg: AkbTrainConfig, rng: np.random.Generator):
    """Embedder (PCA fitted on training crops) and KB (k-means of their embeddings)."""
    emb = ImageEmbedder.from_codec(v1)
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


_save = save_checkpoint     # the trainer writes its checkpoints through this name (tests stand in for it)


def load_akb(path: str | Path, weights: str = "auto"):
    """(model, embedder, kb) of a checkpoint; EMA weights when the run kept them."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model = AkbJSCC(AkbConfig.from_dict(ck["akb_config"]))
    use_ema = weights == "ema" or (weights == "auto" and ck.get("ema") is not None)
    model.load_state_dict(ck["ema"] if use_ema else ck["model"])
    emb = ImageEmbedder.for_config(model.cfg)
    emb.load_state_dict(ck["embedder"])
    kb = KnowledgeBase(ck["kb_vectors"], "image-embedder", ck.get("kb_meta", {}))
    return model.eval(), emb.eval(), kb


class AkbTrainer(Trainer):
    """`testbed train akb` on the shared loop (:class:`testbed.core.trainer.Trainer`): the entropy
    phase (``--entropy-steps``, hyperprior only), then the joint phase."""

    what, title, config_key = "akb", "AKB codec", "akb_config"
    train_columns = ["step", "phase", "loss_mse", "train_psnr_db", "bits_per_pixel", "lr", "elapsed_s"]
    val_columns = ["step", "snr_db", "target_cbr", "mode", "cbr", "val_psnr_db"]
    count_parameters = staticmethod(count_parameters)

    def __init__(self, cfg: AkbTrainConfig, resume: bool = False):
        super().__init__(cfg, resume)
        self.val_after = cfg.entropy_steps      # validation in the joint phase only
        self.run_mse: list[float] = []
        self.run_bpp: list[float] = []

    def load_data(self) -> None:
        cfg = self.cfg
        arrays = self.read_images(cfg.data, "training")
        self.sampler = CropSampler(arrays, cfg.crop)      # the source KB and the entropy calibration draw from it
        on = cfg.data_on_device == "on" or (cfg.data_on_device == "auto" and self.device.type == "cuda")
        self.batch_sampler = DeviceCropSampler(arrays, cfg.crop, 1, self.device) if on else None
        if cfg.val:
            self.val_arrays = self.read_images(cfg.val)[: cfg.val_images]

    def total_steps(self) -> int:
        return self.cfg.entropy_steps + self.cfg.steps

    def build_model(self, ck: dict | None) -> AkbJSCC:
        cfg, device = self.cfg, self.device
        if ck is not None:
            model = AkbJSCC(AkbConfig.from_dict(ck["akb_config"])).to(device)
            emb = ImageEmbedder.for_config(model.cfg)
            emb.load_state_dict(ck["embedder"])
            kb = KnowledgeBase(ck["kb_vectors"], "image-embedder", ck.get("kb_meta", {}))
        else:
            v1 = load_codec(cfg.init_from)
            try:
                model = from_codec(v1).to(device)
            except ValueError as e:
                raise ValueError(f"--init-from {cfg.init_from}: {e}") from None
            emb, kb = build_source_kb(v1, self.sampler, cfg, self.rng)
            with torch.no_grad():
                x = self.sampler.sample(self.rng, 16).to(device)
                feats = model.encoder.analysis(x, torch.zeros(16, 2 + model.cfg.kb_dim, device=device)
                                               + torch.tensor([0.5, 1.0] + [0.0] * model.cfg.kb_dim, device=device))
                q = model.entropy.calibrate(model.encoder.latent(feats))
            log.info("entropy model: quantisation step %.4g", q)
        # the embedder stays on the CPU: _kb_vectors feeds it CPU images and reads its output with .numpy()
        self.emb, self.kb = emb.eval(), kb
        return model

    def make_optimizer(self) -> torch.optim.Optimizer:
        cfg, model = self.cfg, self.model
        codec_params = [p for n, p in model.named_parameters() if not n.startswith("entropy.")]
        return torch.optim.Adam([
            {"params": codec_params, "lr_scale": 1.0, "base": cfg.lr},
            {"params": list(model.entropy.parameters()), "lr_scale": 1.0, "base": cfg.lr_entropy},
        ], lr=cfg.lr)

    def restore(self, ck: dict):
        global_rng = super().restore(ck)
        if global_rng is None:
            log.warning("%s predates saved global RNG states: the resumed run is not bit-exact", self.ckpt_path)
        return global_rng

    def set_lr(self, step: int) -> float:
        cfg = self.cfg
        self.phase = "entropy" if step < cfg.entropy_steps else "joint"
        joint = self.phase == "joint"
        lr = lr_at(step - cfg.entropy_steps, cfg.lr, cfg.lr_min, cfg.warmup, cfg.steps,
                   self.time_used()) if joint else cfg.lr_entropy
        self.opt.param_groups[0]["lr"] = lr if joint else 0.0
        self.opt.param_groups[1]["lr"] = cfg.lr_entropy * (lr / cfg.lr if joint else 1.0)
        return lr

    def batch_loss(self, step: int):
        cfg, rng, device, model = self.cfg, self.rng, self.device, self.model
        if self.batch_sampler is not None:
            x = self.batch_sampler.sample(self.gen, cfg.batch)
        else:
            x = self.sampler.sample(rng, cfg.batch).to(device)
        b, _, H, W = x.shape
        snr = torch.from_numpy(rng.uniform(cfg.snr_min_db, cfg.snr_max_db, b)).float().to(device)
        cbrs = [_draw_cbr(rng, cfg) for _ in range(b)]
        kb_vec = _kb_vectors(self.emb, self.kb, x)
        kb_vec = kb_vec * torch.from_numpy((rng.random(b) >= cfg.p_no_kb).astype(np.float32))[:, None].to(device)
        target = torch.tensor([c * 768.0 for c in cbrs], device=device)
        if self.phase == "entropy":
            with torch.no_grad(), prec.autocast(cfg.precision, device):
                feats = model.encoder.analysis(prec.batch(x, cfg.precision),
                                               torch.cat([torch.stack([snr / 20.0, target / 48.0], 1), kb_vec], 1))
            with prec.autocast(cfg.precision, device):
                bits, z_bits = model.entropy(model.encoder.latent(feats), True)
            bits, z_bits = bits.float(), z_bits.float()
            bpp = (bits.sum(dim=(1, 2)) + z_bits).mean() / (H * W)
            return bpp, (None, bpp)
        with prec.autocast(cfg.precision, device):
            feats, bits, z_bits = model.analyse(prec.batch(x, cfg.precision), snr, target, kb_vec, noise=True,
                                                rate_grad=cfg.rate_grad)
        bits, z_bits = bits.float(), z_bits.float()
        bnp = bits.detach().cpu().numpy()
        levels = np.stack([_draw_levels(bnp[i], cbrs[i], H, W, rng, cfg) for i in range(b)])
        with prec.autocast(cfg.precision, device):
            y = model.transmit(feats, torch.from_numpy(levels).to(device), snr, kb_vec,
                               lambda z, s: apply_channel(z, s, "awgn", self.gen))
        mse = torch.mean((y.float() - x) ** 2)
        bpp = (bits.sum(dim=(1, 2)) + z_bits).mean() / (H * W)
        return mse + cfg.entropy_weight * bpp, (mse.item(), bpp)

    def on_accepted(self, loss: float, aux) -> None:
        mse, bpp = aux
        if mse is not None:
            self.run_mse.append(mse)
        self.run_bpp.append(bpp.item())

    def postfix(self, lr: float) -> dict:
        post = {"bpp": f"{np.mean(self.run_bpp[-50:]):.3f}"}
        if self.run_mse:
            post["psnr"] = f"{psnr_from_mse(np.mean(self.run_mse[-50:])):.2f}"
        return post

    def run_validation(self, model: AkbJSCC) -> list[float]:
        kb_fn = lambda img: _kb_vectors(self.emb, self.kb, img)  # noqa: E731
        vals = []
        for c in (BENCH_CBRS[0], BENCH_CBRS[2]):
            v, c_act = validate(model, self.val_arrays, kb_fn, 10.0, c, self.device)
            vals.append(v)
            self.vlog.append({"step": self.step, "snr_db": 10.0, "target_cbr": c, "mode": "preset",
                              "cbr": c_act, "val_psnr_db": v})
            self.bar.write(f"step {self.step}: val PSNR {v:.2f} dB (SNR 10 dB, CBR {c_act:.4f}, entropy preset)",
                           file=sys.stderr)
        return vals

    def log_row(self, lr: float, elapsed: float, now: float) -> dict:
        m = float(np.mean(self.run_mse)) if self.run_mse else None
        return {"step": self.step, "phase": self.phase, "loss_mse": m, "train_psnr_db": psnr_from_mse(m) if m else None,
                "bits_per_pixel": float(np.mean(self.run_bpp)) if self.run_bpp else None, "lr": lr, "elapsed_s": elapsed}

    def end_interval(self) -> None:
        self.run_mse, self.run_bpp = [], []

    def checkpoint_extras(self) -> dict:
        return {"embedder": self.emb.state_dict(), "kb_vectors": self.kb.vectors, "kb_meta": self.kb.meta}

    def write_checkpoint(self, path) -> None:
        _save(path, self.state())

    def final_metrics(self) -> dict:
        # best_val: the best validation score in dB; None when the run had no --val
        return {"step": self.step, "parameters": count_parameters(self.model),
                "best_val": self.best if self.cfg.val else None}


def train(cfg: AkbTrainConfig, resume: bool = False) -> dict:
    return AkbTrainer(cfg, resume).run()


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = AkbTrainConfig(data="")
    p.add_argument("--data", required=True, help="folder of training images")
    p.add_argument("--val", help="folder of validation images")
    p.add_argument("--out", default=d.out, help="run folder (default: %(default)s)")
    p.add_argument("--init-from", default=d.init_from,
                   help="fixed-rate codec to start from (v1 with 1,1 residual blocks, or v2): model folder/name, "
                        "checkpoint or weights_fp16.pt")
    add_number_options(p, d, ("steps", "entropy_steps", "batch", "crop", "seed", "kb_entries", "kb_crops", "ckpt_every",
                       "val_every", "val_images", "threads", "warmup"),
                       ("lr", "lr_entropy", "ema", "p_no_kb", "p_uniform", "p_offsets", "p_random", "entropy_weight"))
    p.add_argument("--offset-spread", type=int, choices=sorted(OFFSET_PROBS), default=d.offset_spread,
                   help="random per-block level offsets of the training rate maps: -N..+N (default %(default)s)")
    p.add_argument("--device", default="auto")
    p.add_argument("--rate-grad", action="store_true",
                   help="let the rate term train the analysis transform too (as NTSCC does); by default only the "
                        "entropy model learns from it")
    p.add_argument("--max-minutes", type=float, default=d.max_minutes,
                   help="wall-clock budget of the training loop in minutes (0: none); the learning rate anneals by it")
    p.add_argument("--data-on-device", choices=["auto", "on", "off"], default=d.data_on_device,
                   help="draw the training crops on the training device (auto: on CUDA)")
    trainargs.add_precision_argument(p)
    trainargs.add_run_options(p, "checkpoint.pt")


def config_from_args(a: argparse.Namespace) -> AkbTrainConfig:
    return trainargs.config_from_args(AkbTrainConfig, a, "akb")
