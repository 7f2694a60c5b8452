#!/usr/bin/env bash
# Kodak PSNR against SNR (AWGN, ideal symbol channel) of the learned codecs and the digital
# baselines (JPEG 2000 + LDPC at every MCS and auto, JPEG + LDPC auto) at CBR 0.021 and 0.0625,
# then one `testbed compare` report per CBR, the digital codecs' tables for the agent controller
# (testbed/data/digital_eval.json) and the markdown table of BENCHMARKS.md.
#
#   scripts/bench_compare.sh [KODAK_DIR] [OUT_DIR]
#
# Runs two evaluations at a time (about 40 minutes on the 2-core VM); an existing run folder with
# a summary.json is kept (delete it to measure again).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${1:-$ROOT/../shared/data/kodak}"
OUT="${2:-$ROOT/runs/bench-compare}"
TB="$ROOT/.venv/bin/testbed"
SNRS="0,5,10,15,20,25"
mkdir -p "$OUT"

jobs_=()
run() {   # run NAME ARGS...: one eval into $OUT/NAME (skipped when done)
    local name="$1"; shift
    [ -f "$OUT/$name/summary.json" ] && return 0
    "$TB" eval --data "$DATA" --snr-db "$SNRS" --threads 1 --out "$OUT/$name" --force "$@" \
        > "$OUT/$name.log" 2>&1 &
    jobs_+=($!)
    if (( ${#jobs_[@]} >= 2 )); then wait "${jobs_[0]}"; jobs_=("${jobs_[@]:1}"); fi
}

for cbr in 0.020833 0.0625; do
    run "jscc-v1-$cbr" --model jscc-v1 --cbr "$cbr"
    run "akb-v1-$cbr" --model akb-v1 --cbr "$cbr" --no-separation
    run "jpeg2000-ldpc-auto-$cbr" --model jpeg2000-ldpc --cbr "$cbr" --mcs auto --no-separation
    for mcs in qpsk-1/2 qpsk-3/4 16qam-1/2 16qam-3/4 64qam-2/3 64qam-3/4 64qam-5/6; do
        run "jpeg2000-ldpc-${mcs/\//_}-$cbr" --model jpeg2000-ldpc --cbr "$cbr" --mcs "$mcs" --no-separation
    done
done
run "jpeg-ldpc-auto-0.0625" --model jpeg-ldpc --cbr 0.0625 --mcs auto --no-separation
wait

for cbr in 0.020833 0.0625; do
    "$TB" compare "$OUT"/jscc-v1-$cbr "$OUT"/akb-v1-$cbr "$OUT"/jpeg2000-ldpc-auto-$cbr \
        "$OUT"/jpeg2000-ldpc-qpsk-1_2-$cbr "$OUT"/jpeg2000-ldpc-16qam-1_2-$cbr "$OUT"/jpeg2000-ldpc-64qam-2_3-$cbr \
        --image kodim23.png --snr-db 0,5,10,20 --out "$OUT/compare-$cbr" --force > /dev/null
done

# the digital codecs' Kodak tables (MCS auto), which the agent controller plans with
for r in jpeg2000-ldpc-auto-0.020833 jpeg2000-ldpc-auto-0.0625 jpeg-ldpc-auto-0.0625; do
    m="${r%-auto-*}"; c="${r##*-}"
    "$ROOT/.venv/bin/python" "$ROOT/scripts/record_eval.py" "$OUT/$r" --force --command \
        "testbed eval --model $m --cbr $c --mcs auto --data KODAK --snr-db $SNRS --no-separation (scripts/bench_compare.sh)" >&2
done

"$ROOT/.venv/bin/python" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| run | " + " | ".join(f"{s} dB" for s in (0, 5, 10, 15, 20, 25)) + " |")
print("|---|" + "---:|" * 6)
for d in sorted(out.iterdir()):
    f = d / "summary.json"
    if not f.is_file():
        continue
    s = json.loads(f.read_text())
    cells = []
    for r in s["results"]:
        v = f"{r['psnr_db']:.2f}"
        if "bler" in r:
            v += f" ({','.join(r['mcs'])}, BLER {r['bler']:.2f})" if s.get("mcs") == "auto" else f" (BLER {r['bler']:.2f})"
        cells.append(v)
    sep = ""
    if s["model"] == "jscc-v1":
        cells2 = [f"{r['jpeg2000_psnr_db']:.2f}" if r.get("jpeg2000_psnr_db") is not None else "-" for r in s["results"]]
        sep = f"\n| JPEG 2000 at capacity (reference), CBR {s['cbr']:.4f} | " + " | ".join(cells2) + " |"
    print(f"| {d.name} | " + " | ".join(cells) + " |" + sep)
EOF
