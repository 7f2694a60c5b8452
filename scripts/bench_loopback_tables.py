"""Print the loopback tables of BENCHMARKS.md (markdown) from the run folders of bench_loopback.sh."""
import json
import sys
from pathlib import Path

B = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/bench")


def load(name):
    return json.loads((B / name / "summary.json").read_text())


lb, ev = load("loopback-kodak-awgn"), load("eval-kodak-5-20")
print(f"\n**Loopback flowgraph vs `testbed eval`**, Kodak ({lb['n_images']} images), CBR {lb['cbr']:.4f}, AWGN\n")
print("| SNR (dB) | eval PSNR | loopback PSNR | difference | loopback MS-SSIM | estimated SNR | frames decoded | header CRC failures |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for r, e in zip(lb["results"], ev["results"]):
    print(f"| {r['snr_db']:g} | {e['psnr_db']:.2f} | {r['psnr_db']:.2f} | {r['psnr_db'] - e['psnr_db']:+.2f} | {r['ms_ssim']:.4f} | "
          f"{r['snr_est_db']:.2f} | {r['frames_decoded']}/{r['frames_sent']} | {r['headers_failed']} |")

base = load("loopback-kodak-15-awgn")["results"][0]
print("\n**Impairments at 15 dB**, Kodak, CBR 1/16 (1 MS/s, sub-carrier spacing 3906.25 Hz)\n")
print("| impairment | PSNR (dB) | vs AWGN | frames decoded | header CRC failures | estimated SNR | estimated CFO (Hz) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name, label in [("awgn", "none (AWGN)"), ("cfo+1.5", "CFO +1.5 sub-carriers (+5859 Hz)"),
                    ("cfo-1.5", "CFO -1.5 sub-carriers (-5859 Hz)"), ("timing", "timing offset 12345 samples"),
                    ("sco20", "sample-clock offset 20 ppm"), ("tdl-a", "TDL-A, longest tap at CP/2"),
                    ("tdl-c", "TDL-C, longest tap at CP/2")]:
    r = load(f"loopback-kodak-15-{name}")["results"][0]
    print(f"| {label} | {r['psnr_db']:.2f} | {r['psnr_db'] - base['psnr_db']:+.2f} | {r['frames_decoded']}/{r['frames_sent']} | "
          f"{r['headers_failed']} | {r['snr_est_db']:.2f} | {r['cfo_est_hz']:.1f} |")

print("\n**Throughput of the loopback flowgraph** (encoder, TX, channel, RX, decoder; Kodak, CBR 1/16)\n")
print("| sample rate | samples through | wall time (s) | samples/s | real-time factor |")
print("|---:|---:|---:|---:|---:|")
for name, rate in [("loopback-kodak-15-awgn", 1e6), ("loopback-kodak-4msps", 4e6)]:
    pc = load(name)["phy_counters"][0]
    print(f"| {rate / 1e6:g} MS/s | {pc['tx_samples']} | {pc['wall_s']:.1f} | {pc['samples_per_s'] / 1e6:.3f} M | {pc['real_time_factor']:.2f}x |")

# where the CPU went (testbed.core.cputime): the 1 MS/s run, per thread; GNU Radio names each block's
# thread after the block (15 characters), "testbed" is the process's own threads (the encoder runs
# in the caller's, onnxruntime's pool threads too)
run = load("loopback-kodak-15-awgn")
pc, n = run["phy_counters"][0], run["n_images"]
print(f"\n**CPU of the 1 MS/s run by thread** ({pc['cpu_s']:.1f} core-s in {pc['wall_s']:.1f} s: "
      f"{pc['cpu_s'] / pc['wall_s']:.2f} of 2 cores; {pc['cpu_s'] / n:.3f} core-s per image, where 1x real time "
      f"would allow {2 * pc['tx_samples'] / n / 1e6:.3f})\n")
print("| thread | core-s | per image (core-ms) | share |")
print("|---|---:|---:|---:|")
for name, s in pc["cpu_by_thread"].items():
    print(f"| `{name}` | {s:.2f} | {1e3 * s / n:.0f} | {100 * s / pc['cpu_s']:.0f} % |")
