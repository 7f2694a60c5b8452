"""Where shipped things are found: models, sample images, radio config examples.

They are package data (``testbed/data/``), so an installed wheel finds them without a checkout;
in a checkout the top-level ``models``, ``samples`` and ``firmware_configs`` are links to the
same folders. One search path for models: ``--models-dir`` (where a command has it), else
``$TESTBED_MODELS``, else the shipped ``testbed/data/models``. Sample images: ``$TESTBED_SAMPLES``,
else ``testbed/data/samples``.
"""
from __future__ import annotations

import os
from pathlib import Path

from .card import CARD_NAME

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEFAULT_MODEL = "jscc-v1"


def models_dir() -> Path:
    return Path(os.environ.get("TESTBED_MODELS") or DATA_DIR / "models")


def samples_dir() -> Path:
    return Path(os.environ.get("TESTBED_SAMPLES") or DATA_DIR / "samples")


def firmware_configs_dir() -> Path:
    """Example radio configs and the Pluto ``config.txt`` template."""
    return DATA_DIR / "firmware_configs"


def shipped_models(folder: str | Path | None = None) -> dict[str, Path]:
    """Model name -> folder of every model (a folder holding a model card) in ``folder``
    (default: :func:`models_dir`)."""
    d = Path(folder) if folder is not None else models_dir()
    if not d.is_dir():
        return {}
    return {p.name: p for p in sorted(d.iterdir()) if (p / CARD_NAME).is_file()}


def find_model(name: str, folder: str | Path | None = None) -> Path | None:
    return shipped_models(folder).get(name)
