"""``testbed eval`` (a codec through a software channel) and ``testbed bench codec``."""
from __future__ import annotations

import sys

from ..core.checks import number, show
from .common import CBR_TYPE, SEED_TYPE, THREADS_TYPE, add_allocation_arg, add_mcs_arg, ckb

MAX_BENCH_SIDE = 16384     # pixels per side of a `bench codec --size` image


def add_parsers(sub, common) -> None:
    ev = sub.add_parser("eval", parents=[common], help="evaluate an ONNX codec through a software channel")
    ev.add_argument("--model", required=True,
                    help="model folder, shipped model name, or a digital codec (jpeg2000-ldpc, jpeg-ldpc)")
    ev.add_argument("--data", required=True, help="folder of images")
    ev.add_argument("--snr-db", default="0,5,10,15,20", help="comma-separated SNRs (Es/N0, dB); for a negative first value write --snr-db=-5,0,5")
    ev.add_argument("--channel", default="awgn", help="awgn | rayleigh")
    ev.add_argument("--cbr", type=CBR_TYPE, help="channel bandwidth ratio (default: the model's highest; AKB models: 0.0625)")
    ev.add_argument("--seed", type=SEED_TYPE, default=0)
    ev.add_argument("--out", help="run folder (default: runs/eval-<time>)")
    ev.add_argument("--force", action="store_true", help="overwrite the files of an earlier run in --out")
    ev.add_argument("--no-separation", action="store_true", help="skip the JPEG/JPEG 2000 reference")
    ev.add_argument("--threads", type=THREADS_TYPE, default=0, help="onnxruntime intra-op threads (0: all cores)")
    ev.add_argument("--record-in-card", metavar="DATASET", help="store the summary in the model card under DATASET")
    ev.add_argument("--force-record", action="store_true",
                    help="with --record-in-card: replace the card's entry even when this run covers fewer images "
                         "or SNRs than the one it holds (refused otherwise: the controller plans from that table)")
    ev.add_argument("--no-ckb", action="store_true", help="AKB codec: fixed entropy-to-rate mapping instead of the channel-KB policy")
    ev.add_argument("--no-skb", action="store_true", help="AKB codec: no source-KB conditioning")
    add_allocation_arg(ev)
    ev.add_argument("--figures", action="store_true",
                    help="AKB codec: save entropy map, rate map and reconstruction of the first image per SNR")
    add_mcs_arg(ev)
    ev.set_defaults(func=_cmd_eval)

    cp = sub.add_parser("compare", parents=[common], help="several eval/loopback runs side by side: PSNR-vs-SNR plot, "
                                                          "reconstruction grid, HTML report")
    cp.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders of testbed eval or testbed loopback")
    cp.add_argument("--out", help="report folder (default: runs/compare-<time>)")
    cp.add_argument("--force", action="store_true", help="overwrite the files of an earlier report in --out")
    cp.add_argument("--image", help="the image of the grid (default: the first image every run has)")
    cp.add_argument("--snr-db", help="SNRs of the grid (default: up to four the runs share)")
    cp.add_argument("--images", help="folder of the runs' images (default: the folder each run names)")
    cp.set_defaults(func=_cmd_compare)

    b = sub.add_parser("bench", parents=[common], help="benchmarks")
    bsub = b.add_subparsers(dest="what", required=True, metavar="{codec,phy}")
    bc = bsub.add_parser("codec", parents=[common], help="onnxruntime encode/decode latency")
    bc.add_argument("--model", default="jscc-v1")
    bc.add_argument("--size", default="768x512", help="WIDTHxHEIGHT")
    bc.add_argument("--repeat", type=number(int, lo=1, hi=100_000), default=20)
    bc.add_argument("--threads", type=THREADS_TYPE, default=0, help="onnxruntime intra-op threads (0: all cores)")
    bc.add_argument("--cbr", type=CBR_TYPE)
    bc.set_defaults(func=_cmd_bench)
    bp = bsub.add_parser("phy", parents=[common], help="the OFDM PHY alone (TX -> loopback channel -> RX, no codec): "
                         "million samples per second, frames back to back")
    bp.add_argument("--frames", type=number(int, lo=1, hi=100_000), default=150, help="frames per run (default 150)")
    bp.add_argument("--repeat", type=number(int, lo=1, hi=1000), default=3, help="runs; the median is reported")
    bp.add_argument("--snr-db", type=number(float, lo=-10, hi=60), default=15.0, help="channel SNR (Es/N0, dB)")
    bp.add_argument("--impl", choices=("auto", "cpp", "python"), default="auto",
                    help="PHY blocks: the C++ module (auto: when installed) or the Python reference")
    bp.set_defaults(func=_cmd_bench_phy)


