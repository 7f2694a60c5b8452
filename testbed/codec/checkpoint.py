"""Codec models (v1 and v2 architectures) from training checkpoints (`testbed train codec`) and from model folders:
the model of a checkpoint, and the model a run starts from (``--init-from`` of both trainers)."""
from __future__ import annotations

from pathlib import Path

import torch

from .model import JSCC, config_from_dict


def load_model(path: str | Path, map_location="cpu", weights: str = "auto") -> JSCC:
    """Model of a checkpoint; ``weights`` = "ema" | "raw" | "auto" (EMA when the run kept one)."""
    ck = torch.load(path, map_location=map_location, weights_only=False)
    model = JSCC(config_from_dict(ck["codec_config"]))
    use_ema = weights == "ema" or (weights == "auto" and ck.get("ema") is not None)
    if use_ema and ck.get("ema") is None:
        raise ValueError(f"{path}: this checkpoint has no EMA weights")
    model.load_state_dict(ck["ema"] if use_ema else ck["model"])
    model.eval()
    return model


def load_codec(name: str, map_location="cpu") -> JSCC:
    """``--init-from NAME``: a checkpoint or weights file of `testbed train codec` (v1 or v2 architecture),
    else a model folder or name (its ONNX weights)."""
    p = Path(name)
    if p.is_file():
        try:
            return load_model(p, map_location=map_location)
        except Exception as e:  # e.g. an AKB checkpoint, or not a checkpoint at all
            raise ValueError(f"--init-from {p}: not a checkpoint of `testbed train codec` "
                             f"({type(e).__name__}: {e})") from None
    from ..core.codecs import resolve_model_dir
    from .onnx_weights import load_from_onnx

    return load_from_onnx(resolve_model_dir(name))
