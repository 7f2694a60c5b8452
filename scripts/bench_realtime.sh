#!/usr/bin/env bash
# Does the whole loopback chain keep up with a radio? (BENCHMARKS.md, "Real time".)
#  - free running (as fast as it goes) at 1, 2 and 4 MS/s: the chain's real-time factor;
#  - --realtime (the air paced at the sample rate, the receiver's overflows dropped and counted)
#    at 1, 2, 8 and 32 MS/s (32: a forced overload on a 2-core machine).
# Kodak (../shared/data/kodak, else samples/), shipped default model, 10 dB. Writes
# runs/bench/realtime-*, prints one JSON line per run.
#   ./scripts/bench_realtime.sh [IMAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
images="${1:-../shared/data/kodak}"
[ -d "$images" ] || images=samples
tb=.venv/bin/testbed
mkdir -p runs/bench
run() {   # NAME ARGS...
    local name=$1; shift
    $tb loopback --images "$images" --snr-db 10 --no-ms-ssim --force --out "runs/bench/realtime-$name" "$@" >/dev/null
    .venv/bin/python - "runs/bench/realtime-$name/summary.json" "$name" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
(pc,), (r,) = s["phy_counters"], s["results"]
keys = ("samp_rate", "real_time_factor", "wall_s", "cpu_s", "tx_samples", "air_samples", "air_dropped_samples",
        "air_dropped_tx_samples", "air_overflows", "air_underflow_samples", "images_hit")
out = {"run": sys.argv[2], "n_images": r["n_images"], "frames": f"{r['frames_decoded']}/{r['frames_sent']}",
       "psnr_db": round(r["psnr_db"], 2), "latency_ms": round(r["latency_ms"]),
       "samp_rate": s["ofdm"]["samp_rate"], **{k: pc.get(k) for k in keys[1:]}}
out["images_hit"] = sorted(map(int, out["images_hit"])) if out["images_hit"] is not None else None
print(json.dumps(out))
PY
}
for r in 1e6 2e6 4e6; do run "free-$r" --samp-rate "$r"; done
for r in 1e6 2e6 8e6 32e6; do run "paced-$r" --samp-rate "$r" --realtime; done
