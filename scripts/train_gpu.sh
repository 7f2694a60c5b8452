#!/usr/bin/env bash
# One whole GPU training run of codec v2 (or of the AKB codec on it), in one go (docs/training.md,
# "Training on the GPU").
#
#   scripts/train_gpu.sh [--what codec|akb] [--minutes M] [--init-from MODEL_OR_WEIGHTS] [--out DIR]
#                        [--device cuda|cpu] [-- EXTRA `testbed train codec|akb` OPTIONS]
#
# Runs from the repository root with the machine's own python3 (PyTorch there; nothing is
# installed), on the training-image pack built beforehand by
#   testbed train pack --data ../shared/data/train --val ../shared/data/val      (-> train-pack/)
# The images stay on the GPU with the crops drawn there, the forward pass runs in bf16 autocast,
# and the step loop stops cleanly after --minutes (default 7.5) with the learning rate annealed
# by then. A new codec run starts from PCA-initialised weights; --init-from continues from a shipped
# model (e.g. models/jscc-v2: its ONNX weights) or from the weights_fp16.pt of an earlier run,
# so no optimiser state has to travel. --what akb trains the AKB codec from the codec v2 that
# --init-from names (required), with the rate term training the analysis transform (--rate-grad).
# Writes to --out (default: $OUT, else gpu-out/):
#   weights_fp16.pt     the validated weights in float16 + configs (`testbed export` takes it)
#   train_log.csv, val_log.csv, final_metrics.json, train_config.json, pack.json, run.log
# EXTRA options override the defaults below (argparse keeps the last value), e.g. -- --batch 8.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
PACK="${PACK:-train-pack}"
OUTDIR="${OUT:-gpu-out}"
MINUTES=7.5
DEVICE=cuda
WHAT=codec
INIT=()
while [ $# -gt 0 ]; do
    case "$1" in
        --what) WHAT="$2"; shift 2 ;;
        --minutes) MINUTES="$2"; shift 2 ;;
        --init-from) INIT=(--init-from "$2"); shift 2 ;;
        --out) OUTDIR="$2"; shift 2 ;;
        --device) DEVICE="$2"; shift 2 ;;
        --) shift; break ;;
        *) echo "train_gpu.sh: unknown option $1 (extra training options go after --)" >&2; exit 2 ;;
    esac
done
case "$WHAT" in
    codec) ARGS=(--arch v2 --steps 1000000 --batch 16 --crop 256 --mosaic 2 --lr 4e-4 --warmup 300 --ema 0.999
                 --val-every 1000 --ckpt-every 1000) ;;
    akb) [ ${#INIT[@]} -gt 0 ] || { echo "train_gpu.sh: --what akb needs --init-from (a codec v2 model or weights)" >&2; exit 2; }
         ARGS=(--steps 1000000 --entropy-steps 400 --batch 8 --crop 256 --lr 2e-4 --warmup 200 --ema 0.998
               --rate-grad --val-every 1000 --ckpt-every 1000) ;;
    *) echo "train_gpu.sh: --what must be codec or akb, got $WHAT" >&2; exit 2 ;;
esac
for d in "$PACK/train" "$PACK/val"; do
    [ -d "$d" ] || { echo "train_gpu.sh: $d missing: build the pack first (testbed train pack, docs/training.md)" >&2; exit 2; }
done
mkdir -p "$OUTDIR"
RUN="$(mktemp -d "${TMPDIR:-/tmp}/train-gpu.XXXXXX")"
LOG="$OUTDIR/run.log"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30
{
    echo "# train_gpu.sh $(date -u +%FT%TZ) git $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__,
          "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))'
} 2>&1 | tee "$LOG"
cp "$PACK/pack.json" "$OUTDIR/" 2>/dev/null || true
set +e
"$PY" -m testbed train "$WHAT" -v --data "$PACK/train" --val "$PACK/val" --out "$RUN" --force \
    --device "$DEVICE" --precision bf16 --data-on-device on --max-minutes "$MINUTES" \
    "${ARGS[@]}" "${INIT[@]}" "$@" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
set -e
for f in weights_fp16.pt train_log.csv val_log.csv final_metrics.json train_config.json; do
    [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUTDIR/"
done
echo "# exit $rc; results in $OUTDIR" | tee -a "$LOG"
exit "$rc"
