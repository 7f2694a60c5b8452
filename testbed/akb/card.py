"""Model card of an AKB codec folder (``model_card.yaml`` with ``codec: akb-jscc``).

Names every graph with its sha256, the source KB file, the rate set and block size, the CBR and
SNR ranges, how each part was trained and what it measured. Loading validates every key and
names the file and key of any problem.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from ..codec.modelcard import ModelCardError, check_keys, check_range, check_types
from ..runlog import write_bytes_atomic

CODEC = "akb-jscc"
GRAPHS = ("embedder", "encoder_analysis", "encoder_symbols", "decoder")
OPTIONAL_GRAPHS = ("policy",)


@dataclass
class AkbCard:
    name: str
    codec: str
    graphs: dict                 # role -> {file, sha256}
    kb: dict                     # {file, sha256 (of the vectors), entries, dim, provider}
    sha256: str                  # model identity: sha256 over the codec graphs (GRAPHS order)
    rate_set: list[int]
    block_pixels: int
    rate_bits: int
    kb_index_bits: int
    cbr_range: list[float]
    snr_range_db: list[float]
    opset: int
    parameters: int
    git_commit: str
    training: dict
    evaluation: dict = field(default_factory=dict)
    description: str = ""


def validate_card(p: Path, data: dict) -> AkbCard:
    check_keys(p, data, AkbCard)
    check_types(p, data, AkbCard)
    if data["codec"] != CODEC:
        raise ModelCardError(f"{p}: codec must be {CODEC!r}, got {data['codec']!r}")
    g = data["graphs"]
    if not isinstance(g, dict):
        raise ModelCardError(f"{p}: key 'graphs' must be a mapping of role -> {{file, sha256}}")
    for role in GRAPHS:
        if role not in g:
            raise ModelCardError(f"{p}: graphs.{role} missing")
    for role, v in g.items():
        if role not in GRAPHS + OPTIONAL_GRAPHS:
            raise ModelCardError(f"{p}: graphs.{role}: unknown graph role (valid: {', '.join(GRAPHS + OPTIONAL_GRAPHS)})")
        if not isinstance(v, dict) or not {"file", "sha256"} <= set(v):
            raise ModelCardError(f"{p}: graphs.{role} must have 'file' and 'sha256'")
    if not isinstance(data["kb"], dict) or not {"file", "sha256"} <= set(data["kb"]):
        raise ModelCardError(f"{p}: key 'kb' must have 'file' and 'sha256'")
    for key in ("cbr_range", "snr_range_db"):
        check_range(p, data, key)
    rs = data["rate_set"]
    if not (isinstance(rs, list) and rs and all(isinstance(v, int) and v > 0 for v in rs) and rs == sorted(rs)):
        raise ModelCardError(f"{p}: key 'rate_set' must be increasing positive integers, got {rs!r}")
    return AkbCard(**data)


def write_card(path: str | Path, card: AkbCard) -> None:
    text = "# AKB-JSCC model card (written by `testbed export-akb`; evaluation by `testbed eval --record-in-card`)\n"
    text += yaml.safe_dump(asdict(card), sort_keys=False, width=100)
    write_bytes_atomic(path, text.encode())
