"""``testbed eval``: run the ONNX codec through a software channel over a folder of images.

Writes into the run folder:

* ``results.csv``  one row per (image, SNR), appended and flushed row by row (a killed or
  interrupted run keeps every finished row);
* ``summary.json`` per-SNR means, the separation reference and timing (atomically);
* ``psnr_vs_snr.png`` the PSNR-versus-SNR plot.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..core.checks import SNR_DB, number_list
from ..core.images import load_images
from ..core.symbol_channel import CHANNELS, apply_channel_np
from ..core.codecs import Encoded, rate_for
from ..core.metrics import finite_mean, ms_ssim, psnr
from ..core.runlog import CsvLog, cell, prepare_run_dir, read_csv_rows, write_json_atomic
from .separation import separation_reference

log = logging.getLogger(__name__)

ROW_FIELDS = [
    "image", "width", "height", "cbr", "symbols_per_location", "channel", "snr_db", "snr_rx_db",
    "psnr_db", "ms_ssim", "encode_ms", "decode_ms", "model", "model_sha256", "seed",
    "capacity_bpp", "jpeg_psnr_db", "jpeg2000_psnr_db", "kb_index", "ckb", "skb", "allocation",
    # digital codecs (jpeg2000-ldpc, jpeg-ldpc): the MCS, what was sent, and the errors
    "mcs", "code_blocks", "codestream_bytes", "bits_sent", "blocks_failed", "bler", "uncoded_ber", "coded_ber",
]


@dataclass
class EvalOptions:
    model: str
    data: str
    snrs_db: list[float]
    channel: str = "awgn"
    seed: int = 0
    out: str | None = None
    force: bool = False           # overwrite an --out folder that holds an earlier run
    cbr: float | None = None
    separation: bool = True
    threads: int = 0
    ckb: bool = True          # AKB codecs: use the channel-KB policy (False: fixed entropy-to-rate map)
    skb: bool = True          # AKB codecs: condition on the source KB
    allocation: str = "entropy"  # AKB codecs: rate map from the entropy model or "measured" (akb.allocation)
    figures: bool = False     # AKB codecs: entropy/rate maps and reconstructions of the first image
    mcs: str | None = None    # digital codecs: an MCS name or "auto" (None: auto)


def parse_snrs(text: str, option: str = "--snr-db", unit: str = " in dB", lo: float = SNR_DB[0],
               hi: float = SNR_DB[1], lo_open: bool = False) -> list[float]:
    """Comma-separated values of ``option`` (finite, within ``lo``..``hi``, each once)."""
    return number_list(text, option, lo=lo, hi=hi, lo_open=lo_open, unit=unit)


def summarise(rows: list[dict], snrs: list[float]) -> list[dict]:
    out = []
    for s in snrs:
        r = [x for x in rows if math.isclose(float(x["snr_db"]), s)]
        if not r:
            continue
        jp = [x["jpeg_psnr_db"] for x in r if x.get("jpeg_psnr_db") not in (None, "")]
        j2 = [x["jpeg2000_psnr_db"] for x in r if x.get("jpeg2000_psnr_db") not in (None, "")]
        out.append({
            "snr_db": s,
            "psnr_db": finite_mean(x["psnr_db"] for x in r),
            "cbr": finite_mean(x["cbr"] for x in r),
            "ms_ssim": finite_mean(x["ms_ssim"] for x in r),
            "n_images": len(r),
            "encode_ms": finite_mean(x["encode_ms"] for x in r),
            "decode_ms": finite_mean(x["decode_ms"] for x in r),
            "capacity_bpp": finite_mean(x.get("capacity_bpp") for x in r),
            "jpeg_psnr_db": finite_mean(jp),
            "jpeg_achievable": len(jp),
            "jpeg2000_psnr_db": finite_mean(j2),
            "jpeg2000_achievable": len(j2),
        })
        if any("bler" in x for x in r):     # digital codecs: errors per SNR, and the MCSs used
            blocks = sum(int(x["code_blocks"]) for x in r)
            out[-1].update({
                "bler": sum(int(x["blocks_failed"]) for x in r) / blocks if blocks else None,
                "uncoded_ber": finite_mean(x.get("uncoded_ber") for x in r),
                "coded_ber": finite_mean(x.get("coded_ber") for x in r),
                "bits_sent": finite_mean(x.get("bits_sent") for x in r),
                "mcs": sorted({x["mcs"] for x in r}),
            })
    return out


def run_eval(opts: EvalOptions) -> dict:
    from ..zoo import open_codec

    if opts.channel not in CHANNELS:
        raise ValueError(f"--channel: {opts.channel!r} is not one of {', '.join(CHANNELS)}")
    codec = open_codec(opts.model, threads=opts.threads)
    rate = rate_for(codec, opts.cbr, ckb=opts.ckb, skb=opts.skb, allocation=opts.allocation, figures=opts.figures,
                    mcs=opts.mcs)
    # as in the flowgraph's encoder block, a codec with memory (the channel-KB policy) sees the
    # previous image of the same stream (here: the same SNR), so eval and loopback agree
    previous: dict[int, Encoded] = {}
    for s in opts.snrs_db:
        codec.check_snr(s)
    images, skipped = load_images(opts.data)
    out = prepare_run_dir(opts.out, "eval", force=opts.force)
    nominal_cbr = rate.cbr
    log.info("eval %s (CBR %.4f) on %d images x %d SNRs, %s channel -> %s",
             codec.name, nominal_cbr, len(images), len(opts.snrs_db), opts.channel, out)

    interrupted = False
    rows: list[dict] = []
    bar = tqdm(total=len(images) * len(opts.snrs_db), desc="eval", unit="img", dynamic_ncols=True)
    with CsvLog(out / "results.csv", ROW_FIELDS) as csvlog:
        try:
            for i, (path, img) in enumerate(images):
                h, w = img.shape[:2]
                for j, snr in enumerate(opts.snrs_db):
                    rng = np.random.default_rng([opts.seed, i, j])
                    t0 = time.perf_counter()
                    try:
                        enc = previous[j] = codec.encode(img, snr, rate, previous.get(j))
                    except ValueError as e:         # e.g. a digital codec's budget too small for this image
                        raise ValueError(f"{path}: {e}") from None
                    t1 = time.perf_counter()
                    rx, snr_rx = apply_channel_np(enc.symbols, snr, opts.channel, rng)
                    t2 = time.perf_counter()
                    rec = codec.decode(rx, snr_rx, h, w, side=enc.side, mode=enc.mode)
                    t3 = time.perf_counter()
                    if opts.figures and i == 0:
                        from ..akb.figures import save_figures

                        save_figures(out, path.stem, img, rec, enc.detail, snr, enc.cbr)
                    row = {
                        "image": path.name, "width": w, "height": h, "cbr": round(enc.cbr, 6),
                        **enc.fields, "channel": opts.channel, "snr_db": snr,
                        "snr_rx_db": round(snr_rx, 3), "psnr_db": psnr(img, rec),
                        "ms_ssim": ms_ssim(img, rec), "encode_ms": (t1 - t0) * 1e3,
                        "decode_ms": (t3 - t2) * 1e3, "model": codec.name,
                        "model_sha256": codec.sha256, "seed": opts.seed, **codec.decoded_fields(enc),
                    }
                    if opts.separation:
                        ref = separation_reference(img, enc.cbr, snr)
                        row.update({"capacity_bpp": ref["capacity_bpp"], "jpeg_psnr_db": ref["jpeg_psnr_db"],
                                    "jpeg2000_psnr_db": ref["jpeg2000_psnr_db"]})
                    csvlog.append(row, keep=rows)
                    bar.update(1)
                    bar.set_postfix(psnr=f"{row['psnr_db']:.2f}", snr=f"{snr:g}")
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted: %d finished rows kept in %s", len(rows), out / "results.csv")
        finally:
            bar.close()

    results = summarise(rows, opts.snrs_db)
    summary = {
        "model": codec.name,
        "model_dir": str(codec.dir),
        "model_sha256": codec.sha256,
        "cbr": round(nominal_cbr, 6),
        "cbr_actual": finite_mean(r["cbr"] for r in rows),
        "symbols_per_location": finite_mean(r["symbols_per_location"] for r in rows),
        "ckb": rate.options.get("ckb"),
        "skb": rate.options.get("skb"),
        "allocation": rate.options.get("allocation"),
        "mcs": rate.options.get("mcs"),
        "channel": opts.channel,
        "seed": opts.seed,
        "data": str(opts.data),
        "n_images": len(images),
        "skipped": skipped,
        "interrupted": interrupted,
        "separation": opts.separation,
        "results": results,
        "separation_reference": "bits per pixel = 3 * CBR * log2(1 + SNR); JPEG and JPEG 2000 "
                                "(OpenJPEG) at the largest size within that budget",
        "run_dir": str(out),
    }
    write_json_atomic(out / "summary.json", summary)
    if results:
        from ..core.plotting import plot_psnr_vs_snr

        plot_psnr_vs_snr(results, out / "psnr_vs_snr.png",
                         title=f"{codec.name}, CBR {nominal_cbr:.4f}, {opts.channel}, {len(images)} images")
    if interrupted:
        raise KeyboardInterrupt
    return summary


def json_view(summary: dict) -> dict:
    """The documented ``--json`` object (plus the separation reference per SNR)."""
    return {
        "model": summary["model"],
        "cbr": summary["cbr"],
        "channel": summary["channel"],
        "results": [
            {"snr_db": r["snr_db"], "psnr_db": r["psnr_db"], "ms_ssim": r["ms_ssim"], "n_images": r["n_images"],
             "jpeg_psnr_db": r["jpeg_psnr_db"], "jpeg2000_psnr_db": r["jpeg2000_psnr_db"],
             **{k: r[k] for k in ("mcs", "bler", "uncoded_ber", "coded_ber") if k in r}}
            for r in summary["results"]
        ],
        "run_dir": summary["run_dir"],
    }


def format_table(summary: dict) -> str:
    sep = summary.get("separation", True)
    lines = [f"{summary['model']}  CBR {summary['cbr']:.4f}  channel {summary['channel']}  "
             f"({summary['n_images']} images, run {summary['run_dir']})",
             f"{'SNR dB':>7} {'PSNR dB':>8} {'MS-SSIM':>8} "
             + (f"{'JPEG':>13} {'JPEG2000':>13} " if sep else "") + f"{'enc ms':>7} {'dec ms':>7}"]

    f = cell
    def ref(r, key):
        """Separation mean, with (k/n) when only k of the n images had a budget for a file."""
        v, k = r[f"{key}_psnr_db"], r[f"{key}_achievable"]
        if v is None:
            return "-".rjust(13)
        return (f"{v:.2f}" + (f" ({k}/{r['n_images']})" if k < r["n_images"] else "")).rjust(13)

    partial = False
    for r in summary["results"]:
        cols = ""
        if sep:
            cols = f"{ref(r, 'jpeg')} {ref(r, 'jpeg2000')} "
            partial |= r["jpeg_achievable"] < r["n_images"] or r["jpeg2000_achievable"] < r["n_images"]
        digital = f"  {','.join(r['mcs'])} BLER {f(r['bler'], '.3f')}" if "bler" in r else ""
        lines.append(f"{r['snr_db']:>7g} {f(r['psnr_db'], '8.2f')} {f(r['ms_ssim'], '8.4f')} {cols}"
                     f"{f(r['encode_ms'], '7.1f')} {f(r['decode_ms'], '7.1f')}{digital}")
    if sep:
        lines.append("JPEG/JPEG2000: separation reference at bpp = 3*CBR*log2(1+SNR) ('-': budget too small"
                     + ("; (k/n): mean over the k of n images whose budget fits a file" if partial else "") + ")")
    return "\n".join(lines)


def rows_from_run(run_dir: str | Path) -> list[dict]:
    return read_csv_rows(Path(run_dir) / "results.csv")
