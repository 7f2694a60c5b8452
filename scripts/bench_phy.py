"""PHY-only figures for BENCHMARKS.md: SNR-estimate accuracy, impairments at the symbol level,
and the samples per second of TX -> loopback channel -> RX (no codec). Prints markdown.

    .venv/bin/python scripts/bench_phy.py [--frames 8] [--payload-symbols N] [--json out.json]

``--payload-symbols``: analog symbols per frame (default: the PHY default, ``OfdmConfig``).
"""
import argparse
import json
import numpy as np

from testbed.gr.phy_link import random_frames, receive, symbol_snr_db, transmit
from testbed.phy.config import OfdmConfig

ap = argparse.ArgumentParser()
ap.add_argument("--frames", type=int, default=8)
ap.add_argument("--seeds", type=int, default=3)
ap.add_argument("--payload-symbols", type=int, default=OfdmConfig().payload_symbols_per_frame)
ap.add_argument("--json")
a = ap.parse_args()
cfg = OfdmConfig(payload_symbols_per_frame=a.payload_symbols)
cfg.validate()
frames, stream, _ = random_frames(a.frames, cfg, seed=1)
x, starts = transmit(frames, cfg)
out = {"snr_sweep": [], "impairments": [], "throughput": {}}

print(f"\n**SNR estimate** ({a.frames} frames x {a.seeds} noise seeds per SNR, random unit-power payload)\n")
print("| true SNR (dB) | frames decoded | mean estimate (dB) | max abs error (dB) | equalised symbol SNR (dB) |")
print("|---:|---:|---:|---:|---:|")
for snr in (0, 2.5, 5, 10, 15, 20, 25):
    est, meas, n = [], [], 0
    for seed in range(a.seeds):
        r = receive(x, cfg, snr_db=snr, seed=100 + seed)
        n += len(r.frames)
        est += [m["snr_db"] for m, _ in r.frames]
        meas += symbol_snr_db(r, stream)
    row = {"snr_db": snr, "frames": n, "sent": a.frames * a.seeds, "est_mean": float(np.mean(est)),
           "est_max_err": float(np.max(np.abs(np.array(est) - snr))), "symbol_snr": float(np.mean(meas))}
    out["snr_sweep"].append(row)
    print(f"| {snr:g} | {n}/{row['sent']} | {row['est_mean']:.2f} | {row['est_max_err']:.2f} | {row['symbol_snr']:.2f} |")

sp = cfg.subcarrier_spacing_hz
cases = [("AWGN only", {}), ("CFO +1.5 sub-carriers", {"cfo_hz": 1.5 * sp}), ("CFO -1.5 sub-carriers", {"cfo_hz": -1.5 * sp}),
         ("timing offset 1234 samples", {"delay_samples": 1234}), ("SCO +20 ppm", {"sco_ppm": 20.0}),
         ("SCO -20 ppm", {"sco_ppm": -20.0}), ("TDL-A (longest tap at CP/2)", {"multipath": "tdl-a"}),
         ("TDL-C (longest tap at CP/2)", {"multipath": "tdl-c"})]
print(f"\n**Impairments at 15 dB** ({a.frames} frames x {a.seeds} seeds; multipath: a new Rayleigh draw per seed)\n")
print("| impairment | headers passed CRC | header CRC failures | equalised symbol SNR (dB) | post-MMSE SNR reported (dB) |")
print("|---|---:|---:|---:|---:|")
for name, kw in cases:
    n, fails, meas, eff = 0, 0, [], []
    for seed in range(a.seeds):
        r = receive(x, cfg, snr_db=15.0, seed=200 + seed, **kw)
        n += len(r.frames)
        fails += r.counters["headers_failed"]
        meas += symbol_snr_db(r, stream)
        eff += [m["snr_eff_db"] for m, _ in r.frames]
    out["impairments"].append({"name": name, "frames": n, "sent": a.frames * a.seeds, "crc_failures": fails,
                               "symbol_snr": float(np.mean(meas)), "snr_eff": float(np.mean(eff))})
    print(f"| {name} | {n}/{a.frames * a.seeds} | {fails} | {np.mean(meas):.2f} | {np.mean(eff):.2f} |")

# throughput: a long burst train through channel + receiver, timed without the end-of-run wait
big, stream2, _ = random_frames(40, cfg, seed=2)
x2, _ = transmit(big, cfg)
r = receive(x2, cfg, snr_db=15.0, idle=0.3)
t_rx = r.counters["wall_s"] - 0.3
out["throughput"] = {"samples": int(x2.size), "rx_s": t_rx, "rx_samples_per_s": x2.size / t_rx,
                     "frames": len(r.frames), "frames_sent": len(big)}
print(f"\n**PHY throughput** (no codec; {x2.size} samples, {len(big)} frames): channel + RX "
      f"{x2.size / t_rx / 1e6:.2f} MS/s ({len(r.frames)}/{len(big)} frames decoded)")
# a radio streams without pause: the receiver alone on 3 M samples of noise (no frames), wall
# time and CPU time of this process (all threads)
import time
from gnuradio import blocks, gr
from testbed.gr.loopback_channel import loopback_channel
from testbed.gr.ofdm_rx import ofdm_rx
n_idle = 3_000_000
tb = gr.top_block()
# keep a reference to every block: a Python block collected while the flowgraph runs crashes it
idle_blocks = [blocks.null_source(gr.sizeof_gr_complex), blocks.head(gr.sizeof_gr_complex, n_idle),
               loopback_channel(cfg, 15.0, seed=1), ofdm_rx(cfg)]
tb.connect(*idle_blocks)
t0, c0 = time.perf_counter(), time.process_time()
tb.run()
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
out["noise_only"] = {"samples": n_idle, "wall_s": wall, "cpu_s": cpu, "samples_per_s": n_idle / wall,
                     "core_us_per_sample": cpu / n_idle * 1e6}
print(f"\n**Receiver on noise only** (channel + RX, {n_idle} samples, no frames): {n_idle / wall / 1e6:.2f} MS/s, "
      f"{cpu / n_idle * 1e6:.2f} core-us per sample")
if a.json:
    with open(a.json, "w") as f:
        json.dump(out, f, indent=2)
