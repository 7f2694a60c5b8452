"""``testbed export-akb``: AKB checkpoint (+ optional PPO policy) -> ONNX graphs, KB file, model card.

Graph contract (batch 1; pre/post-processing inside the graphs):

``embedder.onnx``          image uint8 [1,H,W,3] -> embedding float32 [1,D]
``encoder_analysis.onnx``  image uint8 [1,H,W,3], snr_db f32 [1], target_cbr f32 [1], kb_vector f32 [1,D]
                           -> features f32 [1,C+2S,h,w], entropy_map f32 [1,h,w] (bits per location),
                              block_bits f32 [1,hb,wb] (mean bits per location of each rate block)
``encoder_symbols.onnx``   features, levels int64 [1,hb,wb] -> symbols f32 [1,n,2] (Es = 1, importance-major)
``decoder.onnx``           symbols f32 [1,n,2] (missing tail zero-filled), snr_db f32 [1], levels int64 [1,hb,wb],
                           kb_vector f32 [1,D], image_size int64 [2] -> image uint8 [1,H,W,3]
``policy.onnx``            the channel-KB policy (:mod:`testbed.akb.channel_kb.scheduler`)

with ``h = ceil(H/16)``, ``hb = ceil(h/4)``. A zero ``kb_vector`` means "no source KB".
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..codec.export import (OPSET, _export_one as _export, extend_lineage, git_commit, inherited_lineage,
                            lineage_stage, read_final_metrics)
from ..codec.model import pad_to_stride
from ..core.card import CARD_NAME, read_card
from ..core.configfile import load_yaml
from ..core.ortsession import sha256_file
from ..core.runlog import write_bytes_atomic
from ..core.wire import KB_INDEX_BITS, RATE_BITS
from . import placement as pl
from . import ratemap as rm
from .card import CODEC, GRAPHS, AkbCard
from .model import AkbJSCC, count_parameters, side_input
from .source_kb.embedder import ImageEmbedder
from .source_kb.kb import KnowledgeBase

log = logging.getLogger(__name__)

FILES = {"embedder": "embedder.onnx", "encoder_analysis": "encoder_analysis.onnx",
         "encoder_symbols": "encoder_symbols.onnx", "decoder": "decoder.onnx", "policy": "policy.onnx"}
KB_FILE = "kb.npz"


def block_mean(bits: torch.Tensor) -> torch.Tensor:
    """[B, h, w] bits per location -> [B, hb, wb] mean over the real locations of each block."""
    n = rm.BLOCK_LOCATIONS
    h, w = bits.shape[1], bits.shape[2]
    ph, pw = (n - h % n) % n, (n - w % n) % n
    s = F.avg_pool2d(F.pad(bits[:, None], (0, pw, 0, ph)), n, n)
    c = F.avg_pool2d(F.pad(torch.ones_like(bits[:, None]), (0, pw, 0, ph)), n, n)
    return (s / c)[:, 0]


class AnalysisGraph(nn.Module):
    def __init__(self, model: AkbJSCC):
        super().__init__()
        self.model = model

    def forward(self, image, snr_db, target_cbr, kb_vector):
        x = pad_to_stride(image.permute(0, 3, 1, 2).to(torch.float32) / 255.0)
        feats, bits, _ = self.model.analyse(x, snr_db, target_cbr * 768.0, kb_vector)
        return feats, bits, block_mean(bits)


class SymbolsGraph(nn.Module):
    def __init__(self, model: AkbJSCC):
        super().__init__()
        self.encoder = model.encoder

    def forward(self, features, levels):
        h, w = features.shape[2], features.shape[3]
        rates = pl.location_rates(levels, h, w)
        zc = self.encoder.symbols(features, rates)[0]
        mask = pl.symbol_mask(rates, self.encoder.s_max)[0]
        idx = torch.nonzero(mask.reshape(-1) > 0.5).reshape(-1)
        return zc.reshape(-1, 2).index_select(0, idx)[None]


class DecoderGraph(nn.Module):
    def __init__(self, model: AkbJSCC):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, symbols, snr_db, levels, kb_vector, image_size):
        height, width = image_size[0], image_size[1]
        h = (height + (rm.STRIDE - 1)) // rm.STRIDE
        w = (width + (rm.STRIDE - 1)) // rm.STRIDE
        rates = pl.location_rates(levels, h, w)
        mask = pl.symbol_mask(rates, self.decoder.s_max)[0]
        zc = pl.unpack_stream(symbols[0], mask)[None]
        side = side_input(snr_db, rates.mean(dim=(1, 2)), kb_vector)
        y = self.decoder(zc, rates, side)
        y = y.index_select(2, torch.arange(height)).index_select(3, torch.arange(width))
        return torch.round(torch.clamp(y, 0.0, 1.0) * 255.0).permute(0, 2, 3, 1).to(torch.uint8)


def model_sha256(folder: Path, graphs: dict) -> str:
    import hashlib

    h = hashlib.sha256()
    for role in GRAPHS:
        h.update((folder / graphs[role]["file"]).read_bytes())
    return h.hexdigest()


@torch.no_grad()
def export_akb(model: AkbJSCC, embedder: ImageEmbedder, kb: KnowledgeBase, out_dir: str | Path, *, name: str,
               training: dict, policy_file: str | Path | None = None, description: str = "") -> AkbCard:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, embedder = model.eval().cpu(), embedder.eval().cpu()
    cfg = model.cfg
    commit = git_commit()
    common = {
        "testbed.model_name": name, "testbed.codec": CODEC,
        "testbed.cbr_range": f"{0.02:g},{0.07:g}",
        "testbed.rate_set": ",".join(map(str, rm.RATE_SET)),
        "testbed.block_pixels": rm.BLOCK_LOCATIONS * rm.STRIDE,
        "testbed.cbr_formula": "(sum over locations of rate + side-info symbols) / (H*W*3)",
        "testbed.snr_range_db": f"{cfg.snr_min_db:g},{cfg.snr_max_db:g}",
        "testbed.training_data": training.get("data", ""),
        "testbed.kb_sha256": kb.sha256,
        "testbed.git_commit": commit, "testbed.opset": OPSET,
        "testbed.exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "testbed.akb_config": json.dumps(cfg.to_dict()),
    }
    img = torch.randint(0, 256, (1, 80, 144, 3), dtype=torch.uint8)
    snr, cbr, kbv = torch.tensor([10.0]), torch.tensor([0.036]), torch.from_numpy(kb.vectors[:1])
    paths = {role: out / FILES[role] for role in GRAPHS}
    _export(embedder, (img,), paths["embedder"], ["image"], ["embedding"],
            {"image": {1: "height", 2: "width"}}, {**common, "testbed.graph": "embedder"})
    ag = AnalysisGraph(model)
    _export(ag, (img, snr, cbr, kbv), paths["encoder_analysis"],
            ["image", "snr_db", "target_cbr", "kb_vector"], ["features", "entropy_map", "block_bits"],
            {"image": {1: "height", 2: "width"}, "features": {2: "h", 3: "w"}, "entropy_map": {1: "h", 2: "w"},
             "block_bits": {1: "hb", 2: "wb"}}, {**common, "testbed.graph": "encoder_analysis"})
    feats, _, bb = ag(img, snr, cbr, kbv)
    levels = torch.from_numpy(rm.preset_levels(bb[0].numpy(), 0.036, 80, 144))[None]
    sg = SymbolsGraph(model)
    _export(sg, (feats, levels), paths["encoder_symbols"], ["features", "levels"], ["symbols"],
            {"features": {2: "h", 3: "w"}, "levels": {1: "hb", 2: "wb"}, "symbols": {1: "n_symbols"}},
            {**common, "testbed.graph": "encoder_symbols"})
    stream = sg(feats, levels)
    _export(DecoderGraph(model), (stream, snr, levels, kbv, torch.tensor([80, 144])), paths["decoder"],
            ["symbols", "snr_db", "levels", "kb_vector", "image_size"], ["image"],
            {"symbols": {1: "n_symbols"}, "levels": {1: "hb", 2: "wb"}, "image": {1: "height", 2: "width"}},
            {**common, "testbed.graph": "decoder"})
    graphs = {role: {"file": FILES[role], "sha256": sha256_file(paths[role])} for role in GRAPHS}
    if policy_file:
        dst = out / FILES["policy"]
        if Path(policy_file).resolve() != dst.resolve():
            write_bytes_atomic(dst, Path(policy_file).read_bytes())
        graphs["policy"] = {"file": FILES["policy"], "sha256": sha256_file(dst)}
    kb.save(out / KB_FILE)
    card = AkbCard(
        name=name, codec=CODEC, graphs=graphs,
        kb={"file": KB_FILE, "sha256": kb.sha256, "entries": len(kb), "dim": int(kb.vectors.shape[1]),
            "provider": kb.provider},
        sha256=model_sha256(out, graphs), rate_set=list(rm.RATE_SET),
        block_pixels=rm.BLOCK_LOCATIONS * rm.STRIDE, rate_bits=RATE_BITS, kb_index_bits=KB_INDEX_BITS,
        cbr_range=[0.02, 0.07], snr_range_db=[cfg.snr_min_db, cfg.snr_max_db], opset=OPSET,
        parameters=count_parameters(model), git_commit=commit, training=training, description=description)
    card.write(out / CARD_NAME)
    log.info("exported %s to %s (sha256 %s)", name, out, card.sha256[:16])
    return card


def attach_policy(model_dir: str | Path, policy_file: str | Path,
                  scheduler: tuple[dict, dict] | None = None) -> AkbCard:
    """Add (or replace) the channel-KB policy of an exported AKB model; the codec graphs and hence
    the model's sha256 stay as they are. ``scheduler``: :func:`scheduler_record` of the policy's
    run, which replaces ``training.scheduler`` and the lineage's scheduler stage."""
    d = Path(model_dir)
    if load_yaml(d / CARD_NAME, "model card").get("codec") != CODEC:
        raise ValueError(f"{d}: not an AKB model folder")
    card = read_card(d / CARD_NAME, AkbCard)
    dst = d / FILES["policy"]
    if Path(policy_file).resolve() != dst.resolve():
        write_bytes_atomic(dst, Path(policy_file).read_bytes())
    card.graphs["policy"] = {"file": FILES["policy"], "sha256": sha256_file(dst)}
    if scheduler is not None:
        record, stage = scheduler
        card.training["scheduler"] = record
        if "lineage" in card.training:
            card.training["lineage"] = [st for st in card.training["lineage"]
                                        if not str(st.get("stage", "")).startswith("scheduler")] + [stage]
    card.write(d / CARD_NAME)
    return card


