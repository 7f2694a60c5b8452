"""Model card of a fixed-rate JSCC codec (``model_card.yaml`` with ``codec: jscc-v1``).

``codec: jscc-v1`` names the graph contract (:mod:`testbed.codec.graphs`), which both
architectures of the fixed-rate codec implement; ``architecture`` (v1 when absent, as in cards
written before v2) names the network. Beyond the fields of every card
(:class:`testbed.core.card.CardBase`): the encoder and decoder graphs with their sha256, the CBR
operating points, the symbols per location and the stride.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.card import CardBase, ModelCardError, _is


@dataclass(kw_only=True)
class ModelCard(CardBase):
    KIND = "jscc-v1"
    WHAT = "a fixed-rate JSCC codec"
    HEADER = "# Model card (written by `testbed export`, evaluation by `testbed eval --record-in-card`)"
    GRAPH_ROLES = ("encoder", "decoder")
    OPTIONAL = CardBase.OPTIONAL + ("architecture",)
    ARCHITECTURES = ("v1", "v2")

    encoder: dict
    decoder: dict
    operating_points: list[dict]
    max_symbols_per_location: int
    stride: int
    architecture: str = "v1"     # the network behind the graphs (v1, or v2: testbed.codec.arch_v2); same contract

    @classmethod
    def check(cls, p: Path, data: dict) -> None:
        if data.get("architecture", "v1") not in cls.ARCHITECTURES:
            raise ModelCardError(f"{p}: key 'architecture' must be one of {', '.join(cls.ARCHITECTURES)}, "
                                 f"got {data['architecture']!r}")
        if data["max_symbols_per_location"] < 1:
            raise ModelCardError(f"{p}: key 'max_symbols_per_location' must be >= 1, "
                                 f"got {data['max_symbols_per_location']}")
        for g in cls.GRAPH_ROLES:
            if not {"file", "sha256"} <= set(data[g]):
                raise ModelCardError(f"{p}: key '{g}' must have 'file' and 'sha256'")
        if not data["operating_points"]:
            raise ModelCardError(f"{p}: key 'operating_points' must be a non-empty list")
        for i, op in enumerate(data["operating_points"]):
            if not isinstance(op, dict) or not {"symbols_per_location", "cbr"} <= set(op):
                raise ModelCardError(f"{p}: operating_points[{i}] needs 'symbols_per_location' and 'cbr'")
            k = op["symbols_per_location"]
            if not _is(op["cbr"], float):
                raise ModelCardError(f"{p}: operating_points[{i}].cbr must be a number, got {op['cbr']!r}")
            if not _is(k, int) or not 1 <= k <= data["max_symbols_per_location"]:
                raise ModelCardError(f"{p}: operating_points[{i}].symbols_per_location={k!r} is outside "
                                     f"1..{data['max_symbols_per_location']}")

    def graphs_by_role(self) -> dict[str, dict]:
        return {"encoder": self.encoder, "decoder": self.decoder}

    def cbrs(self) -> list[float]:
        return [float(p["cbr"]) for p in self.operating_points]
