"""PHY throughput with the C++ blocks (gr-testbedphy) and with the Python reference blocks, side
by side in one run (no codec, random unit-power payloads, 15 dB AWGN loopback channel):

* ``rx``: channel + receiver on recorded TX samples (``phy_link.receive``), samples per second of
  wall time from flowgraph start until every sample was read (minus the 0.3 s idle wait);
* ``live``: TX -> channel -> RX in one flowgraph, frames back to back (``phy_link.throughput``).

    .venv/bin/python scripts/bench_phy_impls.py [--frames 150] [--json out.json]
Prints one JSON object; ``msps`` is million samples per second; ``cpu_s`` and ``cpu_by_block``
(CPU seconds of each block's thread, GNU Radio names it after the block; the instance number
dropped) are measured over the same span as ``msps``. ``--table`` also prints the per-block CPU
of the four runs as a Markdown table (stderr).
"""
import argparse
import json
import os
import re
import sys
from collections import Counter

from testbed.gr import phy_link
from testbed.phy.config import OfdmConfig

ap = argparse.ArgumentParser()
ap.add_argument("--frames", type=int, default=150)
ap.add_argument("--json")
ap.add_argument("--table", action="store_true")
a = ap.parse_args()


def by_block(cpu_by_thread: dict, known: set) -> dict:
    """Threads are named "<block><instance>", cut at 15 characters: drop the instance number and
    add up the cuts of one name ("header_payloa" and "header_payload" are one block); ``known``
    collects the names across runs."""
    names = {t: re.sub(r"\d+$", "", t).rstrip("_") for t in cpu_by_thread}
    known.update(names.values())
    c: Counter = Counter()
    for t, sec in cpu_by_thread.items():
        c[names[t]] += sec
    return dict(c)


def merge_cuts(blocks: dict, known: set) -> dict:
    c: Counter = Counter()
    for n, sec in blocks.items():
        c[max((m for m in known if m.startswith(n)), key=len)] += sec
    return {k: round(v, 3) for k, v in c.most_common()}


cfg = OfdmConfig()
frames, _, _ = phy_link.random_frames(a.frames, cfg, seed=2)
x, _ = phy_link.transmit(frames, cfg)
out = {"frames": len(frames), "samples": int(x.size)}
known: set = set()
for impl in ("cpp", "python"):
    os.environ["TESTBED_PHY_IMPL"] = impl
    r = phy_link.receive(x, cfg, snr_db=15.0, idle=0.3)
    t = r.counters["wall_s"] - 0.3
    out[f"rx_{impl}"] = {"msps": x.size / t / 1e6, "frames": len(r.frames), "wall_s": t,
                         "cpu_s": r.counters["cpu_s"], "cpu_by_block": by_block(r.counters["cpu_by_thread"], known)}
    live = phy_link.throughput(frames, cfg, impl=impl)
    out[f"live_{impl}"] = {**{k: live[k] for k in ("msps", "frames_received", "wall_s", "cpu_s")},
                           "cpu_by_block": by_block(live["cpu_by_thread"], known)}
for k in ("rx_cpp", "rx_python", "live_cpp", "live_python"):
    out[k]["cpu_by_block"] = merge_cuts(out[k]["cpu_by_block"], known)
print(json.dumps(out, indent=1))
if a.table:
    runs = ["rx_cpp", "rx_python", "live_cpp", "live_python"]
    names = sorted({n for r in runs for n in out[r]["cpu_by_block"]},
                   key=lambda n: -max(out[r]["cpu_by_block"].get(n, 0) for r in runs))
    print("| thread | " + " | ".join(runs) + " |", file=sys.stderr)
    print("|---|" + "---:|" * len(runs), file=sys.stderr)
    for n in names:
        print(f"| {n} | " + " | ".join(f"{out[r]['cpu_by_block'].get(n, 0):.2f}" for r in runs) + " |", file=sys.stderr)
    print("| **total (process)** | " + " | ".join(f"{out[r]['cpu_s']:.2f}" for r in runs) + " |", file=sys.stderr)
if a.json:
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)