def scheduler_record(run_dir: str | Path) -> tuple[dict, dict]:
    """What the card records of a ``testbed train scheduler`` run: ``training.scheduler`` (the
    policy's timesteps and evaluation per SNR) and its lineage stage (command, timesteps as
    ``steps``, the AKB checkpoint it trained on as ``codec``, its folder, the reward over the fixed
    mapping per SNR)."""
    run = Path(run_dir)
    cfg = json.loads((run / "train_config.json").read_text())
    if not (run / "final_metrics.json").exists():
        raise ValueError(f"{run / 'final_metrics.json'}: not found (the scheduler run has not finished)")
    final = json.loads((run / "final_metrics.json").read_text())
    stage = {"stage": "scheduler", "command": cfg.get("command", ""), "steps": final["timesteps"],
             "codec": str(cfg.get("akb", "")), "run": str(cfg.get("out") or run)}
    if final.get("evaluation"):
        stage["result"] = {"reward_over_fixed": {f"{r['snr_db']:g}": round(r["reward"], 3)
                                                 for r in final["evaluation"]}}
    return {"timesteps": final["timesteps"], "evaluation": final.get("evaluation")}, stage


def training_record(checkpoint: str | Path, ck: dict, scheduler: tuple[dict, dict] | None = None) -> dict:
    """The card's ``training`` section for an AKB codec exported from ``checkpoint`` (``ck``: its
    contents) and, with ``scheduler`` (:func:`scheduler_record`), its channel-KB policy: ``lineage``
    (the stages of the codec v1 it started from, this run, the scheduler run), ``codec`` (the run's
    data and options), ``data`` and ``scheduler``."""
    tc = ck.get("train_config", {})
    best = read_final_metrics(checkpoint).get("best_val")
    result = {"data": tc.get("val", ""), "best_val_psnr_db": round(best, 2)} if best is not None else None
    lineage = extend_lineage(inherited_lineage(tc.get("init_from")), lineage_stage("akb 1", ck, checkpoint, result=result))
    training = {
        "lineage": lineage,
        "codec": {"data": tc.get("data", ""), "val": tc.get("val", ""), "init_from": tc.get("init_from", ""),
                  "steps": ck.get("step"), "entropy_steps": tc.get("entropy_steps"), "batch": tc.get("batch"),
                  "crop": tc.get("crop"), "seed": tc.get("seed"), "weights": "ema" if ck.get("ema") is not None else "raw"},
        "data": tc.get("data", ""),
    }
    if scheduler:
        training["scheduler"] = scheduler[0]
        lineage.append(scheduler[1])
    return training


