"""The digital codecs' evaluation tables (what a learned codec keeps in its model card).

A built-in codec has no model folder, so ``testbed eval --model jpeg2000-ldpc --record-in-card
kodak`` records its Kodak PSNR-vs-SNR table in ``testbed/data/digital_eval.json`` instead, under
the codec's name and its identity (:attr:`DigitalCodec.sha256`: the LDPC codes and the MCS BLER
table). The table is what the agent controller plans with (as it does with the learned codecs'
cards); a table recorded for another identity (the codes or the MCS table changed since) is not
used, and a warning says so.

    {"jpeg2000-ldpc": {"sha256": "...", "evaluation": {"kodak/awgn/cbr=0.0625": {"psnr_db": {...}, ...}}}}
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..core.runlog import write_json_atomic

log = logging.getLogger(__name__)

EVAL_FILE = Path(__file__).resolve().parents[1] / "data" / "digital_eval.json"


def eval_file() -> Path:
    """The table: ``$TESTBED_DIGITAL_EVAL`` if set (tests, a private copy), else the shipped one."""
    return Path(os.environ.get("TESTBED_DIGITAL_EVAL") or EVAL_FILE)


def _read(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable evaluation table ({e})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected an object of codec name -> {{sha256, evaluation}}")
    return data


def load_evaluation(name: str, sha256: str, path: Path | None = None) -> dict:
    """The evaluation table recorded for codec ``name`` with identity ``sha256`` ({} if none)."""
    path = path or eval_file()
    entry = _read(path).get(name)
    if entry is None:
        return {}
    if entry.get("sha256") != sha256:
        log.warning("%s: the evaluation of %s was recorded for another version of it (sha256 %s..., this one "
                    "%s...): not used; record it again with testbed eval --record-in-card", path, name,
                    str(entry.get("sha256"))[:12], sha256[:12])
        return {}
    ev = entry.get("evaluation")
    if not isinstance(ev, dict):
        raise ValueError(f"{path}: key '{name}.evaluation': expected an object, got {type(ev).__name__}")
    return ev


def record_evaluation(name: str, sha256: str, key: str, result: dict, path: Path | None = None) -> Path:
    """Store ``result`` under ``key`` for codec ``name`` (the tables of another identity of it
    are dropped); the file is replaced atomically."""
    path = path or eval_file()
    data = _read(path)
    entry = data.get(name)
    evaluation = dict(entry.get("evaluation") or {}) if entry and entry.get("sha256") == sha256 else {}
    evaluation[key] = result
    data[name] = {"sha256": sha256, "evaluation": dict(sorted(evaluation.items()))}
    write_json_atomic(path, dict(sorted(data.items())))
    return path
