#!/usr/bin/env bash
# One idempotent set-up path for this testbed (used by scripts/demo.sh, scripts/test.sh and CI):
#   1. the Debian packages it needs (GNU Radio, libiio, UHD, mosquitto; with --tests also chromium,
#      for the browser test of `testbed compare`'s report), when missing;
#   2. .venv from Debian's Python with --system-site-packages (GNU Radio lives there);
#   3. the package itself with versions known to work together (setup.cfg), when changed;
#   4. the C++ PHY module (gr-testbedphy: CMake, pybind11) into .venv, when its sources changed.
# Re-running it is cheap: every step is skipped when already done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TESTBED_VENV:-$ROOT/.venv}"
PY=/usr/bin/python3
APT_PKGS=(gnuradio gnuradio-dev cmake g++ python3-venv libiio-utils python3-libiio mosquitto uhd-host python3-uhd)
if [ "${1:-}" = "--tests" ]; then APT_PKGS+=(chromium); fi
# TESTBED_APT_PKGS (space-separated) replaces the list, e.g. to check the non-root message.
if [ -n "${TESTBED_APT_PKGS:-}" ]; then read -r -a APT_PKGS <<< "$TESTBED_APT_PKGS"; fi

say() { echo "[setup] $*" >&2; }

missing=()
for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        say "installing Debian packages with sudo: ${missing[*]}"
        sudo sh -c "$cmd" >/dev/null
    else
        say "missing Debian packages: ${missing[*]}"
        say "run as root:  sudo sh -c '$cmd'"
        say "then run this command again."
        exit 1
    fi
fi

if [ ! -x "$VENV/bin/python" ] || ! grep -q "include-system-site-packages = true" "$VENV/pyvenv.cfg" 2>/dev/null; then
    say "creating $VENV (Debian python3 with system site packages)"
    rm -rf "$VENV"
    "$PY" -m venv --system-site-packages "$VENV"
fi

stamp="$VENV/.testbed-setup-stamp"
want="$(cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing the testbed package and its pinned dependencies into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade "pip>=23" >/dev/null
    # torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
    "$VENV/bin/python" -m pip install -q "torch==2.13.0"
    "$VENV/bin/python" -m pip install -q -e "$ROOT[test,radio]"
    "$VENV/bin/python" -c "import numpy, gnuradio.gr, torch, onnxruntime" \
        || { say "installed packages do not import together (see above)"; exit 1; }
    echo "$want" > "$stamp"
fi

src="$ROOT/gr-testbedphy"
mstamp="$VENV/.testbedphy-stamp"
mwant="$(cd "$src" && find . -type f \( -name '*.cc' -o -name '*.h' -o -name '*.py' -o -name 'CMakeLists.txt' \) -print0 \
         | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$mstamp" 2>/dev/null)" != "$mwant" ] || ! "$VENV/bin/python" -c "from gnuradio import testbedphy" 2>/dev/null; then
    say "building the C++ PHY module (gr-testbedphy) into $VENV"
    build="$VENV/build/gr-testbedphy"
    mkdir -p "$build"
    log="$VENV/build/gr-testbedphy.log"
    site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("platlib"))')"
    { cmake -S "$src" -B "$build" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" \
            -DTESTBEDPHY_PYTHON_DIR="$site" \
      && cmake --build "$build" -j"$(nproc)" && cmake --install "$build"; } >"$log" 2>&1 \
        || { tail -30 "$log" >&2; say "building gr-testbedphy failed (whole log: $log)"; exit 1; }
    "$VENV/bin/python" -c "from gnuradio import testbedphy" \
        || { say "gr-testbedphy was built but does not import (see above)"; exit 1; }
    echo "$mwant" > "$mstamp"
fi