def _cmd_compare(a) -> int:
    from pathlib import Path

    from ..core.runlog import prepare_run_dir, to_json
    from ..experiments.compare import compare
    from ..experiments.evaluate import parse_snrs

    snrs = parse_snrs(a.snr_db) if a.snr_db else None
    for r in a.runs:
        if not Path(r, "summary.json").is_file():
            raise ValueError(f"{r}: not a run folder (no summary.json)")
    out = prepare_run_dir(a.out, "compare", force=a.force)
    res = compare(a.runs, out, image=a.image, snrs=snrs, images_dir=a.images)
    if a.json:
        print(to_json(res))
    else:
        for run in res["runs"]:
            cells = "  ".join(f"{x['snr_db']:g} dB {x['psnr_db']:.2f}" for x in run["results"] if x["psnr_db"] is not None)
            print(f"{run['label']}: {cells}")
        print(f"report: {res['files']['compare.html']}")
    return 0


def _cmd_eval(a) -> int:
    from ..experiments.evaluate import EvalOptions, format_table, json_view, parse_snrs, run_eval
    from ..core.runlog import to_json

    opts = EvalOptions(model=a.model, data=a.data, snrs_db=parse_snrs(a.snr_db), channel=a.channel,
                       seed=a.seed, out=a.out, force=a.force, cbr=a.cbr, separation=not a.no_separation, threads=a.threads,
                       ckb=ckb(a), skb=not a.no_skb, allocation=a.allocation, figures=a.figures, mcs=a.mcs)
    summary = run_eval(opts)
    if a.record_in_card:
        record_in_card(a.model, a.record_in_card, summary, "testbed " + " ".join(sys.argv[1:]), force=a.force_record)
    if a.json:
        print(to_json(json_view(summary)))
    else:
        print(format_table(summary))
    return 0


