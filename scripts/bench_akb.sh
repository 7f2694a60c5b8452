#!/usr/bin/env bash
# Reproduce the AKB-JSCC ablation table of BENCHMARKS.md (needs ../shared/data/kodak):
# Kodak, AWGN, SNR 0/5/10/15/20 dB, CBR 0.021/0.036/0.0625, for
#   codec v1 (jscc-v1) | + entropy variable-length coding (akb-v1 --no-ckb --no-skb)
#   | + channel KB (akb-v1 --no-skb) | + source KB (akb-v1, the full codec)
#   | the measured-distortion rate map instead of the policy (akb-v1 --allocation measured)
# and the loopback (GNU Radio, rate map and KB index in the frame header) at 10 dB.
# Writes runs/bench-akb/ and prints the tables.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
./scripts/setup.sh
KODAK="${KODAK:-$ROOT/../shared/data/kodak}"
MODEL="${AKB_MODEL:-akb-v1}"
TB=.venv/bin/testbed
OUT=runs/bench-akb
mkdir -p $OUT
SNRS=0,5,10,15,20
for cbr in 0.021 0.036 0.0625; do
    $TB eval --model jscc-v1 --data "$KODAK" --snr-db $SNRS --cbr $cbr --seed 0 --no-separation \
        --out $OUT/v1-cbr$cbr --force
    $TB eval --model "$MODEL" --data "$KODAK" --snr-db $SNRS --cbr $cbr --seed 0 --no-separation --no-ckb --no-skb \
        --out $OUT/vl-cbr$cbr --force
    $TB eval --model "$MODEL" --data "$KODAK" --snr-db $SNRS --cbr $cbr --seed 0 --no-separation --no-skb \
        --out $OUT/ckb-cbr$cbr --force
    $TB eval --model "$MODEL" --data "$KODAK" --snr-db $SNRS --cbr $cbr --seed 0 --no-separation \
        --out $OUT/full-cbr$cbr --force --record-in-card kodak
    $TB eval --model "$MODEL" --data "$KODAK" --snr-db $SNRS --cbr $cbr --seed 0 --no-separation \
        --allocation measured --out $OUT/measured-cbr$cbr --force --record-in-card kodak
done
# pictures: entropy map, rate maps at 0 and 20 dB, reconstructions (first Kodak image)
$TB eval --model "$MODEL" --data "$KODAK" --snr-db 0,20 --cbr 0.036 --seed 0 --no-separation --figures \
    --out $OUT/figures --force
$TB eval --model "$MODEL" --data "$KODAK" --snr-db 0,20 --cbr 0.036 --seed 0 --no-separation --figures \
    --allocation measured --out $OUT/figures-measured --force
# over the (software) air: full AKB codec through the GNU Radio loopback flowgraph at 10 dB
for cbr in 0.021 0.0625; do
    $TB loopback --model "$MODEL" --images "$KODAK" --snr-db 10 --cbr $cbr --seed 0 --out $OUT/loopback-cbr$cbr --force
    $TB loopback --model "$MODEL" --images "$KODAK" --snr-db 10 --cbr $cbr --seed 0 --allocation measured \
        --out $OUT/loopback-measured-cbr$cbr --force
done
.venv/bin/python scripts/bench_akb_tables.py $OUT
