"""``testbed ota`` and ``testbed replay``: over-the-air runs with real-channel PSNR logs.

``run_ota`` loads and validates the config (before any device is opened), builds the front-end
(:mod:`testbed.link.frontend`) and runs the same flowgraph as ``testbed loopback`` with it, once
per TX gain. The encoder is told the SNR the receiver last estimated (closed loop). Writes into
the run folder:

* ``results.csv`` one row per image (schema :data:`OTA_FIELDS`), appended row by row;
* ``summary.json`` per TX gain, written atomically; ``psnr_vs_gain.png``;
* with ``--record``: ``rx-gain<G>.sigmf-data/.sigmf-meta``, the received IQ with the run's
  settings (model, CBR, OFDM and radio config, gains, images with their sha256) in the metadata.

``run_replay`` re-runs the receiver on a recording and writes the same schema.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..core.images import load_images
from ..core.metrics import finite_mean, ms_ssim, psnr
from ..core.runlog import CsvLog, cell, prepare_run_dir, write_json_atomic

log = logging.getLogger(__name__)

OTA_FIELDS = [
    "timestamp", "image", "width", "height", "cbr", "radio", "tx_serial", "rx_serial", "tx_lo_hz", "rx_lo_hz",
    "samp_rate", "tx_gain_db", "rx_gain_db", "tx_snr_db", "snr_est_db", "cfo_est_hz", "frames_sent",
    "frames_decoded", "frames_lost", "rx_lost_samples", "psnr_db", "ms_ssim", "latency_ms", "model", "model_sha256", "kb_index",
    "source", "mcs", "blocks_failed", "bler", "uncoded_ber", "coded_ber",      # (from mcs on: digital codecs)
]


@dataclass
class OtaOptions:
    config: str
    images: str
    model: str | None = None
    cbr: float | None = None
    tx_gains_db: list[float] | None = None
    record: bool = False
    out: str | None = None
    force: bool = False           # overwrite an --out folder that holds an earlier run
    snr_hint_db: float = 10.0    # what the encoder assumes before the first SNR estimate
    ckb: bool = True
    skb: bool = True
    allocation: str = "entropy"   # AKB codecs: rate map from the entropy model or "measured"
    mcs: str | None = None        # digital codecs: an MCS name or "auto" (None: auto)
    idle_s: float = 3.0
    ms_ssim: bool = True


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _sha(img: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()


def _open_codec(model, cbr, ckb, skb, allocation="entropy", mcs=None):
    """The codec and its operating point (options of another codec kind refused)."""
    from ..core.paths import DEFAULT_MODEL
    from ..core.codecs import rate_for
    from ..zoo import open_codec

    codec = open_codec(model or DEFAULT_MODEL, spinning=False)
    return codec, rate_for(codec, cbr, ckb=ckb, skb=skb, allocation=allocation, mcs=mcs)


def _row(path, ref, img, rec, sent, fe_desc: dict, codec, source: str, ms: bool) -> dict:
    h, w = ref.shape[:2] if ref is not None else (rec.get("height"), rec.get("width"))
    row = {
        "timestamp": _now(), "image": path if isinstance(path, str) else path.name, "width": w, "height": h,
        "cbr": round(sent["cbr"], 6), **{k: fe_desc.get(k) for k in ("radio", "tx_serial", "rx_serial", "tx_lo_hz",
                                                                      "rx_lo_hz", "samp_rate", "tx_gain_db",
                                                                      "rx_gain_db")},
        "tx_snr_db": sent.get("tx_snr_db"), "snr_est_db": rec.get("snr_est_db"), "cfo_est_hz": rec.get("cfo_est_hz"),
        "frames_sent": sent["frames"], "frames_decoded": rec.get("frames_decoded", 0),
        # frames None: not known (a recording of a killed run)
        "frames_lost": None if sent["frames"] is None else sent["frames"] - rec.get("frames_decoded", 0),
        "psnr_db": None, "ms_ssim": None,
        "latency_ms": (rec["decoded_at"] - sent["t_sent"]) * 1e3 if "decoded_at" in rec and "t_sent" in sent else None,
        "model": codec.name, "model_sha256": codec.sha256, "kb_index": rec.get("kb_index"), "source": source,
        **{k: rec.get(k) for k in ("mcs", "blocks_failed", "bler", "uncoded_ber", "coded_ber")},
    }
    if img is not None and ref is not None and ref.shape == img.shape:
        row["psnr_db"] = psnr(ref, img)
        row["ms_ssim"] = ms_ssim(ref, img) if ms else None
    return row



def _summarise(rows: list[dict], key: str = "tx_gain_db") -> list[dict]:
    out = []
    for g in sorted({r[key] for r in rows}, key=lambda v: (v is None, v)):
        r = [x for x in rows if x[key] == g]
        out.append({key: g, "n_images": len(r), "psnr_db": finite_mean(x["psnr_db"] for x in r),
                    "ms_ssim": finite_mean(x["ms_ssim"] for x in r), "snr_est_db": finite_mean(x["snr_est_db"] for x in r),
                    "cfo_est_hz": finite_mean(x["cfo_est_hz"] for x in r),
                    "frames_sent": int(sum(x["frames_sent"] or 0 for x in r)),
                    "frames_lost": int(sum(x["frames_lost"] or 0 for x in r))})
    return out


def _plot(results: list[dict], path: Path, title: str) -> None:
    from ..core.plotting import plt, save_png

    pts = [(r["tx_gain_db"], r["psnr_db"]) for r in results if r["psnr_db"] is not None and r["tx_gain_db"] is not None]
    if not pts:
        return
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(*zip(*pts), "o-")
    ax.set_xlabel("TX gain [dB]")
    ax.set_ylabel("PSNR [dB]")
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def run_ota(opts: OtaOptions, view=None) -> dict:
    from ..link.configs import RADIO_KINDS, SigmfFileConfig, load_config
    from ..link import air
    from ..link.run import run_link
    from .loopback import _Interrupt
    from ..link.frontend import make_frontend
    from ..core.sigmf_io import SigmfRecorder

    cfg = load_config(opts.config)   # validated before anything is opened
    codec, rate = _open_codec(opts.model, opts.cbr, opts.ckb, opts.skb, opts.allocation, opts.mcs)
    images, skipped = load_images(opts.images)
    gains = opts.tx_gains_db or [None]
    fes = [make_frontend(cfg, g) for g in gains]  # gain ranges checked before any device is opened
    out = prepare_run_dir(opts.out, "ota", force=opts.force)
    is_file = isinstance(cfg, SigmfFileConfig)
    rows: list[dict] = []
    recordings: list[str] = []
    rx_loss: list[dict] = []
    interrupted = False
    bar = tqdm(total=len(images) * len(gains), desc="ota", unit="img", dynamic_ncols=True)
    with CsvLog(out / "results.csv", OTA_FIELDS) as csvlog:
        def emit(row):
            csvlog.append(row, keep=rows)
            bar.update(1)
            bar.set_postfix_str(f"gain {row['tx_gain_db']} dB, est SNR {row['snr_est_db'] or float('nan'):.1f} dB, "
                                f"frames {row['frames_decoded']}/{row['frames_sent']}, "
                                f"PSNR {row['psnr_db'] or float('nan'):.2f}")
        try:
            with _Interrupt() as intr:
                for g, fe in zip(gains, fes):
                    desc = fe.describe()
                    recorder = None
                    sent_log: dict[int, dict] = {}
                    if opts.record or is_file:
                        name = Path(cfg.path).name if is_file else "rx"
                        settings = {
                            "config": opts.config, "config_kind": cfg.kind, "config_values": _plain(asdict(cfg)),
                            "model": str(codec.dir), "model_name": codec.name, "model_sha256": codec.sha256,
                            "cbr": rate.cbr, "symbols_per_location": rate.symbols_per_location,
                            "ckb": opts.ckb, "skb": opts.skb,
                            "allocation": opts.allocation, "mcs": rate.options.get("mcs"), "ofdm": cfg.ofdm.to_dict(), "radio": desc, "images_dir": str(Path(opts.images).resolve()),
                            "started": _now(),
                            # written with the metadata when the recording opens, so that a killed
                            # run leaves a replayable recording (frames unknown until sent)
                            "images": _images_setting(images, None),
                        }
                        recorder = SigmfRecorder(out / f"{name}-gain{_gain_tag(g)}", cfg.ofdm.samp_rate,
                                                 desc.get("rx_lo_hz") or 0.0, settings, overwrite=opts.force)

                    def make_row(path, ref, img, rec, s, desc=desc, fe=fe):
                        row = _row(path, ref, img, rec, s, desc, codec, "live", opts.ms_ssim)
                        # samples the radio lost while this image was on air (None: not counted)
                        row["rx_lost_samples"] = air.lost_between(fe.monitor, s["t_sent"],
                                                                  rec.get("decoded_at", time.monotonic()))
                        return row

                    try:
                        run_link(codec, rate, images, cfg=cfg.ofdm, tx_snr_db=opts.snr_hint_db,
                                 connect=lambda tb, tx, rx, fe=fe, recorder=recorder: fe.connect(tb, tx, rx, recorder),
                                 make_row=make_row, emit=(lambda r: None) if is_file else emit, idle_s=opts.idle_s,
                                 view=view, check=intr.check, adapt_snr=True, flush_samples=fe.flush_samples(),
                                 on_sent=lambda s, sent_log=sent_log: sent_log.__setitem__(s["image_id"], s))
                    finally:   # also when interrupted: the images sent so far, and a closed recording
                        if not is_file:
                            rx_loss.append({"tx_gain_db": g, **air.monitor_summary(fe.monitor)})
                        if recorder is not None:
                            recorder.set_setting("images", _images_setting(images, sent_log))
                            recorder.close()
                            recordings.append(str(recorder.meta_path))
                    if is_file:   # the receiver runs on the recording
                        for row in _replay_rows(recorder.meta_path, opts.ms_ssim, intr.check):
                            emit(row)
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted: %d finished rows kept in %s", len(rows), out / "results.csv")
        except ConnectionError:
            if not rows:   # a radio could not be opened: leave no empty run behind (a rerun may reuse --out)
                csvlog.close()
                _remove_empty_run(out, recordings)
            raise
        finally:
            bar.close()
    results = _summarise(rows)
    summary = {"config": opts.config, "kind": cfg.kind, "model": codec.name, "model_sha256": codec.sha256,
               "cbr": round(rate.cbr, 6), "n_images": len(images), "skipped": skipped, "results": results,
               "recordings": recordings, "rx_loss": rx_loss, "hardware": cfg.kind in RADIO_KINDS, "interrupted": interrupted,
               "run_dir": str(out)}
    write_json_atomic(out / "summary.json", summary)
    _plot(results, out / "psnr_vs_gain.png", f"ota {cfg.kind} {codec.name}, CBR {rate.cbr:.4f}")
    if interrupted:
        raise KeyboardInterrupt
    return summary


def _remove_empty_run(out: Path, recordings: list[str]) -> None:
    """Delete what a run that produced nothing wrote (results header, empty recordings) and its
    folder if nothing else is in it."""
    (out / "results.csv").unlink(missing_ok=True)
    for meta in recordings:
        m = Path(meta)
        for f in (m, m.with_suffix(".sigmf-data")):
            f.unlink(missing_ok=True)
    try:
        out.rmdir()
    except OSError:
        pass


def _images_setting(images, sent: dict[int, dict] | None) -> list[dict]:
    """The recording's ``images`` setting: every image (``sent`` None: before the run, frames not
    known yet), or the images that were sent, with their frames, CBR and encoder SNR."""
    out = []
    for i, (p, a) in enumerate(images):
        s = None if sent is None else sent.get(i & 0xFFFF)
        if sent is not None and s is None:
            continue                    # never transmitted (interrupted run): not in the recording
        out.append({"image_id": i, "file": p.name, "path": str(Path(p).resolve()), "sha256": _sha(a),
                    "frames": s and s["frames"], "cbr": s and s["cbr"], "tx_snr_db": s and s["tx_snr_db"]})
    return out


def _gain_tag(g) -> str:
    return "default" if g is None else f"{g:+g}dB"


def _plain(d):
    if isinstance(d, dict):
        return {k: _plain(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_plain(v) for v in d]
    if isinstance(d, (np.floating, np.integer)):
        return d.item()
    return d


def _replay_rows(meta_path, ms: bool = True, check=None, images_dir: str | None = None):
    """Run the receiver on a recording; yield rows with the :data:`OTA_FIELDS` schema."""
    import queue

    from gnuradio import gr

    from ..core import images as imgio
    from ..gr.jscc_decoder import jscc_decoder
    from ..gr.ofdm_rx import ofdm_rx
    from ..gr.running import Running
    from ..gr.sigmf_source import sigmf_source
    from ..core.sigmf_io import Recording, RecordingError
    from ..link.run import queued
    from ..phy.config import OfdmConfig
    from ..zoo import open_codec

    rec = Recording(meta_path)
    st = rec.replay_settings()   # checked: types of every key used below
    try:
        codec = open_codec(st["model"], spinning=False)
    except Exception:
        codec = open_codec(st.get("model_name", st["model"]), spinning=False)
    if codec.sha256 != st["model_sha256"]:
        raise RecordingError(f"{rec.meta_path}: recorded with model {st['model_sha256'][:12]}, "
                             f"{codec.dir} is {codec.sha256[:12]}")
    cfg = OfdmConfig.from_dict(st["ofdm"], where=str(rec.meta_path))
    if cfg.samp_rate != rec.sample_rate:
        raise RecordingError(f"{rec.meta_path}: core:sample_rate {rec.sample_rate:g} differs from the OFDM "
                             f"config's {cfg.samp_rate:g}")
    refs, names, sent = {}, {}, {}
    for im in st["images"]:
        iid = int(im["image_id"]) & 0xFFFF
        names[iid] = im["file"]
        sent[iid] = {"frames": im.get("frames"), "cbr": im.get("cbr") or st.get("cbr", 0.0),
                     "tx_snr_db": im.get("tx_snr_db")}
        cands = [Path(images_dir) / im["file"]] if images_dir else []
        cands.append(Path(im["path"]))
        for c in cands:
            try:
                a = imgio.load_rgb(c)
            except Exception:
                continue
            if _sha(a) == im["sha256"]:
                refs[iid] = a
                break
        else:
            log.warning("reference image %s not found (or changed); its PSNR stays empty", im["file"])
    done_q: "queue.Queue" = queue.Queue()
    tb = gr.top_block("replay")
    src = sigmf_source(rec.meta_path, tail=cfg.flush_samples() * 2)
    rx = ofdm_rx(cfg)
    dec = jscc_decoder(codec, on_image=lambda r, img: done_q.put((r, img)), references=dict(refs))
    tb.connect(src, rx)
    tb.msg_connect(rx, "frames", dec, "frames")
    desc = st.get("radio", {})
    seen = set()
    check = check or (lambda: None)

    def rows(block: bool):
        for r, img in queued(done_q, block, timeout_s=0.1):
            iid = r["image_id"]
            if iid not in sent:
                log.warning("recording holds image id %d that the settings do not list; ignored", iid)
                continue
            seen.add(iid)
            check()
            yield _row(names[iid], refs.get(iid), img, r, sent[iid], desc, codec, "replay", ms)

    # rows as images are decoded; Ctrl-C (check(), or KeyboardInterrupt) stops the flowgraph and
    # ends the rows: never a row for an image that was not reached (GNU Radio's tb.run() would
    # swallow the interrupt and make a partial replay look complete)
    running = Running(tb)
    try:
        while not running.finished():
            check()
            yield from rows(block=True)
    finally:
        running.stop()
    dec.flush()
    yield from rows(block=False)
    for iid in sent:
        if iid not in seen:
            yield _row(names[iid], refs.get(iid), None, {"frames_decoded": 0}, sent[iid], desc, codec, "replay", ms)


def run_replay(meta_path: str, out: str | None = None, images_dir: str | None = None, ms: bool = True,
               force: bool = False) -> dict:
    from .loopback import _Interrupt
    from ..core.sigmf_io import Recording

    rec = Recording(meta_path)
    rec.replay_settings()       # a bad recording is refused before the run folder is made
    outp = prepare_run_dir(out, "replay", force=force)
    rows = []
    interrupted = False
    with CsvLog(outp / "results.csv", OTA_FIELDS) as csvlog:
        try:
            with _Interrupt() as intr:
                for row in _replay_rows(meta_path, ms, intr.check, images_dir=images_dir):
                    csvlog.append(row, keep=rows)
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted: %d finished rows kept in %s", len(rows), outp / "results.csv")
    results = _summarise(rows)
    summary = {"recording": str(rec.meta_path), "samples": rec.samples, "model": rec.settings.get("model_name"),
               "cbr": rec.settings.get("cbr"), "results": results, "n_images": len(rows),
               "interrupted": interrupted, "run_dir": str(outp)}
    write_json_atomic(outp / "summary.json", summary)
    if interrupted:
        raise KeyboardInterrupt
    return summary


def format_table(summary: dict) -> str:
    lines = [f"{summary.get('kind', 'replay')} {summary.get('model')}  CBR {summary.get('cbr') or 0:.4f}  "
             f"(run {summary['run_dir']})",
             f"{'TX gain':>8} {'images':>6} {'PSNR dB':>8} {'MS-SSIM':>8} {'est SNR':>8} {'CFO Hz':>8} {'lost':>9}"]

    f = cell
    for r in summary["results"]:
        g = r["tx_gain_db"]
        lines.append(f"{'-' if g is None else format(g, 'g'):>8} {r['n_images']:>6} {f(r['psnr_db'], '8.2f')} "
                     f"{f(r['ms_ssim'], '8.4f')} {f(r['snr_est_db'], '8.2f')} {f(r['cfo_est_hz'], '8.1f')} "
                     f"{r['frames_lost']:>4}/{r['frames_sent']:<4}")
    return "\n".join(lines)
