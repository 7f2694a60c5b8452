"""``testbed loopback``: the full GNU Radio flowgraph with a software channel instead of a radio.

jscc_encoder -> ofdm_tx -> loopback_channel (AWGN, CFO, SCO, timing offset, multipath) ->
ofdm_rx -> jscc_decoder, one flowgraph per SNR. Writes into the run folder:

* ``results.csv`` one row per (image, SNR), appended and flushed row by row;
* ``summary.json`` per-SNR means, PHY counters (headers passed/failed, frames) and settings;
* ``psnr_vs_snr.png``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..core.checks import check_number
from ..core.images import load_images
from ..core.metrics import finite_mean, ms_ssim, psnr
from ..phy.config import OfdmConfig
from ..phy.impairments import MULTIPATH
from ..core.runlog import CsvLog, cell, prepare_run_dir, write_json_atomic

log = logging.getLogger(__name__)

ROW_FIELDS = [
    "image", "width", "height", "cbr", "symbols_per_location", "snr_db", "snr_est_db", "snr_eff_db",
    "cfo_hz", "cfo_est_hz", "sco_ppm", "delay_samples", "multipath", "samp_rate", "frames_sent",
    "frames_decoded", "missing_frames", "frames_hit", "psnr_db", "ms_ssim", "encode_ms", "decode_ms", "latency_ms",
    "model", "model_sha256", "seed", "kb_index", "ckb", "skb", "allocation",
    # digital codecs (jpeg2000-ldpc, jpeg-ldpc): the MCS, what was sent, the blocks lost
    "mcs", "code_blocks", "codestream_bytes", "bits_sent", "blocks_failed", "bler", "uncoded_ber", "coded_ber",
]


@dataclass
class LoopbackOptions:
    model: str
    images: str
    snrs_db: list[float]
    cbr: float | None = None
    cfo_hz: float = 0.0
    sco_ppm: float = 0.0
    delay_samples: int = 0
    multipath: str = "none"
    delay_spread_s: float | None = None
    seed: int = 0
    out: str | None = None
    force: bool = False           # overwrite an --out folder that holds an earlier run
    ofdm: OfdmConfig = field(default_factory=OfdmConfig)
    idle_s: float = 3.0        # stop this long after the last frame once everything is sent
    ms_ssim: bool = True
    threads: int = 0
    ckb: bool = True           # AKB codecs: channel-KB policy (False: fixed entropy-to-rate mapping)
    skb: bool = True           # AKB codecs: source-KB conditioning
    allocation: str = "entropy"  # AKB codecs: rate map from the entropy model or "measured" (akb.allocation)
    mcs: str | None = None       # digital codecs: an MCS name or "auto" (None: auto)
    realtime: bool = False       # pace the air at the sample rate, drop what the receiver misses (link.air)
    rx_buffer_ms: float | None = None   # realtime: the emulated radio's receive buffer (None: 250 ms)


def _check(opts: LoopbackOptions) -> None:
    import numpy as np

    from ..phy.impairments import multipath_taps

    if opts.multipath not in MULTIPATH and not Path(opts.multipath).is_file():
        raise ValueError(f"--multipath: {opts.multipath!r} is neither one of {', '.join(MULTIPATH)} nor a taps file")
    try:   # a taps file's content, a TDL profile's length at this delay spread and sample rate
        multipath_taps(opts.multipath, opts.ofdm, np.random.default_rng(0), opts.delay_spread_s)
    except ValueError as e:
        raise ValueError(f"--multipath {opts.multipath}: {e}" + (" (--delay-spread-ns)" if opts.delay_spread_s else "")) from None
    # the command line checks these as it parses them; here for other callers (NaN never passes)
    check_number("--delay-samples", opts.delay_samples, lo=0, hi=10_000_000, integer=True)
    check_number("--sco-ppm", opts.sco_ppm, lo=-1000, hi=1000)
    check_number("--cfo-hz", opts.cfo_hz)
    if abs(opts.cfo_hz) > 0.45 * opts.ofdm.samp_rate:
        raise ValueError(f"--cfo-hz: {opts.cfo_hz} is beyond the sample rate ({opts.ofdm.samp_rate:g} S/s)")
    if opts.rx_buffer_ms is not None:
        check_number("--rx-buffer-ms", opts.rx_buffer_ms, lo=0, hi=10_000, lo_open=True)
        if not opts.realtime:
            raise ValueError("--rx-buffer-ms: the receive buffer is emulated only with --realtime")
    if opts.realtime:
        from ..gr import cpp_blocks

        if cpp_blocks.module() is None:
            raise ValueError(f"--realtime needs the C++ PHY module gnuradio.testbedphy "
                             f"({cpp_blocks.unavailable_reason()}); run ./scripts/setup.sh")
    _warn_ignored_channel(opts)


def _warn_ignored_channel(opts: LoopbackOptions) -> None:
    """``--ofdm-config FILE`` reads only the file's ``ofdm:`` section: say so when the file also has
    a ``channel:`` section (an experiment config) that differs from the channel of this run."""
    src = getattr(opts.ofdm, "source", "")
    if not src or not Path(src).is_file():
        return
    from ..core.configfile import ConfigError, load_yaml

    try:
        ch = load_yaml(src).get("channel")
    except ConfigError:
        return
    if not isinstance(ch, dict) or not ch:
        return
    run = {"snr_db": opts.snrs_db[0] if len(opts.snrs_db) == 1 else opts.snrs_db, "cfo_hz": opts.cfo_hz,
           "sco_ppm": opts.sco_ppm, "delay_samples": opts.delay_samples, "multipath": opts.multipath,
           "seed": opts.seed, "delay_spread_ns": (opts.delay_spread_s or 0.0) * 1e9}
    differ = {k: v for k, v in ch.items() if k not in run or v != run[k]}
    msg = (f"{src}: its 'channel:' section is not used by testbed loopback, which reads only 'ofdm:' from "
           f"--ofdm-config; the channel comes from --snr-db, --cfo-hz, --sco-ppm, --delay-samples, --multipath, "
           f"--delay-spread-ns and --seed (`testbed ota --config {src}` applies the file's channel)")
    if differ:
        log.warning("%s. Ignored: %s", msg, ", ".join(f"channel.{k}={v!r} (this run: {run.get(k, '-')!r})"
                                                       for k, v in differ.items()))
    else:
        log.info("%s; it matches this run's channel", msg)


class _Interrupt:
    """Ctrl-C sets a flag that the run checks at safe points (between rows), so that a row is
    never half-written and the flowgraph is stopped cleanly."""

    def __init__(self):
        self.hit = False

    def __enter__(self):
        import signal
        import threading

        self.prev = None
        if threading.current_thread() is threading.main_thread():
            self.prev = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.hit:   # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.hit = True
        log.warning("interrupted: stopping the flowgraph (Ctrl-C again to abort)")

    def check(self):
        if self.hit:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        import signal

        if self.prev is not None:
            signal.signal(signal.SIGINT, self.prev)
        return False


def run_one_snr(codec, rate, images, snr_db: float, opts: LoopbackOptions, emit,
                intr: _Interrupt | None = None, view=None) -> dict:
    """One flowgraph run over all images at one SNR; ``emit(row)`` gets each finished row."""
    from ..gr.loopback_channel import loopback_channel
    from ..link.run import run_link

    from ..link import air

    cfg = opts.ofdm
    pacer = air.make_pacer(cfg.samp_rate, opts.rx_buffer_ms) if opts.realtime else None

    def connect(tb, tx, rx):
        chan = loopback_channel(cfg, snr_db, cfo_hz=opts.cfo_hz, sco_ppm=opts.sco_ppm,
                                delay_samples=opts.delay_samples, multipath=opts.multipath, seed=opts.seed,
                                delay_spread_s=opts.delay_spread_s)
        if pacer is not None:
            air.connect(tb, tx, pacer, chan, rx)
            return [pacer, chan]
        tb.connect(tx, chan, rx)
        return [chan]

    def make_row(path, ref, img, rec, s):
        row = _row(path, ref, img, rec, s, snr_db, codec, opts)
        if pacer is not None:
            row["frames_hit"] = " ".join(map(str, air.frames_hit(pacer, s["image_id"])))
        return row

    c = run_link(codec, rate, images, cfg=cfg, tx_snr_db=snr_db, connect=connect, make_row=make_row,
                 emit=emit, idle_s=opts.idle_s, check=intr.check if intr is not None else None, view=view)
    return {**c, **air.summary(pacer)} if pacer is not None else {**c, "realtime": False}


def _row(path, ref, img, rec, s, snr_db, codec, opts) -> dict:
    h, w = ref.shape[:2]
    row = {
        "image": path.name, "width": w, "height": h, "cbr": round(s["cbr"], 6),
        "snr_db": snr_db, "snr_est_db": rec.get("snr_est_db"), "snr_eff_db": rec.get("snr_eff_db"),
        "cfo_hz": opts.cfo_hz, "cfo_est_hz": rec.get("cfo_est_hz"), "sco_ppm": opts.sco_ppm,
        "delay_samples": opts.delay_samples, "multipath": opts.multipath, "samp_rate": opts.ofdm.samp_rate,
        "frames_sent": s["frames"], "frames_decoded": rec.get("frames_decoded", 0),
        "missing_frames": " ".join(map(str, rec.get("missing_frames", []))),
        "psnr_db": None, "ms_ssim": None, "encode_ms": s["encode_ms"], "decode_ms": rec.get("decode_ms"),
        "latency_ms": (rec["decoded_at"] - s["t_sent"]) * 1e3 if "decoded_at" in rec else None,
        "model": codec.name, "model_sha256": codec.sha256, "seed": opts.seed,
    }
    row.update(codec_fields(s, rec))
    if img is not None:
        row["psnr_db"] = psnr(ref, img)
        row["ms_ssim"] = ms_ssim(ref, img) if opts.ms_ssim else None
    return row



def codec_fields(sent: dict, rec: dict) -> dict:
    """The codec's log columns of an image (:attr:`testbed.core.codecs.Encoded.fields`), with the
    receiver's view (symbols per location, KB index) where the image arrived."""
    fields = dict(sent.get("fields", {}))
    for key in ("symbols_per_location", "kb_index"):
        if key in fields and rec.get(key) is not None:
            fields[key] = rec[key]
    for key in ("blocks_failed", "bler", "uncoded_ber", "coded_ber"):       # the digital codecs' receiver counts
        if rec.get(key) is not None:
            fields[key] = rec[key]
    return fields


