#!/usr/bin/env bash
# The main job on the built-in default: the shipped codec on the shipped sample images through the
# loopback (software) channel; prints a PSNR table per CBR and writes a plot. Extra args go to
# `testbed demo` (e.g. --snr-db 5,10 --json).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
# no cd: path arguments (--images DIR, --out DIR) are relative to where the user runs it
exec "$ROOT/.venv/bin/testbed" demo "$@"
