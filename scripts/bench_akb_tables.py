"""Print the AKB ablation tables (markdown) from the run folders of scripts/bench_akb.sh."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/bench-akb")
VARIANTS = [("v1", "codec v1 (fixed rate)"), ("vl", "+ entropy variable-length"),
            ("ckb", "+ channel KB (PPO)"), ("full", "+ source KB (full AKB-JSCC)"),
            ("measured", "full AKB-JSCC, measured-distortion rate map instead of the PPO policy")]
GAIN_OF = {"full": "gain of the full AKB-JSCC over codec v1",
           "measured": "gain of the measured-distortion rate map over codec v1"}
PUBLISHED = {0.021: "NTSCC 29.2 · Deep JSCC 27.4 · BPG+LDPC 28.9", 0.036: "NTSCC 31.7",
             0.0625: "NTSCC ~34.0 (between 33.5 @0.054 and 34.65 @0.071) · Deep JSCC ~31.5"}


def load(name):
    p = out / name / "summary.json"
    return json.loads(p.read_text()) if p.exists() else None


for cbr in (0.021, 0.036, 0.0625):
    rows = [(key, label, load(f"{key}-cbr{cbr}")) for key, label in VARIANTS]
    rows = [(key, label, s) for key, label, s in rows if s]
    if not rows:
        continue
    snrs = [r["snr_db"] for r in rows[0][2]["results"]]
    print(f"\n#### CBR {cbr} (Kodak, AWGN; published at 10 dB: {PUBLISHED[cbr]})\n")
    print("| variant | actual CBR | " + " | ".join(f"{s:g} dB" for s in snrs) + " |")
    print("|---|---|" + "---|" * len(snrs))
    for _, label, s in rows:
        vals = {r["snr_db"]: r["psnr_db"] for r in s["results"]}
        print(f"| {label} | {s.get('cbr_actual') or s['cbr']:.4f} | "
              + " | ".join(f"{vals[x]:.2f}" if x in vals else "-" for x in snrs) + " |")
    if rows[0][0] == "v1":
        base = {r["snr_db"]: r["psnr_db"] for r in rows[0][2]["results"]}
        for key, _, s in rows:
            if key in GAIN_OF:
                v = {r["snr_db"]: r["psnr_db"] for r in s["results"]}
                print(f"| {GAIN_OF[key]} | | " + " | ".join(f"{v[x] - base[x]:+.2f}" if x in v else "-"
                                                             for x in snrs) + " |")

lb = [(cbr, rate_map, load(f"loopback{tag}-cbr{cbr}"), load(f"{ev}-cbr{cbr}"))
      for rate_map, tag, ev in (("entropy + PPO policy", "", "full"), ("measured", "-measured", "measured"))
      for cbr in (0.021, 0.0625)]
lb = [x for x in lb if x[2]]
if lb:
    print("\n#### Full AKB codec through the GNU Radio loopback (rate map and KB index in the header), 10 dB\n")
    print("| target CBR | rate map | loopback PSNR | eval PSNR | difference | frames decoded/sent | est. SNR |")
    print("|---|---|---|---|---|---|---|")
    for cbr, rate_map, s, e in lb:
        r = s["results"][0]
        ev = next((x["psnr_db"] for x in e["results"] if x["snr_db"] == r["snr_db"]), None) if e else None
        diff = f"{r['psnr_db'] - ev:+.2f}" if ev is not None else "-"
        print(f"| {cbr} | {rate_map} | {r['psnr_db']:.2f} | {ev if ev is None else f'{ev:.2f}'} | {diff} | "
              f"{r['frames_decoded']}/{r['frames_sent']} | {r['snr_est_db']:.2f} |")
