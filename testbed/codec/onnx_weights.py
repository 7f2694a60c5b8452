"""Recover a PyTorch :class:`~testbed.codec.model.JSCC` from a shipped ONNX model folder.

The exporter keeps every parameter as a named initializer (``encoder.convs.0.weight``, ...), so a
shipped model can be fine-tuned without its training checkpoint: ``testbed train codec
--init-from models/jscc-v1``. The model configuration comes from the model card.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .model import JSCC, config_from_dict
from ..core.card import CARD_NAME, read_card
from ..core.configfile import load_yaml
from .modelcard import ModelCard


def load_from_onnx(model_dir: str | Path) -> JSCC:
    import onnx
    from onnx import numpy_helper

    d = Path(model_dir)
    kind = load_yaml(d / CARD_NAME, "model card").get("codec")
    if kind != ModelCard.KIND:
        raise ValueError(f"{d}: a {kind} model; only a fixed-rate JSCC model (codec: jscc-v1, architecture v1 "
                         "or v2) can be rebuilt as a PyTorch codec")
    card = read_card(d / CARD_NAME, ModelCard)
    graphs = {role: onnx.load(str(d / card.__dict__[role]["file"])) for role in ("encoder", "decoder")}
    meta = {p.key: p.value for p in graphs["encoder"].metadata_props}
    if "testbed.codec_config" not in meta:
        raise ValueError(f"{d / card.encoder['file']}: no testbed.codec_config in metadata_props")
    try:
        model = JSCC(config_from_dict(json.loads(meta["testbed.codec_config"])))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{d / card.encoder['file']}: testbed.codec_config in metadata_props: {e}") from None
    state = model.state_dict()
    found: dict[str, torch.Tensor] = {}
    for role, graph in graphs.items():
        for init in graph.graph.initializer:
            if init.name in state:
                found[init.name] = torch.from_numpy(np.array(numpy_helper.to_array(init)))
    missing = sorted(set(state) - set(found))
    if missing:
        raise ValueError(f"{d}: the ONNX graphs lack parameters {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}; cannot rebuild the PyTorch model")
    for k, v in found.items():
        if tuple(v.shape) != tuple(state[k].shape):
            raise ValueError(f"{d}: parameter {k} has shape {tuple(v.shape)} in the graph, "
                             f"{tuple(state[k].shape)} in the model configuration")
    model.load_state_dict(found)
    model.eval()
    return model
