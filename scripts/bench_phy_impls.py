"""PHY throughput with the C++ blocks (gr-testbedphy) and with the Python reference blocks, side
by side in one run (no codec, random unit-power payloads, 15 dB AWGN loopback channel):

* ``rx``: channel + receiver on recorded TX samples (``phy_link.receive``), samples per second of
  wall time from flowgraph start until every sample was read (minus the 0.3 s idle wait);
* ``live``: TX -> channel -> RX in one flowgraph, frames back to back (``phy_link.throughput``).

    .venv/bin/python scripts/bench_phy_impls.py [--frames 150] [--json out.json]
Prints one JSON object; ``msps`` is million samples per second.
"""
import argparse
import json
import os

from testbed.gr import phy_link
from testbed.phy.config import OfdmConfig

ap = argparse.ArgumentParser()
ap.add_argument("--frames", type=int, default=150)
ap.add_argument("--json")
a = ap.parse_args()
cfg = OfdmConfig()
frames, _, _ = phy_link.random_frames(a.frames, cfg, seed=2)
x, _ = phy_link.transmit(frames, cfg)
out = {"frames": len(frames), "samples": int(x.size)}
for impl in ("cpp", "python"):
    os.environ["TESTBED_PHY_IMPL"] = impl
    r = phy_link.receive(x, cfg, snr_db=15.0, idle=0.3)
    t = r.counters["wall_s"] - 0.3
    out[f"rx_{impl}"] = {"msps": x.size / t / 1e6, "frames": len(r.frames), "wall_s": t}
    live = phy_link.throughput(frames, cfg, impl=impl)
    out[f"live_{impl}"] = {k: live[k] for k in ("msps", "frames_received", "wall_s")}
print(json.dumps(out, indent=1))
if a.json:
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)