def record_in_card(model: str, dataset: str, summary: dict, command: str, force: bool = False) -> None:
    """Store an eval run's summary in the model's card (``--record-in-card DATASET``; a built-in
    codec's in its table), with the ``command`` that made it. A run with fewer images, or without
    some of the SNRs, of the entry already held for that key is refused unless ``force``
    (``--force-record``)."""
    from pathlib import Path

    from ..zoo import CARD_NAME, builtin_codecs, load_card, open_codec, resolve_model_dir

    if model in builtin_codecs() and not Path(model).exists():     # no card file: the codec keeps it
        codec = open_codec(model)
        card, where, store = codec.card, "the digital codecs' table", codec.record_evaluation
    else:
        d = resolve_model_dir(model)
        card, where = load_card(d / CARD_NAME), d / CARD_NAME
        store = lambda key, entry: card.write(d / CARD_NAME)        # noqa: E731  (card.evaluation holds it)
    if summary.get("model_sha256") not in (None, card.sha256):
        raise ValueError(f"--record-in-card: {summary.get('run_dir')} evaluated {model} with sha256 "
                         f"{str(summary['model_sha256'])[:12]}..., {where} is for sha256 {card.sha256[:12]}...")
    key = f"{dataset}/{summary['channel']}/cbr={summary['cbr']:.4f}"
    if summary.get("ckb") is not None:
        key += "/" + ("ckb" if summary["ckb"] else "no-ckb") + "," + ("skb" if summary["skb"] else "no-skb")
        if summary.get("allocation", "entropy") != "entropy":
            key += "," + summary["allocation"]
    if summary.get("mcs") not in (None, "auto"):        # a fixed MCS (the controller plans with auto)
        key += f"/mcs={summary['mcs']}"
    results = [r for r in summary["results"] if r["psnr_db"] is not None]
    entry = {
        "command": command,
        "n_images": summary["n_images"], "seed": summary["seed"],
        "psnr_db": {f"{r['snr_db']:g}": round(r["psnr_db"], 2) for r in results},
        "ms_ssim": {f"{r['snr_db']:g}": round(r["ms_ssim"], 4) for r in results if r["ms_ssim"]},
    }
    old = card.evaluation.get(key)
    if isinstance(old, dict) and not force:
        old_n, old_snrs = old.get("n_images") or 0, {f"{float(k):g}" for k in old.get("psnr_db") or {}}
        lost = sorted(old_snrs - set(entry["psnr_db"]), key=float)
        if entry["n_images"] < old_n or lost:
            raise ValueError(
                f"--record-in-card: {where} holds '{key}' over {old_n} images at SNR "
                f"{', '.join(sorted(old_snrs, key=float))} dB; this run has {entry['n_images']} images"
                + (f" and lacks SNR {', '.join(lost)} dB" if lost else "")
                + f" (a partial evaluation; results kept in {summary['run_dir']}). Pass --force-record to replace it")
    card.evaluation[key] = entry
    store(key, entry)


def _cmd_bench(a) -> int:
    from ..experiments.bench import bench_codec
    from ..core.runlog import to_json

    try:
        w, h = (int(v) for v in a.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size: expected WIDTHxHEIGHT, got {show(a.size)}") from None
    if not (1 <= w <= MAX_BENCH_SIDE and 1 <= h <= MAX_BENCH_SIDE):
        raise ValueError(f"--size: width and height must be in 1..{MAX_BENCH_SIDE}, got {show(a.size)}")
    r = bench_codec(a.model, height=h, width=w, repeat=a.repeat, threads=a.threads, cbr=a.cbr)
    if a.json:
        print(to_json(r))
    else:
        rate = f"k={r['symbols_per_location']}" if r["symbols_per_location"] else f"CBR {r['cbr']:g}"
        print(f"{r['model']} {w}x{h} {rate} ({r['repeat']} runs, "
              f"{r['intra_op_threads']} threads): encode median {r['encode']['median_ms']:.1f} ms "
              f"(p90 {r['encode']['p90_ms']:.1f}), decode median {r['decode']['median_ms']:.1f} ms "
              f"(p90 {r['decode']['p90_ms']:.1f})")
    return 0


def _cmd_bench_phy(a) -> int:
    import logging

    from ..core.runlog import to_json
    from ..experiments.bench import bench_phy

    log = logging.getLogger("testbed.bench")

    def progress(i, r):
        log.info("run %d/%d: %.2f MS/s, %d/%d frames, %.2f CPU-s", i, a.repeat, r["msps"], r["frames_received"],
                 r["frames_sent"], r["cpu_s"])
    r = bench_phy(frames=a.frames, repeat=a.repeat, snr_db=a.snr_db, impl=a.impl, progress=progress)
    if a.json:
        print(to_json(r))
    else:
        lost = f", {r['frames_lost']} frames lost" if r["frames_lost"] else ", every frame decoded"
        print(f"PHY alone ({r['impl']} blocks, {r['frames']} frames x {r['repeat']} runs, {r['snr_db']:g} dB): "
              f"median {r['msps']:.2f} MS/s (min {r['msps_min']:.2f}, max {r['msps_max']:.2f}){lost}; "
              f"{r['cpu_s']:.2f} CPU-s per run on {r['cores']} cores")
    return 1 if r["frames_lost"] else 0
