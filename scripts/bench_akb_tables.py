"""Print the AKB ablation tables (markdown) from the run folders of scripts/bench_akb.sh."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/bench-akb")
VARIANTS = [("v1", "codec v1 (fixed rate)"), ("vl", "+ entropy variable-length"),
            ("ckb", "+ channel KB (PPO)"), ("full", "+ source KB (full AKB-JSCC)")]
PUBLISHED = {0.021: "NTSCC 29.2 · Deep JSCC 27.4 · BPG+LDPC 28.9", 0.036: "NTSCC 31.7",
             0.0625: "NTSCC ~34.0 (between 33.5 @0.054 and 34.65 @0.071) · Deep JSCC ~31.5"}


def load(name):
    p = out / name / "summary.json"
    return json.loads(p.read_text()) if p.exists() else None


for cbr in (0.021, 0.036, 0.0625):
    rows = [(label, load(f"{key}-cbr{cbr}")) for key, label in VARIANTS]
    rows = [(label, s) for label, s in rows if s]
    if not rows:
        continue
    snrs = [r["snr_db"] for r in rows[0][1]["results"]]
    print(f"\n#### CBR {cbr} (Kodak, AWGN; published at 10 dB: {PUBLISHED[cbr]})\n")
    print("| variant | actual CBR | " + " | ".join(f"{s:g} dB" for s in snrs) + " |")
    print("|---|---|" + "---|" * len(snrs))
    for label, s in rows:
        vals = {r["snr_db"]: r["psnr_db"] for r in s["results"]}
        print(f"| {label} | {s.get('cbr_actual') or s['cbr']:.4f} | "
              + " | ".join(f"{vals[x]:.2f}" if x in vals else "-" for x in snrs) + " |")
    base = {r["snr_db"]: r["psnr_db"] for r in rows[0][1]["results"]}
    full = {r["snr_db"]: r["psnr_db"] for r in rows[-1][1]["results"]}
    if len(rows) > 1:
        print("| gain of the last row over codec v1 | | "
              + " | ".join(f"{full[x] - base[x]:+.2f}" for x in snrs) + " |")

lb = [(cbr, load(f"loopback-cbr{cbr}"), load(f"full-cbr{cbr}")) for cbr in (0.021, 0.0625)]
lb = [x for x in lb if x[1]]
if lb:
    print("\n#### Full AKB codec through the GNU Radio loopback (rate map and KB index in the header), 10 dB\n")
    print("| target CBR | loopback PSNR | eval PSNR | difference | frames decoded/sent | est. SNR |")
    print("|---|---|---|---|---|---|")
    for cbr, s, e in lb:
        r = s["results"][0]
        ev = next((x["psnr_db"] for x in e["results"] if x["snr_db"] == r["snr_db"]), None) if e else None
        diff = f"{r['psnr_db'] - ev:+.2f}" if ev is not None else "-"
        print(f"| {cbr} | {r['psnr_db']:.2f} | {ev if ev is None else f'{ev:.2f}'} | {diff} | "
              f"{r['frames_decoded']}/{r['frames_sent']} | {r['snr_est_db']:.2f} |")
