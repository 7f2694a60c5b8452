#!/usr/bin/env bash
# Set up (idempotent) and run the test suite. Extra args go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" --tests
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
