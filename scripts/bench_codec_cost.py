#!/usr/bin/env python3
"""Encode + decode time of two fixed-rate codecs side by side, one onnxruntime thread, 768x512.

    .venv/bin/python scripts/bench_codec_cost.py [--a jscc-v1] [--b v2-architecture] [--rounds 4]

``--b v2-architecture`` (the default) exports the default codec v2 configuration
(:class:`testbed.codec.arch_v2.CodecConfigV2`) with freshly initialised weights to a temporary
folder: a network's time does not depend on its weights, so this measures the architecture before
a trained v2 exists; give a model folder or name to time a trained one. The two models alternate
(``--rounds`` rounds of ``testbed bench codec``'s measurement, 10 runs each after 2 warm-up runs),
and each one's figure is its lowest median over the rounds, so that both see the same machine
load. Prints a table and, with ``--json``, one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.experiments.bench import bench_codec  # noqa: E402


def v2_architecture(folder: Path) -> str:
    import torch

    from testbed.codec.arch_v2 import CodecConfigV2
    from testbed.codec.export import export
    from testbed.codec.model import JSCC

    torch.manual_seed(0)
    model = JSCC(CodecConfigV2())
    with torch.no_grad():   # the zero-started output layers get weights, so that every path computes
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    export(model, folder, name="v2-architecture", operating_points=[16, 48],
           training={"data": "none: fresh weights, for timing (scripts/bench_codec_cost.py)"})
    return str(folder)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", default="jscc-v1")
    p.add_argument("--b", default="v2-architecture")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--size", default="768x512")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        models = {name: (v2_architecture(Path(tmp) / "v2") if name == "v2-architecture" else name)
                  for name in (a.a, a.b)}
        best: dict[str, dict] = {}
        for _ in range(a.rounds):
            for name, path in models.items():
                r = bench_codec(path, height=h, width=w, repeat=10, warmup=2, threads=1)
                cur = best.setdefault(name, {"encode_ms": float("inf"), "decode_ms": float("inf")})
                cur["encode_ms"] = min(cur["encode_ms"], r["encode"]["median_ms"])
                cur["decode_ms"] = min(cur["decode_ms"], r["decode"]["median_ms"])
                cur["sha256"] = r["model_sha256"]
    for v in best.values():
        v["total_ms"] = v["encode_ms"] + v["decode_ms"]
    ratio = best[a.b]["total_ms"] / best[a.a]["total_ms"]
    result = {"size": a.size, "threads": 1, "rounds": a.rounds, "models": best, "ratio_b_over_a": round(ratio, 3)}
    if a.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"| model | encode ms | decode ms | encode + decode ms |\n|---|---:|---:|---:|")
        for name, v in best.items():
            print(f"| {name} | {v['encode_ms']:.1f} | {v['decode_ms']:.1f} | {v['total_ms']:.1f} |")
        print(f"\n{a.b} / {a.a}: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
