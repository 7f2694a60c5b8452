"""The one registry of valid names: channels, shipped models, sample images.

Shipped models live in ``models/<name>/`` beside the package (or in ``$TESTBED_MODELS``); each
has a ``model_card.yaml``. Sample images for the default run live in ``samples/``.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHANNELS = ("awgn", "rayleigh")   # training/evaluation channel models (testbed.codec.channel)
ALLOCATIONS = ("entropy", "measured")   # where an AKB codec's rate map comes from (testbed.akb.allocation)
PRECISIONS = ("fp32", "bf16")          # training precisions (testbed.precision)
DEFAULT_MODEL = "jscc-v1"
from .codec.modelcard import CARD_NAME  # noqa: E402


def models_dir() -> Path:
    return Path(os.environ.get("TESTBED_MODELS", REPO_ROOT / "models"))


def samples_dir() -> Path:
    return Path(os.environ.get("TESTBED_SAMPLES", REPO_ROOT / "samples"))


def shipped_models() -> dict[str, Path]:
    d = models_dir()
    if not d.is_dir():
        return {}
    return {p.name: p for p in sorted(d.iterdir()) if (p / CARD_NAME).is_file()}


def find_model(name: str) -> Path | None:
    return shipped_models().get(name)
