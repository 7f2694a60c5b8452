"""The ``testbed`` command line.

Conventions: ``-v`` (INFO) / ``-vv`` (DEBUG) logging on stderr, progress bars on stderr,
results as files in a run folder and, with ``--json``, one JSON object on stdout.
Exit codes: 0 ok, 1 failed check, 2 bad input, 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import logging
import sys

from . import __version__

log = logging.getLogger("testbed")

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else (logging.INFO if verbosity == 1 else logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)
    logging.captureWarnings(True)


def _cmd_doctor(a) -> int:
    from .doctor import format_report, run_doctor
    from .runlog import to_json

    r = run_doctor(scan=not a.no_scan, network=a.scan_network)
    if a.json:
        print(to_json(r.as_dict()))
    else:
        print(format_report(r))
    return 0 if not r.missing else 1


def _cmd_train_codec(a) -> int:
    from .codec.train import config_from_args, train
    from .runlog import to_json

    cfg = config_from_args(a)
    final = train(cfg, resume=a.resume)
    if a.json:
        print(to_json(final))
    else:
        for r in final.get("validation", []):
            print(f"val SNR {r['snr_db']:>4g} dB  k={r['symbols_per_location']:>2}  "
                  f"CBR {r['cbr']:.4f}: {r['val_psnr_db']:.2f} dB")
    return 0


def _cmd_export(a) -> int:
    import json
    from pathlib import Path

    import torch

    from .codec.export import check_against_torch, export
    from .codec.train import load_model

    ck = torch.load(a.checkpoint, map_location="cpu", weights_only=False)
    model = load_model(a.checkpoint)
    tc = ck.get("train_config", {})
    ops = [int(v) for v in a.operating_points.split(",")] if a.operating_points else tc.get("operating_points", [model.cfg.max_symbols])
    training = {
        "command": a.training_command or tc.get("command", ""),
        "data": tc.get("data", ""),
        "val": tc.get("val", ""),
        "channel": tc.get("channel", ""),
        "steps": ck.get("step"),
        "batch": tc.get("batch"),
        "crop": tc.get("crop"),
        "seed": tc.get("seed"),
        "checkpoint_step": ck.get("step"),
    }
    final = Path(a.checkpoint).parent / "final_metrics.json"
    if final.exists():
        training["final_validation"] = json.loads(final.read_text()).get("validation", [])
    card = export(model, a.out, name=a.name or Path(a.out).name, operating_points=ops, training=training,
                  description=a.description or "")
    err = check_against_torch(model, a.out)
    print(f"exported {card.name} to {a.out}: sha256 {card.sha256[:16]}..., "
          f"CBR {', '.join(f'{c:.4f}' for c in card.cbrs())}; onnxruntime vs PyTorch: "
          f"symbols max |err| {err['symbols_max_abs_err']:.2e}, image max |err| {err['image_max_abs_err']}")
    return 0


def _cmd_eval(a) -> int:
    from .evaluate import EvalOptions, format_table, json_view, parse_snrs, run_eval
    from .runlog import to_json

    opts = EvalOptions(model=a.model, data=a.data, snrs_db=parse_snrs(a.snr_db), channel=a.channel,
                       seed=a.seed, out=a.out, cbr=a.cbr, separation=not a.no_separation, threads=a.threads)
    summary = run_eval(opts)
    if a.record_in_card:
        from .codec.modelcard import CARD_NAME, load_card, write_card
        from .codec.runtime import resolve_model_dir

        d = resolve_model_dir(a.model)
        card = load_card(d / CARD_NAME)
        key = f"{a.record_in_card}/{summary['channel']}/cbr={summary['cbr']:.4f}"
        card.evaluation[key] = {
            "command": "testbed " + " ".join(sys.argv[1:]),
            "n_images": summary["n_images"], "seed": summary["seed"],
            "psnr_db": {f"{r['snr_db']:g}": round(r["psnr_db"], 2) for r in summary["results"]},
            "ms_ssim": {f"{r['snr_db']:g}": round(r["ms_ssim"], 4) for r in summary["results"] if r["ms_ssim"]},
        }
        write_card(d / CARD_NAME, card)
    if a.json:
        print(to_json(json_view(summary)))
    else:
        print(format_table(summary))
    return 0


def _cmd_bench(a) -> int:
    from .bench import bench_codec
    from .runlog import to_json

    try:
        w, h = (int(v) for v in a.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size: expected WIDTHxHEIGHT, got {a.size!r}") from None
    r = bench_codec(a.model, height=h, width=w, repeat=a.repeat, threads=a.threads, cbr=a.cbr)
    if a.json:
        print(to_json(r))
    else:
        print(f"{r['model']} {w}x{h} k={r['symbols_per_location']} ({r['repeat']} runs, "
              f"{r['intra_op_threads']} threads): encode median {r['encode']['median_ms']:.1f} ms "
              f"(p90 {r['encode']['p90_ms']:.1f}), decode median {r['decode']['median_ms']:.1f} ms "
              f"(p90 {r['decode']['p90_ms']:.1f})")
    return 0


def _cmd_demo(a) -> int:
    """The built-in default run: shipped model and sample images through the GNU Radio flowgraph
    (OFDM PHY) with the loopback channel in place of a radio."""
    from .evaluate import parse_snrs
    from .loopback import LoopbackOptions, format_table, json_view, run_loopback
    from .registry import DEFAULT_MODEL, samples_dir
    from .runlog import to_json

    outs = []
    with _StdoutToStderr():
        for cbr in (a.cbr.split(",") if a.cbr else ["0.0625", "0.020833"]):
            opts = LoopbackOptions(model=a.model or DEFAULT_MODEL, images=a.images or str(samples_dir()),
                                   snrs_db=parse_snrs(a.snr_db), cbr=float(cbr), seed=a.seed,
                                   out=(f"{a.out}/cbr-{float(cbr):.4f}" if a.out else None))
            outs.append(run_loopback(opts))
    if a.json:
        print(to_json({"runs": [json_view(s) for s in outs]}))
    else:
        for s in outs:
            print(format_table(s))
            print(f"plot: {s['run_dir']}/psnr_vs_snr.png\n")
    return 0


def _ofdm_from_args(a):
    from .phy.config import OfdmConfig

    if getattr(a, "ofdm_config", None):
        from .configfile import load_yaml

        path = a.ofdm_config
        data = load_yaml(path)
        if "ofdm" not in data:
            from .configfile import ConfigError

            raise ConfigError(f"{path}: no 'ofdm' section")
        cfg = OfdmConfig.from_dict(data["ofdm"], where=str(path))
    else:
        cfg = OfdmConfig()
    if getattr(a, "samp_rate", None):
        from dataclasses import replace

        cfg = replace(cfg, samp_rate=float(a.samp_rate))
        cfg.validate()
    return cfg


class _StdoutToStderr:
    """Send file descriptor 1 to stderr while a flowgraph runs: GNU Radio's C++ logging writes
    to stdout, which must carry only the JSON result."""

    def __enter__(self):
        import os

        sys.stdout.flush()
        self.saved = os.dup(1)
        os.dup2(2, 1)
        return self

    def __exit__(self, *exc):
        import os

        sys.stdout.flush()
        os.dup2(self.saved, 1)
        os.close(self.saved)
        return False


def _cmd_grc_path(a) -> int:
    from .grc import BLOCKS_DIR

    print(BLOCKS_DIR)
    return 0


def _cmd_loopback(a) -> int:
    from .evaluate import parse_snrs
    from .loopback import LoopbackOptions, format_table, json_view, run_loopback
    from .registry import DEFAULT_MODEL, samples_dir
    from .runlog import to_json

    opts = LoopbackOptions(model=a.model or DEFAULT_MODEL, images=a.images or str(samples_dir()),
                           snrs_db=parse_snrs(a.snr_db), cbr=a.cbr, cfo_hz=a.cfo_hz, sco_ppm=a.sco_ppm,
                           delay_samples=a.delay_samples, multipath=a.multipath,
                           delay_spread_s=a.delay_spread_ns * 1e-9 if a.delay_spread_ns else None,
                           seed=a.seed, out=a.out, ofdm=_ofdm_from_args(a), ms_ssim=not a.no_ms_ssim)
    if a.verbose >= 2:
        import os

        os.environ.setdefault("TESTBED_GR_LOG", "info")
    with _StdoutToStderr():
        summary = run_loopback(opts)
    print(to_json(json_view(summary)) if a.json else format_table(summary))
    return 0


def _add_loopback_args(p) -> None:
    p.add_argument("--model", help="model folder or shipped name (default: jscc-v1)")
    p.add_argument("--images", help="image folder (default: the shipped samples/)")
    p.add_argument("--snr-db", default="10", help="comma-separated SNRs (Es/N0 per sub-carrier, dB)")
    p.add_argument("--cbr", type=float, help="channel bandwidth ratio (default: the model's highest)")
    p.add_argument("--cfo-hz", type=float, default=0.0, help="carrier frequency offset (Hz)")
    p.add_argument("--sco-ppm", type=float, default=0.0, help="sample-clock offset (ppm)")
    p.add_argument("--delay-samples", type=int, default=0, help="timing offset: zeros before the first burst")
    p.add_argument("--multipath", default="none", help="none | tdl-a | tdl-c | TAPS_FILE (one 're im' per line)")
    p.add_argument("--delay-spread-ns", type=float, help="TDL delay spread (default: longest tap at half the CP)")
    p.add_argument("--samp-rate", type=float, help="sample rate in S/s (default 1e6, or the config's)")
    p.add_argument("--ofdm-config", help="YAML file with an 'ofdm:' section (testbed.phy.config.OfdmConfig keys)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run folder (default: runs/loopback-<time>)")
    p.add_argument("--no-ms-ssim", action="store_true", help="skip MS-SSIM (faster)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="testbed", description="SDR testbed for agentic semantic communications")
    p.add_argument("--version", action="version", version=f"testbed {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug")
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("doctor", parents=[common], help="check the installation and list attached radios")
    d.add_argument("--no-scan", action="store_true", help="do not look for radios")
    d.add_argument("--scan-network", action="store_true", help="also look for network radios (sends mDNS/UDP)")
    d.set_defaults(func=_cmd_doctor)

    t = sub.add_parser("train", help="train models")
    tsub = t.add_subparsers(dest="what", required=True)
    tc = tsub.add_parser("codec", parents=[common], help="train the JSCC codec")
    from .codec.train import add_arguments

    add_arguments(tc)
    tc.set_defaults(func=_cmd_train_codec)

    e = sub.add_parser("export", parents=[common], help="export a codec checkpoint to ONNX with a model card")
    e.add_argument("checkpoint", help="checkpoint.pt from `testbed train codec`")
    e.add_argument("--out", required=True, help="model folder to write (e.g. models/jscc-v1)")
    e.add_argument("--name", help="model name (default: folder name)")
    e.add_argument("--operating-points", help="symbols per 16x16 block, e.g. 16,48 (default: from training)")
    e.add_argument("--training-command", help="training command to record in the model card")
    e.add_argument("--description")
    e.set_defaults(func=_cmd_export)

    ev = sub.add_parser("eval", parents=[common], help="evaluate an ONNX codec through a software channel")
    ev.add_argument("--model", required=True, help="model folder or shipped model name")
    ev.add_argument("--data", required=True, help="folder of images")
    ev.add_argument("--snr-db", default="0,5,10,15,20", help="comma-separated SNRs (Es/N0, dB); for a negative first value write --snr-db=-5,0,5")
    ev.add_argument("--channel", default="awgn", help="awgn | rayleigh")
    ev.add_argument("--cbr", type=float, help="channel bandwidth ratio (default: the model's highest)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--out", help="run folder (default: runs/eval-<time>)")
    ev.add_argument("--no-separation", action="store_true", help="skip the JPEG/JPEG 2000 reference")
    ev.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all cores)")
    ev.add_argument("--record-in-card", metavar="DATASET", help="store the summary in the model card under DATASET")
    ev.set_defaults(func=_cmd_eval)

    b = sub.add_parser("bench", parents=[common], help="benchmarks")
    bsub = b.add_subparsers(dest="what", required=True)
    bc = bsub.add_parser("codec", parents=[common], help="onnxruntime encode/decode latency")
    bc.add_argument("--model", default="jscc-v1")
    bc.add_argument("--size", default="768x512", help="WIDTHxHEIGHT")
    bc.add_argument("--repeat", type=int, default=20)
    bc.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all cores)")
    bc.add_argument("--cbr", type=float)
    bc.set_defaults(func=_cmd_bench)

    gp = sub.add_parser("grc-path", help="print the folder of the testbed's GRC block definitions (for GRC_BLOCKS_PATH)")
    gp.set_defaults(func=_cmd_grc_path)

    lb = sub.add_parser("loopback", parents=[common],
                        help="run the GNU Radio flowgraph (OFDM PHY) with a software channel instead of a radio")
    _add_loopback_args(lb)
    lb.set_defaults(func=_cmd_loopback)

    dm = sub.add_parser("demo", parents=[common],
                        help="default run: shipped model on the sample images through the OFDM flowgraph, loopback channel")
    dm.add_argument("--model", help="model (default: the shipped jscc-v1)")
    dm.add_argument("--images", help="image folder (default: the shipped samples/)")
    dm.add_argument("--snr-db", default="0,5,10,15,20")
    dm.add_argument("--cbr", help="comma-separated CBRs (default: 0.0625,0.020833)")
    dm.add_argument("--seed", type=int, default=0)
    dm.add_argument("--out", help="run folder (default: runs/eval-<time> per CBR)")
    dm.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    _setup_logging(getattr(a, "verbose", 0))
    from .codec.modelcard import ModelCardError
    from .codec.runtime import ModelError
    from .images import ImageInputError

    try:
        return a.func(a)
    except KeyboardInterrupt:
        print("interrupted; finished results were kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ModelError, ModelCardError, ImageInputError, ValueError, FileNotFoundError) as e:  # ConfigError is a ValueError
        print(f"testbed {a.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