def check_against_torch(model: AkbJSCC, embedder: ImageEmbedder, kb: KnowledgeBase, model_dir,
                        height: int = 72, width: int = 104, snr_db: float = 7.0, cbr: float = 0.04) -> dict:
    """Run every graph in onnxruntime and PyTorch on the same input; return the max errors."""
    import onnxruntime as ort

    d = Path(model_dir)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    s = {r: ort.InferenceSession(str(d / FILES[r]), opts, providers=["CPUExecutionProvider"]) for r in GRAPHS}
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (1, height, width, 3), dtype=torch.uint8, generator=g)
    snr, c = torch.tensor([snr_db]), torch.tensor([cbr])
    with torch.no_grad():
        emb_t = embedder(img).numpy()
        emb_o = s["embedder"].run(None, {"image": img.numpy()})[0]
        kbv = torch.from_numpy(kb.lookup(emb_o[0])[1])[None]
        f_t, e_t, b_t = AnalysisGraph(model)(img, snr, c, kbv)
        f_o, e_o, b_o = s["encoder_analysis"].run(None, {"image": img.numpy(), "snr_db": snr.numpy(),
                                                         "target_cbr": c.numpy(), "kb_vector": kbv.numpy()})
        lv = rm.preset_levels(b_o[0], cbr, height, width)[None]
        sy_t = SymbolsGraph(model)(torch.from_numpy(f_o), torch.from_numpy(lv)).numpy()
        sy_o = s["encoder_symbols"].run(None, {"features": f_o, "levels": lv})[0]
        size = np.array([height, width], np.int64)
        im_t = DecoderGraph(model)(torch.from_numpy(sy_o), snr, torch.from_numpy(lv), kbv, torch.from_numpy(size)).numpy()
        im_o = s["decoder"].run(None, {"symbols": sy_o, "snr_db": snr.numpy(), "levels": lv,
                                       "kb_vector": kbv.numpy(), "image_size": size})[0]
    return {
        "embedding_max_rel_err": float(np.abs(emb_t - emb_o).max() / max(1e-6, np.abs(emb_t).max())),
        "entropy_max_rel_err": float(np.abs(e_t.numpy() - e_o).max() / max(1e-6, np.abs(e_t.numpy()).max())),
        "features_max_abs_err": float(np.abs(f_t.numpy() - f_o).max()),
        "symbols_shape": list(sy_o.shape),
        "expected_symbols": rm.n_symbols(lv[0], *rm.location_grid(height, width)),
        "symbols_max_abs_err": float(np.abs(sy_t - sy_o).max()),
        "image_max_abs_err": int(np.abs(im_t.astype(int) - im_o.astype(int)).max()),
        "image_mean_abs_err": float(np.abs(im_t.astype(float) - im_o.astype(float)).mean()),
    }
