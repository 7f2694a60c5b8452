#!/usr/bin/env bash
# Reproduce the codec figures of BENCHMARKS.md (needs ../shared/data/kodak). Writes runs/bench/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
./scripts/setup.sh
KODAK="${KODAK:-$ROOT/../shared/data/kodak}"
TB=.venv/bin/testbed
mkdir -p runs/bench
for cbr in 0.0625 0.020833; do
    start=$(date +%s)
    $TB eval --model jscc-v1 --data "$KODAK" --snr-db 0,5,10,15,20 --cbr $cbr --seed 0 \
        --out runs/bench/kodak-awgn-cbr$cbr --force --record-in-card kodak
    echo "eval wall time (s): $(( $(date +%s) - start ))" | tee runs/bench/kodak-awgn-cbr$cbr/wall_time.txt
done
$TB bench codec --model jscc-v1 --size 768x512 --repeat 20 --json | tee runs/bench/latency-768x512.json
.venv/bin/python scripts/bench_tables.py runs/bench/kodak-awgn-cbr0.0625 runs/bench/kodak-awgn-cbr0.020833