def run_loopback(opts: LoopbackOptions, view=None) -> dict:
    """``view``: a :class:`testbed.link.gui.LiveView` to show the run in (``--gui``)."""
    _check(opts)
    from ..core.codecs import rate_for
    from ..zoo import open_codec

    codec = open_codec(opts.model, threads=opts.threads, spinning=False)
    rate = rate_for(codec, opts.cbr, ckb=opts.ckb, skb=opts.skb, allocation=opts.allocation, mcs=opts.mcs)
    nominal_cbr = opts.cbr = rate.cbr
    for s in opts.snrs_db:
        codec.check_snr(s)
    images, skipped = load_images(opts.images)
    out = prepare_run_dir(opts.out, "loopback", force=opts.force)
    rows: list[dict] = []
    per_snr: list[dict] = []
    interrupted = False
    bar = tqdm(total=len(images) * len(opts.snrs_db), desc="loopback", unit="img", dynamic_ncols=True)
    with CsvLog(out / "results.csv", ROW_FIELDS) as csvlog:
        def emit(row):
            csvlog.append(row, keep=rows)
            bar.update(1)
            bar.set_postfix_str(f"SNR {row['snr_db']:g} dB est {row['snr_est_db'] or float('nan'):.1f} dB, "
                                f"frames {row['frames_decoded']}/{row['frames_sent']}, "
                                f"PSNR {row['psnr_db'] or float('nan'):.2f}")
        try:
            with _Interrupt() as intr:
                for snr in opts.snrs_db:
                    c = run_one_snr(codec, rate, images, snr, opts, emit, intr, view=view)
                    per_snr.append({"snr_db": snr, **c})
                    log.info("SNR %g dB: %s", snr, c)
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted: %d finished rows kept in %s", len(rows), out / "results.csv")
        finally:
            bar.close()
    results = []
    counters = {pc["snr_db"]: pc for pc in per_snr}
    for snr in opts.snrs_db:
        r = [x for x in rows if x["snr_db"] == snr]
        if not r:
            continue
        pc = counters.get(snr, {})
        results.append({
            "snr_db": snr, "psnr_db": finite_mean(x["psnr_db"] for x in r), "ms_ssim": finite_mean(x["ms_ssim"] for x in r),
            "snr_est_db": finite_mean(x["snr_est_db"] for x in r), "cfo_est_hz": finite_mean(x["cfo_est_hz"] for x in r),
            "frames_sent": int(sum(x["frames_sent"] for x in r)), "frames_decoded": int(sum(x["frames_decoded"] for x in r)),
            "n_images": len(r), "latency_ms": finite_mean(x["latency_ms"] for x in r),
            "headers_ok": pc.get("headers_ok"), "headers_failed": pc.get("headers_failed"),
            "headers_too_long": pc.get("headers_too_long"), "wall_s": pc.get("wall_s"),
            "tx_samples": pc.get("tx_samples"), "real_time_factor": pc.get("real_time_factor"),
            "cpu_s": pc.get("cpu_s"), "complete": snr in counters,
            "dropped_samples": pc.get("air_dropped_samples"), "underflow_samples": pc.get("air_underflow_samples"),
            "images_hit": len(pc.get("images_hit", {})) if opts.realtime else None,
        })
    summary = {
        "model": codec.name, "model_sha256": codec.sha256, "cbr": round(nominal_cbr, 6),
        "cbr_actual": finite_mean(x["cbr"] for x in rows), "symbols_per_location": rate.symbols_per_location or None,
        "ckb": rate.options.get("ckb"), "skb": rate.options.get("skb"),
        "allocation": rate.options.get("allocation"), "mcs": rate.options.get("mcs"),
        "images": str(opts.images), "n_images": len(images), "skipped": skipped, "seed": opts.seed,
        "impairments": {"cfo_hz": opts.cfo_hz, "sco_ppm": opts.sco_ppm, "delay_samples": opts.delay_samples,
                        "multipath": opts.multipath},
        "ofdm": opts.ofdm.to_dict(), "realtime": opts.realtime, "phy_counters": per_snr, "results": results,
        "interrupted": interrupted, "run_dir": str(out),
    }
    write_json_atomic(out / "summary.json", summary)
    if results and any(r["psnr_db"] is not None for r in results):
        from ..core.plotting import plot_psnr_vs_snr

        plot_psnr_vs_snr([{**r, "jpeg_psnr_db": None, "jpeg2000_psnr_db": None} for r in results],
                         out / "psnr_vs_snr.png", title=f"loopback {codec.name}, CBR {nominal_cbr:.4f}, {len(images)} images")
    if interrupted:
        raise KeyboardInterrupt
    return summary


