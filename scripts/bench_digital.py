"""Block error rate of each MCS through the loopback flowgraph (OFDM PHY, AWGN) next to the
ideal-channel table, and at 5 dB above the threshold with impairments. Prints markdown.

    .venv/bin/python scripts/bench_digital.py [--images DIR] [--cbr 0.0625] [--step 0.5] [--json out.json]

Per MCS: SNRs from 1.5 dB below to 1 dB above its ideal-channel threshold (BLER < 10 %, from
testbed/data/mcs_bler.json) in ``--step`` dB, each a loopback run of jpeg-ldpc over the images
(every code block of every image counted), then one run at threshold + 5 dB with a CFO of
1 kHz, an SCO of 20 ppm and TDL-A multipath.
"""
import argparse
import json
import sys
import tempfile
import time

import numpy as np

from testbed.core.paths import samples_dir
from testbed.core.runlog import read_csv_rows
from testbed.digital.mcs import BLER_TARGET, MCS_TABLE, bler_at, load_table, threshold_db
from testbed.experiments.loopback import LoopbackOptions, run_loopback

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--images", default=str(samples_dir()))
ap.add_argument("--cbr", type=float, default=0.0625)
ap.add_argument("--step", type=float, default=0.5)
ap.add_argument("--json")
a = ap.parse_args()
table = load_table()
out = {"command": " ".join(["python", "scripts/bench_digital.py"] + sys.argv[1:]), "date": time.strftime("%Y-%m-%d"),
       "mcs": {}}


def run(name, snrs, **imp):
    with tempfile.TemporaryDirectory() as d:
        run_loopback(LoopbackOptions(model="jpeg-ldpc", images=a.images, snrs_db=snrs, cbr=a.cbr, mcs=name, out=d,
                                     force=True, ms_ssim=False, **imp))
        rows = read_csv_rows(f"{d}/results.csv")
    res = []
    for s in snrs:
        r = [x for x in rows if float(x["snr_db"]) == s]
        blocks = sum(int(x["code_blocks"]) for x in r)
        failed = sum(int(x["blocks_failed"]) if x["blocks_failed"] != "" else int(x["code_blocks"]) for x in r)
        # bit error rates over all images: each row's rate weighted by its coded bits (bits_sent;
        # at one MCS proportional to its payload bits, over which the coded BER is counted)
        bits = [float(x["bits_sent"]) for x in r]
        coded = sum(float(x["coded_ber"]) * b for x, b in zip(r, bits)) / sum(bits) if sum(bits) else None
        uncoded = sum(float(x["uncoded_ber"]) * b for x, b in zip(r, bits)) / sum(bits) if sum(bits) else None
        res.append({"snr_db": s, "blocks": blocks, "bler": failed / blocks if blocks else None,
                    "coded_ber": coded, "uncoded_ber": uncoded,
                    "psnr_db": float(np.mean([float(x["psnr_db"]) for x in r if x["psnr_db"] != ""])),
                    "snr_est_db": float(np.mean([float(x["snr_est_db"]) for x in r if x["snr_est_db"] != ""]))})
    return res


print("| MCS | ideal: BLER < 10 % from (dB) | loopback: BLER per SNR (dB: BLER) | loopback: coded BER per SNR "
      "| loopback: BLER < 10 % from (dB) | threshold + 5 dB with CFO 1 kHz, SCO 20 ppm, TDL-A: BLER, PSNR |")
print("|---|---:|---|---|---:|---|")
for m in MCS_TABLE:
    th = threshold_db(table[m.name])
    snrs = [round(th + d, 2) for d in np.arange(-1.5, 1.0 + 1e-9, a.step)]
    res = run(m.name, snrs)
    lb_th = None
    for r in reversed(res):
        if r["bler"] is None or r["bler"] >= BLER_TARGET:
            break
        lb_th = r["snr_db"]
    imp = run(m.name, [round(th + 5, 2)], cfo_hz=1000.0, sco_ppm=20.0, multipath="tdl-a")[0]
    out["mcs"][m.name] = {"ideal_threshold_db": th, "loopback": res, "loopback_threshold_db": lb_th,
                          "impaired": imp, "ideal_bler": {str(s): bler_at(table[m.name], s) for s in snrs}}
    cells = ", ".join(f"{r['snr_db']:g}: {r['bler']:.2f}" for r in res)
    bers = ", ".join(f"{r['coded_ber']:.1e}" if r["coded_ber"] else "0" for r in res)
    print(f"| {m.name} | {th} | {cells} | {bers} | {lb_th} | {imp['bler']:.3f}, {imp['psnr_db']:.2f} dB |", flush=True)
if a.json:
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)
