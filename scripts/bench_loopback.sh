#!/usr/bin/env bash
# Reproduce the loopback (GNU Radio flowgraph) figures of BENCHMARKS.md on Kodak; writes
# runs/bench/loopback-*. Needs ../shared/data/kodak (or KODAK=...). About 10 minutes on 2 cores.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
./scripts/setup.sh
KODAK="${KODAK:-$ROOT/../shared/data/kodak}"
TB=.venv/bin/testbed
B=runs/bench
mkdir -p $B
$TB loopback --images "$KODAK" --snr-db 5,10,15,20 --seed 0 --out $B/loopback-kodak-awgn --force
$TB eval --model jscc-v1 --data "$KODAK" --snr-db 5,10,15,20 --seed 0 --no-separation --out $B/eval-kodak-5-20 --force
SP=3906.25   # sub-carrier spacing at 1 MS/s (fft_len 256)
run15() { $TB loopback --images "$KODAK" --snr-db 15 --seed 0 --no-ms-ssim --out "$B/loopback-kodak-15-$1" --force "${@:2}"; }
run15 awgn
run15 cfo+1.5 --cfo-hz "$(python3 -c "print(1.5*$SP)")"
run15 cfo-1.5 --cfo-hz="$(python3 -c "print(-1.5*$SP)")"
run15 timing --delay-samples 12345
run15 sco20 --sco-ppm 20
run15 tdl-a --multipath tdl-a --seed 1
run15 tdl-c --multipath tdl-c --seed 1
$TB loopback --images "$KODAK" --snr-db 10 --seed 0 --no-ms-ssim --samp-rate 4e6 --out $B/loopback-kodak-4msps --force
.venv/bin/python scripts/bench_phy.py --json $B/phy.json | tee $B/phy.md
.venv/bin/python scripts/bench_loopback_tables.py $B