def json_view(summary: dict) -> dict:
    keys = ("snr_db", "psnr_db", "ms_ssim", "snr_est_db", "cfo_est_hz", "frames_sent", "frames_decoded", "n_images")
    if summary.get("realtime"):
        keys += ("dropped_samples", "underflow_samples", "images_hit")
    return {"model": summary["model"], "cbr": summary["cbr"], "impairments": summary["impairments"],
            "results": [{k: r[k] for k in keys} for r in summary["results"]], "run_dir": summary["run_dir"]}


def format_table(summary: dict) -> str:
    imp = summary["impairments"]
    lines = [f"loopback {summary['model']}  CBR {summary['cbr']:.4f}  CFO {imp['cfo_hz']:g} Hz  SCO {imp['sco_ppm']:g} ppm  "
             f"delay {imp['delay_samples']}  multipath {imp['multipath']}  ({summary['n_images']} images, run {summary['run_dir']})",
             f"{'SNR dB':>7} {'PSNR dB':>8} {'MS-SSIM':>8} {'est SNR':>8} {'frames':>11} {'hdr fail':>8} {'latency ms':>10}"
             + (f" {'dropped':>9} {'img hit':>7}" if summary.get("realtime") else "")]

    f = cell
    for r in summary["results"]:
        lines.append(f"{r['snr_db']:>7g} {f(r['psnr_db'], '8.2f')} {f(r['ms_ssim'], '8.4f')} {f(r['snr_est_db'], '8.2f')} "
                     f"{r['frames_decoded']:>5}/{r['frames_sent']:<5} {r['headers_failed'] if r['headers_failed'] is not None else '-':>8} "
                     f"{f(r['latency_ms'], '10.0f')}"
                     + (f" {r['dropped_samples'] or 0:>9} {r['images_hit'] or 0:>7}" if summary.get("realtime") else ""))
    return "\n".join(lines)
