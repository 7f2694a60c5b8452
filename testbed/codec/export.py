"""``testbed export``: checkpoint -> encoder.onnx + decoder.onnx + model_card.yaml.

The graphs follow the contract in :mod:`testbed.codec.graphs`. Their ``metadata_props`` carry
what a receiver or a controller needs to use them without the checkpoint: CBR operating points,
SNR range, stride, training data, git commit, opset and input layout.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import subprocess
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from ..core.ortsession import sha256_file
from ..core.runlog import write_bytes_atomic
from . import symbols as sym
from .graphs import DecoderGraph, EncoderGraph
from .model import JSCC, count_parameters
from ..core.card import CARD_NAME
from .modelcard import ModelCard

log = logging.getLogger(__name__)

OPSET = 17
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"

ENCODER_LAYOUT = ("image: uint8 [B,H,W,3] RGB NHWC, any H,W (padded inside to a multiple of 16); "
                  "snr_db: float32 [B]; symbols_per_location: int64 [1] -> "
                  "symbols: float32 [B, k*ceil(H/16)*ceil(W/16), 2] (re, im), Es=1")
DECODER_LAYOUT = ("symbols: float32 [B, n, 2] (re, im), missing trailing symbols zero-filled; "
                  "snr_db: float32 [B]; image_size: int64 [2] (H, W) -> image: uint8 [B,H,W,3]")


def git_commit(repo: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo or Path(__file__).parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def model_sha256(encoder_path: Path, decoder_path: Path) -> str:
    """Identity of a model: sha256 over the encoder bytes followed by the decoder bytes."""
    h = hashlib.sha256()
    for p in (encoder_path, decoder_path):
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def _export_one(module, args, path: Path, input_names, output_names, dynamic_axes, meta: dict) -> None:
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about shape arithmetic are expected
        torch.onnx.export(module, args, str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, do_constant_folding=True)
    m = onnx.load(str(tmp))
    tmp.unlink()
    del m.metadata_props[:]
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, str(v)
    m.producer_name = "testbed"
    onnx.checker.check_model(m, full_check=True)
    write_bytes_atomic(path, m.SerializeToString())


def export(model: JSCC, out_dir: str | Path, *, name: str, operating_points: list[int],
           training: dict, description: str = "") -> ModelCard:
    """Export ``model`` to ``out_dir`` and write its model card. Returns the card."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    cfg = model.cfg
    s = cfg.max_symbols
    bad = [k for k in operating_points if not 1 <= int(k) <= s]
    if not operating_points or bad:
        raise ValueError(f"operating points {list(operating_points)}: each must be 1..{s} symbols per location "
                         f"(the model's maximum)")
    cbrs = [k / (sym.STRIDE * sym.STRIDE * 3) for k in operating_points]
    commit = git_commit()
    common = {
        "testbed.model_name": name,
        "testbed.codec": "jscc-v1",
        "testbed.cbr": ",".join(f"{c:.6f}" for c in cbrs),
        "testbed.symbols_per_location": ",".join(str(k) for k in operating_points),
        "testbed.max_symbols_per_location": s,
        "testbed.cbr_formula": "k * ceil(H/16) * ceil(W/16) / (H*W*3)",
        "testbed.stride": sym.STRIDE,
        "testbed.snr_range_db": f"{cfg.snr_min_db:g},{cfg.snr_max_db:g}",
        "testbed.training_data": training.get("data", ""),
        "testbed.training_channel": training.get("channel", ""),
        "testbed.git_commit": commit,
        "testbed.opset": OPSET,
        "testbed.exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "testbed.codec_config": json.dumps(cfg.to_dict()),
    }
    img = torch.randint(0, 256, (1, 64, 80, 3), dtype=torch.uint8)
    snr = torch.tensor([10.0])
    k = torch.tensor([s], dtype=torch.int64)
    enc_path, dec_path = out / ENCODER_FILE, out / DECODER_FILE
    with torch.no_grad():
        _export_one(EncoderGraph(model), (img, snr, k), enc_path,
                    ["image", "snr_db", "symbols_per_location"], ["symbols"],
                    {"image": {0: "batch", 1: "height", 2: "width"}, "snr_db": {0: "batch"},
                     "symbols": {0: "batch", 1: "n_symbols"}},
                    {**common, "testbed.graph": "encoder", "testbed.input_layout": ENCODER_LAYOUT})
        stream = EncoderGraph(model)(img, snr, k)
        _export_one(DecoderGraph(model), (stream, snr, torch.tensor([64, 80])), dec_path,
                    ["symbols", "snr_db", "image_size"], ["image"],
                    {"symbols": {0: "batch", 1: "n_symbols"}, "snr_db": {0: "batch"},
                     "image": {0: "batch", 1: "height", 2: "width"}},
                    {**common, "testbed.graph": "decoder", "testbed.input_layout": DECODER_LAYOUT})
    card = ModelCard(
        name=name,
        codec="jscc-v1",
        description=description,
        encoder={"file": ENCODER_FILE, "sha256": sha256_file(enc_path)},
        decoder={"file": DECODER_FILE, "sha256": sha256_file(dec_path)},
        sha256=model_sha256(enc_path, dec_path),
        operating_points=[{"symbols_per_location": kk, "cbr": round(c, 6)} for kk, c in zip(operating_points, cbrs)],
        max_symbols_per_location=s,
        stride=sym.STRIDE,
        snr_range_db=[cfg.snr_min_db, cfg.snr_max_db],
        opset=OPSET,
        parameters=count_parameters(model),
        git_commit=commit,
        training=training,
        evaluation={},
    )
    card.write(out / CARD_NAME)
    log.info("exported %s to %s (sha256 %s)", name, out, card.sha256[:16])
    return card


def check_against_torch(model: JSCC, model_dir: str | Path, height: int = 72, width: int = 88,
                        snr_db: float = 7.0, k: int | None = None, seed: int = 0) -> dict:
    """Run both graphs in onnxruntime and in PyTorch on the same input; return max abs errors."""
    import onnxruntime as ort

    d = Path(model_dir)
    k = k or model.cfg.max_symbols
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (1, height, width, 3), dtype=torch.uint8, generator=g)
    snr = torch.tensor([snr_db])
    kk = torch.tensor([k], dtype=torch.int64)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    enc = ort.InferenceSession(str(d / ENCODER_FILE), opts, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(d / DECODER_FILE), opts, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref_sym = EncoderGraph(model)(img, snr, kk).numpy()
        ort_sym = enc.run(None, {"image": img.numpy(), "snr_db": snr.numpy(), "symbols_per_location": kk.numpy()})[0]
        size = torch.tensor([height, width])
        ref_img = DecoderGraph(model)(torch.from_numpy(ort_sym), snr, size).numpy()
        ort_img = dec.run(None, {"symbols": ort_sym, "snr_db": snr.numpy(), "image_size": size.numpy()})[0]
    return {
        "symbols_shape": list(ort_sym.shape),
        "symbols_max_abs_err": float(np.abs(ref_sym - ort_sym).max()),
        "image_shape": list(ort_img.shape),
        "image_max_abs_err": int(np.abs(ref_img.astype(int) - ort_img.astype(int)).max()),
        "image_mean_abs_err": float(np.abs(ref_img.astype(float) - ort_img.astype(float)).mean()),
    }
