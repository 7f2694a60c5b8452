"""Measure each MCS's bit and block error rates on an ideal AWGN symbol channel and write the
table that ``--mcs auto`` adapts from (testbed/data/mcs_bler.json). Prints markdown.

    .venv/bin/python scripts/measure_mcs.py [--blocks 200] [--step 0.5] [--seed 0] [--out PATH]

Per MCS the sweep starts at the Shannon limit of its payload rate (where every block fails) and
goes up in ``--step`` dB until two points in a row lose no block.
"""
import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from testbed.core.runlog import write_json_atomic
from testbed.digital.codeblocks import CodeBlocks
from testbed.digital.mcs import BLER_TARGET, MCS_TABLE, TABLE, simulate, threshold_db

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--blocks", type=int, default=200, help="code blocks per SNR point")
ap.add_argument("--step", type=float, default=0.5, help="SNR step (dB)")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--out", type=Path, default=TABLE)
a = ap.parse_args()
if a.blocks < 1 or not (0 < a.step <= 5):
    sys.exit("measure_mcs: --blocks must be >= 1 and --step in (0, 5] dB")

rng = np.random.default_rng(a.seed)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
table = {"what": "BLER of each MCS on an ideal AWGN symbol channel (Es/N0, unit-energy symbols); "
                 "802.11n N=1944 LDPC, CRC-32 per block, normalised min-sum (0.75), 50 iterations",
         "command": " ".join(["python", "scripts/measure_mcs.py"] + sys.argv[1:]),
         "commit": commit, "date": time.strftime("%Y-%m-%d"), "blocks_per_point": a.blocks, "mcs": {}}
print("| MCS | payload bits/symbol | Shannon limit (dB) | BLER < 10 % from (dB) | coded BER < 1e-4 from (dB) |")
print("|---|---:|---:|---:|---:|")
for m in MCS_TABLE:
    cb = CodeBlocks(m.rate)
    limit = 10 * math.log10(2 ** m.payload_bits_per_symbol - 1)
    snr = math.floor(limit / a.step) * a.step
    rows, clean = [], 0
    with tqdm(desc=m.name, unit="pt", leave=False, file=sys.stderr) as bar:
        while clean < 2 and snr < 40:
            r = simulate(m, snr, a.blocks, rng, cb)
            rows.append(r)
            clean = clean + 1 if r["bler"] == 0 else 0
            snr = round(snr + a.step, 6)
            bar.update(1)
    table["mcs"][m.name] = rows
    ber_ok = next((r["snr_db"] for r in rows if r["coded_ber"] < 1e-4 and
                   all(q["coded_ber"] < 1e-4 for q in rows if q["snr_db"] >= r["snr_db"])), None)
    print(f"| {m.name} | {m.payload_bits_per_symbol:.3f} | {limit:.2f} | {threshold_db(rows, BLER_TARGET)} | {ber_ok} |")
write_json_atomic(a.out, table)
print(f"\nwrote {a.out}", file=sys.stderr)
