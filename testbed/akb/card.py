"""Model card of an AKB codec folder (``model_card.yaml`` with ``codec: akb-jscc``).

Beyond the fields of every card (:class:`testbed.core.card.CardBase`): every graph with its
sha256, the source KB file, the rate set and block size, and the CBR range.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.card import CardBase, ModelCardError, check_graphs, check_range

CODEC = "akb-jscc"
GRAPHS = ("embedder", "encoder_analysis", "encoder_symbols", "decoder")
OPTIONAL_GRAPHS = ("policy",)


@dataclass(kw_only=True)
class AkbCard(CardBase):
    KIND = CODEC
    WHAT = "an AKB codec"
    HEADER = ("# AKB-JSCC model card (written by `testbed export-akb`; evaluation by "
              "`testbed eval --record-in-card`)")
    GRAPH_ROLES = GRAPHS

    graphs: dict                 # role -> {file, sha256}
    kb: dict                     # {file, sha256 (of the vectors), entries, dim, provider}
    rate_set: list[int]
    block_pixels: int
    rate_bits: int
    kb_index_bits: int
    cbr_range: list[float]

    @classmethod
    def check(cls, p: Path, data: dict) -> None:
        check_graphs(p, "graphs", data["graphs"], GRAPHS, OPTIONAL_GRAPHS)
        if not {"file", "sha256"} <= set(data["kb"]):
            raise ModelCardError(f"{p}: key 'kb' must have 'file' and 'sha256'")
        check_range(p, data, "cbr_range")
        rs = data["rate_set"]
        if not (rs and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in rs) and rs == sorted(rs)):
            raise ModelCardError(f"{p}: key 'rate_set' must be increasing positive integers, got {rs!r}")

    def graphs_by_role(self) -> dict[str, dict]:
        return dict(self.graphs)

    def cbrs(self) -> list[float]:
        return [float(c) for c in self.cbr_range]
