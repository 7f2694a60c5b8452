"""``testbed export``: checkpoint -> encoder.onnx + decoder.onnx + model_card.yaml.

The graphs follow the contract in :mod:`testbed.codec.graphs`. Their ``metadata_props`` carry
what a receiver or a controller needs to use them without the checkpoint: CBR operating points,
SNR range, stride, training data, git commit, opset and input layout. The card's ``training``
section comes from the checkpoint (:func:`training_record`), with ``training.lineage``: the stages
of the model that ``--init-from`` named, then the checkpoint's run.
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

from ..core.card import CARD_NAME, read_card
from ..core.codecs import ModelError, resolve_model_dir
from ..core.ortsession import sha256_file
from ..core.runlog import write_bytes_atomic
from . import symbols as sym
from .graphs import DecoderGraph, EncoderGraph
from .model import JSCC, arch_of, count_parameters
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


def inherited_lineage(init_from: str | None, _depth: int = 0) -> list[dict]:
    """The lineage a run started from (its ``--init-from``): a model folder's or model name's
    ``training.lineage``; for a checkpoint of `testbed train codec`, the stages of the run that
    wrote it (followed back through its own ``--init-from``). Empty without ``--init-from``, for a
    card without a lineage, or where a checkpoint is gone or unreadable."""
    if not init_from:
        return []
    p = Path(init_from).expanduser()
    if p.is_file():
        try:
            ck = torch.load(p, map_location="cpu", weights_only=False) if _depth < 32 else None
        except Exception as e:  # not a checkpoint: training would have refused it
            log.warning("--init-from %s: not readable as a checkpoint (%s); the lineage starts after it", p, e)
            return []
        if not isinstance(ck, dict) or "codec_config" not in ck or not ck.get("train_config") \
                or not isinstance(ck.get("step"), int):   # not a checkpoint of a training run
            return []
        return _with_stage(inherited_lineage(ck.get("train_config", {}).get("init_from"), _depth + 1), ck, p)
    try:
        d = resolve_model_dir(p)
    except ModelError as e:
        log.warning("--init-from %s: %s; the card's lineage starts at this run", init_from, e)
        return []
    card = read_card(d / CARD_NAME, ModelCard)
    return [dict(st) for st in card.training.get("lineage", [])]


def read_final_metrics(checkpoint: str | Path) -> dict:
    """``final_metrics.json`` of the run folder holding ``checkpoint`` ({} before the run ended)."""
    final = Path(checkpoint).parent / "final_metrics.json"
    return json.loads(final.read_text()) if final.exists() else {}


def lineage_stage(stage, ck: dict, checkpoint: str | Path, command: str | None = None,
                  result: dict | None = None) -> dict:
    """The lineage entry of the run that wrote ``checkpoint`` (``ck``: its contents): ``command``
    (default: the one the run recorded), ``steps`` (where the run ended), ``init_from``, ``run``
    (its folder), ``shipped`` (the checkpoint exported: file, step, weights) and ``result``."""
    tc = ck.get("train_config", {})
    st = {"stage": stage, "command": command or tc.get("command", ""),
          "steps": read_final_metrics(checkpoint).get("step", ck.get("step"))}
    if tc.get("init_from"):
        st["init_from"] = str(tc["init_from"])
    if tc.get("out"):
        st["run"] = str(tc["out"])
    st["shipped"] = {"checkpoint": Path(checkpoint).name, "step": ck.get("step"),
                     "weights": "ema" if ck.get("ema") is not None else "raw"}
    if result:
        st["result"] = result
    return st


def extend_lineage(parents: list[dict], stage: dict) -> list[dict]:
    """``parents`` then ``stage``. Stages at the end of ``parents`` from the same run folder as
    ``stage`` (the ``--init-from`` model is an earlier export of this run, e.g. the same checkpoint
    exported again over its model folder) are replaced, not repeated."""
    def same(st: dict) -> bool:
        return bool(st.get("run")) and bool(stage.get("run")) and \
            Path(str(st["run"])).expanduser().resolve() == Path(str(stage["run"])).expanduser().resolve()

    kept = list(parents)
    while kept and same(kept[-1]):
        kept.pop()
    return kept + [stage]


def _with_stage(parents: list[dict], ck: dict, checkpoint: str | Path, command: str | None = None) -> list[dict]:
    """``parents`` extended by the codec v1 run of ``checkpoint``, numbered after their numbered stages."""
    tc = ck.get("train_config", {})
    final = read_final_metrics(checkpoint)
    result = None
    if final.get("validation"):
        psnr: dict = {}
        for r in final["validation"]:
            psnr.setdefault(f"cbr={r['cbr']:.4f}", {})[f"{r['snr_db']:g}"] = round(r["val_psnr_db"], 2)
        result = {"data": tc.get("val", ""), "images": final.get("val_images"), "psnr_db": psnr}
    this = lineage_stage(0, ck, checkpoint, command, result)
    lineage = extend_lineage(parents, this)
    this["stage"] = 1 + sum(isinstance(st.get("stage"), int) for st in lineage[:-1])
    return lineage


def training_record(checkpoint: str | Path, ck: dict, command: str | None = None) -> dict:
    """The card's ``training`` section for a codec v1 exported from ``checkpoint`` (``ck``: its
    contents): the run's data and options, its final validation, and ``lineage`` (the stages of
    the ``--init-from`` model, then this run; ``command`` overrides the run's recorded command)."""
    tc = ck.get("train_config", {})
    final = read_final_metrics(checkpoint)
    training = {
        "lineage": _with_stage(inherited_lineage(tc.get("init_from")), ck, checkpoint, command),
        "data": tc.get("data", ""),
        "val": tc.get("val", ""),
        "channel": tc.get("channel", ""),
        "steps": ck.get("step"),
        "batch": tc.get("batch"),
        "crop": tc.get("crop"),
        "mosaic": tc.get("mosaic", 1),
        "seed": tc.get("seed"),
        "checkpoint_step": ck.get("step"),
    }
    if final:
        training["final_validation"] = final.get("validation", [])
    return training


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
        "testbed.architecture": arch_of(cfg),
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
        architecture=arch_of(cfg),
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
