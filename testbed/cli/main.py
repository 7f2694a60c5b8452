"""The ``testbed`` command line.

Conventions: ``-v`` (INFO) / ``-vv`` (DEBUG) logging on stderr, progress bars on stderr,
results as files in a run folder and, with ``--json``, one JSON object on stdout.
Exit codes: 0 ok, 1 failed check, 2 bad input, 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__

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
    from ..core.runlog import to_json

    r = run_doctor(scan=not a.no_scan, network=a.scan_network)
    if a.json:
        print(to_json(r.as_dict()))
    else:
        print(format_report(r))
    return 0 if not r.missing else 1


def _cmd_train_codec(a) -> int:
    from ..codec.train import config_from_args, train
    from ..core.runlog import to_json

    cfg = config_from_args(a)
    final = train(cfg, resume=a.resume)
    if a.json:
        print(to_json(final))
    else:
        for r in final.get("validation", []):
            print(f"val SNR {r['snr_db']:>4g} dB  k={r['symbols_per_location']:>2}  "
                  f"CBR {r['cbr']:.4f}: {r['val_psnr_db']:.2f} dB")
    return 0


def _cmd_train_akb(a) -> int:
    from ..akb.train import config_from_args, train
    from ..core.runlog import to_json

    final = train(config_from_args(a), resume=a.resume)
    best = "no validation (no --val)" if final["best_val"] is None else f"best validation {final['best_val']:.2f} dB"
    print(to_json(final) if a.json else f"AKB codec: {final['step']} steps, {best}")
    return 0


def _cmd_train_scheduler(a) -> int:
    from ..akb.channel_kb.scheduler import config_from_args, train_scheduler
    from ..core.runlog import to_json

    final = train_scheduler(config_from_args(a), resume=a.resume)
    if a.json:
        print(to_json(final))
    else:
        for r in final["evaluation"]:
            print(f"SNR {r['snr_db']:>4g} dB: reward {r['reward']:+.3f} (fixed mapping 0), "
                  f"PSNR {r['psnr_db']:.2f} dB ({r['psnr_gain_db']:+.3f} dB)")
        print(f"policy: {final['policy']}")
    return 0


def _cmd_ota(a) -> int:
    from ..experiments.evaluate import parse_snrs
    from ..experiments.ota import OtaOptions, format_table, run_ota
    from ..core.runlog import to_json

    gains = parse_snrs(a.tx_gain_db, "--tx-gain-db") if a.tx_gain_db else None
    opts = OtaOptions(config=a.config, images=a.images, model=a.model, cbr=a.cbr, tx_gains_db=gains,
                      record=a.record, out=a.out, force=a.force, snr_hint_db=a.snr_hint_db, ckb=_ckb(a), skb=not a.no_skb,
                      allocation=a.allocation)
    with _StdoutToStderr():
        summary = run_ota(opts)
    print(to_json(summary) if a.json else format_table(summary))
    return 0


def _cmd_replay(a) -> int:
    from ..experiments.ota import format_table, run_replay
    from ..core.sigmf_io import RecordingError
    from ..core.runlog import to_json

    try:
        with _StdoutToStderr():
            summary = run_replay(a.recording, a.out, a.images, force=a.force)
    except RecordingError as e:
        raise ValueError(str(e)) from None
    print(to_json(summary) if a.json else format_table(summary))
    return 0


def _cmd_radios(a) -> int:
    from .doctor import scan_radios
    from ..radio.pluto import scan_plutos
    from ..core.runlog import to_json

    found = scan_radios(network=a.scan_network)
    plutos = {p["uri"]: p for p in scan_plutos()} if any(r["kind"] == "iio" for r in found) else {}
    for r in found:
        if r["kind"] == "iio" and r.get("uri") in plutos:
            r.update({k: v for k, v in plutos[r["uri"]].items() if k != "uri"})
    if a.json:
        print(to_json({"radios": found}))
    elif not found:
        print("no radios found (USB scan" + (" and network" if a.scan_network else "; --scan-network for network radios")
              + ")")
    else:
        for r in found:
            if r["kind"] == "iio":
                print(f"Pluto/IIO  {r.get('uri')}  serial {r.get('serial', '?')}  firmware {r.get('firmware', '?')}  "
                      f"temperature {r.get('temperature_c', float('nan')):.1f} C  ({r.get('description', '')})")
            else:
                print("USRP       " + "  ".join(f"{k} {v}" for k, v in r.items() if k != "kind"))
    return 0


def _load_pluto(path):
    from ..link.configs import load_config
    from ..radio.config import PlutoConfig

    cfg = load_config(path)
    if not isinstance(cfg, PlutoConfig):
        raise ValueError(f"{path}: kind {cfg.kind!r}; this command needs a pluto config")
    return cfg


def _cmd_link_check(a) -> int:
    from ..radio.pluto import link_check
    from ..core.runlog import to_json

    r = link_check(_load_pluto(a.config))
    print(to_json(r) if a.json else f"{r['uri']}: CFO {r['cfo_hz']:.1f} Hz, SNR {r['snr_db']:.1f} dB, RX power "
          f"{r['rx_power_dbfs']:.1f} dBFS; read-back mismatches: {r['mismatches'] or 'none'}")
    return 1 if r["mismatches"] else 0


def _cmd_calibrate(a) -> int:
    from ..radio.pluto import calibrate
    from ..core.runlog import to_json

    r = calibrate(_load_pluto(a.config), a.seconds)
    print(to_json(r) if a.json else f"CFO {r['cfo_hz']:.1f} Hz ({r['cfo_ppm']:.2f} ppm) over {r['captures']} captures, "
          f"SNR {r['snr_db']:.1f} dB; set xo_correction: {r['suggested_rx_xo_correction']:.0f} on the RX Pluto "
          f"(now {r['rx_xo_correction_now']:.0f})")
    return 0


def _cmd_pluto_config(a) -> int:
    from ..radio.pluto_config_txt import render

    print(render(a.ip, a.hostname, a.xo_correction), end="")
    return 0


def _cmd_kb_build(a) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..akb.runtime import AkbCodec
    from ..akb.source_kb.kb import KbError, OnnxEmbedderProvider, build_kb
    from ..core.images import load_images
    from ..core.runlog import to_json

    if not 1 <= a.entries <= 255:
        raise ValueError(f"--entries: {a.entries} is outside 1..255 (the header's KB index has 8 bits, 255 = no KB)")
    codec = AkbCodec(a.model)
    if a.provider == "clip":
        if not a.clip_dir or not a.captioner:
            raise ValueError("--provider clip needs --clip-dir and --captioner")
        from ..akb.source_kb.clip_provider import CaptionClipProvider

        provider = CaptionClipProvider(a.clip_dir, a.captioner)
    else:
        provider = OnnxEmbedderProvider(codec.dir / codec.card.graphs["embedder"]["file"])
    images, skipped = load_images(a.data)
    with tqdm(total=len(images), desc="kb build", unit="img") as bar:
        try:
            kb = build_kb(provider, [im for _, im in images], a.entries, codec.kb_dim, np.random.default_rng(a.seed),
                          crops_per_image=a.crops_per_image, progress=bar.update)
        except KbError as e:
            raise ValueError(str(e)) from None
    kb.meta.update({"data": str(a.data), "model": codec.name})
    kb.save(a.out)
    res = {"kb": str(a.out), "sha256": kb.sha256, "entries": len(kb), "provider": kb.provider,
           "images": len(images), "skipped": skipped}
    print(to_json(res) if a.json else f"KB {a.out}: {len(kb)} entries from {len(images)} images, "
          f"provider {kb.provider}, sha256 {kb.sha256[:16]}")
    return 0


def _cmd_export_akb(a) -> int:
    import json
    from pathlib import Path

    import torch

    from ..akb.export import check_against_torch, export_akb
    from ..akb.train import load_akb
    from ..core.runlog import to_json

    out = Path(a.out)
    scheduler = None
    if a.scheduler_run:
        sr = Path(a.scheduler_run)
        scfg = json.loads((sr / "train_config.json").read_text())
        fin = json.loads((sr / "final_metrics.json").read_text()) if (sr / "final_metrics.json").exists() else {}
        scheduler = {"command": scfg.get("command", ""), "timesteps": fin.get("timesteps"),
                     "evaluation": fin.get("evaluation")}
    if a.attach:
        from ..akb.export import attach_policy

        if not a.policy:
            raise ValueError("--attach needs --policy")
        card = attach_policy(out, a.policy, scheduler)
        print(to_json({"model_dir": str(out), "sha256": card.sha256}) if a.json
              else f"attached {a.policy} to {out} (model sha256 {card.sha256[:16]} unchanged)")
        return 0
    if not a.checkpoint:
        raise ValueError("export-akb: give a checkpoint (or --attach)")
    ck = torch.load(a.checkpoint, map_location="cpu", weights_only=False)
    model, emb, kb = load_akb(a.checkpoint)
    tc = ck.get("train_config", {})
    training = {"codec": {"command": tc.get("command", ""), "data": tc.get("data", ""), "val": tc.get("val", ""),
                          "init_from": tc.get("init_from", ""), "steps": ck.get("step"),
                          "entropy_steps": tc.get("entropy_steps"), "batch": tc.get("batch"), "crop": tc.get("crop"),
                          "seed": tc.get("seed"), "weights": "ema" if ck.get("ema") is not None else "raw"},
                "data": tc.get("data", "")}
    if scheduler:
        training["scheduler"] = scheduler
    card = export_akb(model, emb, kb, out, name=a.name or out.name, training=training,
                      policy_file=a.policy, description=a.description)
    check = check_against_torch(model, emb, kb, out)
    res = {"model_dir": str(out), "sha256": card.sha256, "parameters": card.parameters, "onnx_vs_torch": check}
    print(to_json(res) if a.json else f"exported {card.name} to {out} (sha256 {card.sha256[:16]}), "
          f"ONNX vs PyTorch: {check}")
    return 0


def _cmd_export(a) -> int:
    import json
    from pathlib import Path

    import torch

    from ..codec.export import check_against_torch, export
    from ..codec.train import load_model

    try:
        ck = torch.load(a.checkpoint, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise ValueError(f"{a.checkpoint}: not a training checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ck, dict) or "codec_config" not in ck:
        hint = (" (an AKB-JSCC checkpoint: use `testbed export-akb`)"
                if isinstance(ck, dict) and "akb_config" in ck else "")
        raise ValueError(f"{a.checkpoint}: not a codec v1 checkpoint of `testbed train codec`{hint}")
    model = load_model(a.checkpoint)
    tc = ck.get("train_config", {})
    if a.operating_points:
        ops = []
        for v in a.operating_points.split(","):
            try:
                ops.append(int(v))
            except ValueError:
                raise ValueError(f"--operating-points: {v!r} is not an integer (symbols per location)") from None
    else:
        ops = tc.get("operating_points", [model.cfg.max_symbols])
    training = {
        "command": a.training_command or tc.get("command", ""),
        "data": tc.get("data", ""),
        "val": tc.get("val", ""),
        "channel": tc.get("channel", ""),
        "steps": ck.get("step"),
        "batch": tc.get("batch"),
        "crop": tc.get("crop"),
        "mosaic": tc.get("mosaic", 1),
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
    from ..experiments.evaluate import EvalOptions, format_table, json_view, parse_snrs, run_eval
    from ..core.runlog import to_json

    opts = EvalOptions(model=a.model, data=a.data, snrs_db=parse_snrs(a.snr_db), channel=a.channel,
                       seed=a.seed, out=a.out, force=a.force, cbr=a.cbr, separation=not a.no_separation, threads=a.threads,
                       ckb=_ckb(a), skb=not a.no_skb, allocation=a.allocation, figures=a.figures)
    summary = run_eval(opts)
    if a.record_in_card:
        from ..zoo import CARD_NAME, load_card, resolve_model_dir

        d = resolve_model_dir(a.model)
        card = load_card(d / CARD_NAME)
        key = f"{a.record_in_card}/{summary['channel']}/cbr={summary['cbr']:.4f}"
        if summary.get("ckb") is not None:
            key += "/" + ("ckb" if summary["ckb"] else "no-ckb") + "," + ("skb" if summary["skb"] else "no-skb")
            if summary.get("allocation", "entropy") != "entropy":
                key += "," + summary["allocation"]
        card.evaluation[key] = {
            "command": "testbed " + " ".join(sys.argv[1:]),
            "n_images": summary["n_images"], "seed": summary["seed"],
            "psnr_db": {f"{r['snr_db']:g}": round(r["psnr_db"], 2) for r in summary["results"]},
            "ms_ssim": {f"{r['snr_db']:g}": round(r["ms_ssim"], 4) for r in summary["results"] if r["ms_ssim"]},
        }
        card.write(d / CARD_NAME)
    if a.json:
        print(to_json(json_view(summary)))
    else:
        print(format_table(summary))
    return 0


def _cmd_bench(a) -> int:
    from ..experiments.bench import bench_codec
    from ..core.runlog import to_json

    try:
        w, h = (int(v) for v in a.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size: expected WIDTHxHEIGHT, got {a.size!r}") from None
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


def _cmd_demo(a) -> int:
    """The built-in default run: shipped model and sample images through the GNU Radio flowgraph
    (OFDM PHY) with the loopback channel in place of a radio."""
    from ..experiments.evaluate import parse_snrs
    from ..experiments.loopback import LoopbackOptions, format_table, json_view, run_loopback
    from ..core.paths import DEFAULT_MODEL, samples_dir
    from ..core.runlog import prepare_run_dir, to_json

    cbrs = parse_snrs(a.cbr, "--cbr", unit="") if a.cbr else [0.0625, 0.020833]
    if a.out:   # the CBR runs go to OUT/cbr-<CBR>: OUT itself must be new or empty (or --force)
        prepare_run_dir(a.out, "demo", force=a.force)
    outs = []
    with _StdoutToStderr():
        for cbr in cbrs:
            opts = LoopbackOptions(model=a.model or DEFAULT_MODEL, images=a.images or str(samples_dir()),
                                   snrs_db=parse_snrs(a.snr_db), cbr=float(cbr), seed=a.seed,
                                   out=(f"{a.out}/cbr-{float(cbr):.4f}" if a.out else None), force=a.force)
            outs.append(run_loopback(opts))
    if a.json:
        print(to_json({"runs": [json_view(s) for s in outs]}))
    else:
        for s in outs:
            print(format_table(s))
            print(f"plot: {s['run_dir']}/psnr_vs_snr.png\n")
    return 0


def _ofdm_from_args(a):
    from ..phy.config import OfdmConfig

    cfg = OfdmConfig.from_file(a.ofdm_config) if getattr(a, "ofdm_config", None) else OfdmConfig()
    if getattr(a, "samp_rate", None):
        from dataclasses import replace

        source = getattr(cfg, "source", None)
        cfg = replace(cfg, samp_rate=float(a.samp_rate))
        cfg.validate()
        if source:
            object.__setattr__(cfg, "source", source)
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
    from ..grc import BLOCKS_DIR

    print(BLOCKS_DIR)
    return 0


def _cmd_loopback(a) -> int:
    from ..experiments.evaluate import parse_snrs
    from ..experiments.loopback import LoopbackOptions, format_table, json_view, run_loopback
    from ..core.paths import DEFAULT_MODEL, samples_dir
    from ..core.runlog import to_json

    opts = LoopbackOptions(model=a.model or DEFAULT_MODEL, images=a.images or str(samples_dir()),
                           snrs_db=parse_snrs(a.snr_db), cbr=a.cbr, cfo_hz=a.cfo_hz, sco_ppm=a.sco_ppm,
                           delay_samples=a.delay_samples, multipath=a.multipath,
                           delay_spread_s=a.delay_spread_ns * 1e-9 if a.delay_spread_ns else None,
                           seed=a.seed, out=a.out, force=a.force, ofdm=_ofdm_from_args(a), ms_ssim=not a.no_ms_ssim,
                           ckb=_ckb(a), skb=not a.no_skb, allocation=a.allocation)
    if a.verbose >= 2:
        import os

        os.environ.setdefault("TESTBED_GR_LOG", "info")
    with _StdoutToStderr():
        summary = run_loopback(opts)
    print(to_json(json_view(summary)) if a.json else format_table(summary))
    return 0


def _add_allocation_arg(p) -> None:
    from ..akb.allocation import ALLOCATIONS

    p.add_argument("--allocation", choices=ALLOCATIONS, default="entropy",
                   help="AKB codec: rate map from the entropy model (adjusted by the channel-KB policy unless "
                        "--no-ckb), or 'measured': the transmitter decodes the image at every rate level and "
                        "minimises the measured distortion (replaces the policy; one decoder pass per level)")


def _ckb(a) -> bool:
    """The channel-KB policy is on unless --no-ckb, or --allocation measured (which replaces it)."""
    if a.allocation == "measured" and not a.no_ckb:
        log.info("--allocation measured: the rate map is measured, the channel-KB policy is not used")
    return not a.no_ckb and a.allocation != "measured"


def _add_loopback_args(p) -> None:
    p.add_argument("--model", help="model folder or shipped name (default: jscc-v1)")
    p.add_argument("--images", help="image folder (default: the shipped samples/)")
    p.add_argument("--snr-db", default="10", help="comma-separated SNRs (Es/N0 per sub-carrier, dB); "
                                                  "for a negative first value write --snr-db=-5,0,5")
    p.add_argument("--cbr", type=float, help="channel bandwidth ratio (default: the model's highest; AKB models: 0.0625)")
    p.add_argument("--cfo-hz", type=float, default=0.0, help="carrier frequency offset (Hz)")
    p.add_argument("--sco-ppm", type=float, default=0.0, help="sample-clock offset (ppm)")
    p.add_argument("--delay-samples", type=int, default=0, help="timing offset: zeros before the first burst")
    p.add_argument("--multipath", default="none", help="none | tdl-a | tdl-c | TAPS_FILE (one 're im' per line)")
    p.add_argument("--delay-spread-ns", type=float, help="TDL delay spread (default: longest tap at half the CP)")
    p.add_argument("--samp-rate", type=float, help="sample rate in S/s (default 1e6, or the config's)")
    p.add_argument("--ofdm-config", help="YAML file with an 'ofdm:' section (testbed.phy.config.OfdmConfig keys)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run folder (default: runs/loopback-<time>)")
    p.add_argument("--force", action="store_true", help="overwrite the files of an earlier run in --out")
    p.add_argument("--no-ckb", action="store_true", help="AKB codec: fixed entropy-to-rate mapping (no channel-KB policy)")
    p.add_argument("--no-skb", action="store_true", help="AKB codec: no source-KB conditioning")
    _add_allocation_arg(p)
    p.add_argument("--no-ms-ssim", action="store_true", help="skip MS-SSIM (faster)")


class StrictParser(argparse.ArgumentParser):
    """No abbreviated long options (``--resum`` is an error, not ``--resume``): a training run
    records its command line in its config and model card, and that record must name the options
    in full. Sub-command parsers inherit the class."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = StrictParser(
        prog="testbed", description="SDR testbed for agentic semantic communications",
        epilog="Start with `testbed doctor`, then `testbed demo`. Exit codes: 0 ok, 1 a check failed, "
               "2 bad input, 130 interrupted (finished results are kept).")
    p.add_argument("--version", action="version", version=f"testbed {__version__}")
    common = StrictParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug")
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("doctor", parents=[common], help="check the installation and list attached radios")
    d.add_argument("--no-scan", action="store_true", help="do not look for radios")
    d.add_argument("--scan-network", action="store_true", help="also look for network radios (sends mDNS/UDP)")
    d.set_defaults(func=_cmd_doctor)

    t = sub.add_parser("train", help="train models")
    tsub = t.add_subparsers(dest="what", required=True, metavar="{codec,akb,scheduler}")
    tc = tsub.add_parser("codec", parents=[common], help="train the JSCC codec")
    from ..codec.train import add_arguments

    add_arguments(tc)
    tc.set_defaults(func=_cmd_train_codec)
    ta = tsub.add_parser("akb", parents=[common], help="train the AKB codec (entropy model, source KB) from codec v1")
    from ..akb.train import add_arguments as add_akb_arguments

    add_akb_arguments(ta)
    ta.set_defaults(func=_cmd_train_akb)
    ts = tsub.add_parser("scheduler", parents=[common], help="train the channel-KB policy (PPO) on an AKB codec")
    from ..akb.channel_kb.scheduler import add_arguments as add_sched_arguments

    add_sched_arguments(ts)
    ts.set_defaults(func=_cmd_train_scheduler)

    e = sub.add_parser("export", parents=[common], help="export a codec checkpoint to ONNX with a model card")
    e.add_argument("checkpoint", help="checkpoint.pt from `testbed train codec`")
    e.add_argument("--out", required=True, help="model folder to write (e.g. models/jscc-v1)")
    e.add_argument("--name", help="model name (default: folder name)")
    e.add_argument("--operating-points", help="symbols per 16x16 block, e.g. 16,48 (default: from training)")
    e.add_argument("--training-command", help="training command to record in the model card")
    e.add_argument("--description")
    e.set_defaults(func=_cmd_export)

    ot = sub.add_parser("ota", parents=[common], help="over-the-air run (radio, loopback or SigMF front-end)")
    ot.add_argument("--config", required=True, help="firmware_configs/<radio>.yaml (pluto, usrp, loopback, sigmf)")
    ot.add_argument("--images", required=True, help="folder of images")
    ot.add_argument("--model", help="model folder or shipped name (default: jscc-v1)")
    ot.add_argument("--cbr", type=float, help="CBR (fixed-rate: the model's highest; AKB: 0.0625)")
    ot.add_argument("--tx-gain-db", help="comma-separated TX gains to sweep (Pluto: -attenuation; loopback: "
                                         "added to the channel SNR); default: the config's. Negative values: "
                                         "--tx-gain-db=-30,-20,-10")
    ot.add_argument("--record", action="store_true", help="save the received IQ as SigMF in the run folder")
    ot.add_argument("--snr-hint-db", type=float, default=10.0,
                    help="SNR the encoder assumes until the receiver's first estimate (default %(default)s)")
    ot.add_argument("--no-ckb", action="store_true", help="AKB codec: no channel-KB policy")
    ot.add_argument("--no-skb", action="store_true", help="AKB codec: no source KB")
    _add_allocation_arg(ot)
    ot.add_argument("--out", help="run folder (default: runs/ota-<time>)")
    ot.add_argument("--force", action="store_true", help="overwrite the files of an earlier run in --out")
    ot.set_defaults(func=_cmd_ota)

    rp = sub.add_parser("replay", parents=[common], help="re-run the receiver on a SigMF recording of `testbed ota`")
    rp.add_argument("recording", help="REC.sigmf-meta")
    rp.add_argument("--images", help="folder with the reference images (default: the paths recorded)")
    rp.add_argument("--out", help="run folder (default: runs/replay-<time>)")
    rp.add_argument("--force", action="store_true", help="overwrite the files of an earlier run in --out")
    rp.set_defaults(func=_cmd_replay)

    ra = sub.add_parser("radios", parents=[common], help="attached radios: Plutos (libiio scan) and USRPs (UHD)")
    ra.add_argument("--scan-network", action="store_true", help="also look for network radios (sends mDNS/UDP)")
    ra.set_defaults(func=_cmd_radios)

    lc = sub.add_parser("link-check", parents=[common],
                        help="one Pluto in full duplex: apply the config, read it back, cyclic TX + RX capture")
    lc.add_argument("--config", required=True, help="a pluto config (firmware_configs/pluto.yaml)")
    lc.set_defaults(func=_cmd_link_check)

    ca = sub.add_parser("calibrate", parents=[common],
                        help="CFO between two Plutos from a known reference; suggests the RX xo_correction")
    ca.add_argument("--config", required=True, help="a pluto config with uri (TX) and rx_uri (RX)")
    ca.add_argument("--seconds", type=float, default=2.0)
    ca.set_defaults(func=_cmd_calibrate)

    pc = sub.add_parser("pluto-config", parents=[common], help="print a Pluto config.txt for the given address")
    pc.add_argument("--ip", required=True, help="the Pluto's address, e.g. 192.168.3.1")
    pc.add_argument("--hostname")
    pc.add_argument("--xo-correction", type=float,
                    help="reference frequency (Hz), from `testbed calibrate` (default: keep the factory calibration)")
    pc.set_defaults(func=_cmd_pluto_config)

    kbp = sub.add_parser("kb", help="source knowledge base")
    kbsub = kbp.add_subparsers(dest="what", required=True, metavar="{build}")
    kbb = kbsub.add_parser("build", parents=[common], help="build a source KB from a folder of images")
    kbb.add_argument("--data", required=True, help="folder of images")
    kbb.add_argument("--model", default="akb-v1", help="AKB codec whose embedder and KB size to use (default: %(default)s)")
    kbb.add_argument("--provider", choices=["image", "clip"], default="image",
                     help="image: the model's embedder.onnx; clip: LVM caption + CLIP text encoder (local weights)")
    kbb.add_argument("--clip-dir", help="clip: folder with a CLIP text encoder and tokenizer")
    kbb.add_argument("--captioner", help="clip: folder of a local image-to-text model")
    kbb.add_argument("--entries", type=int, default=64, help="KB entries (at most 255; default %(default)s)")
    kbb.add_argument("--crops-per-image", type=int, default=4)
    kbb.add_argument("--seed", type=int, default=0)
    kbb.add_argument("--out", required=True, help="KB file to write (.npz)")
    kbb.set_defaults(func=_cmd_kb_build)

    ea = sub.add_parser("export-akb", parents=[common],
                        help="export an AKB checkpoint (and channel-KB policy) to ONNX graphs, KB and model card")
    ea.add_argument("checkpoint", nargs="?", help="best.pt or checkpoint.pt from `testbed train akb`")
    ea.add_argument("--attach", action="store_true",
                    help="only add --policy (and --scheduler-run's record) to the model already in --out")
    ea.add_argument("--policy", help="policy.onnx from `testbed train scheduler` (the channel KB)")
    ea.add_argument("--scheduler-run", help="the scheduler's run folder (its training record goes into the card)")
    ea.add_argument("--out", required=True, help="model folder to write, e.g. models/akb-v1")
    ea.add_argument("--name", help="model name (default: the folder name)")
    ea.add_argument("--description", default="")
    ea.set_defaults(func=_cmd_export_akb)

    ev = sub.add_parser("eval", parents=[common], help="evaluate an ONNX codec through a software channel")
    ev.add_argument("--model", required=True, help="model folder or shipped model name")
    ev.add_argument("--data", required=True, help="folder of images")
    ev.add_argument("--snr-db", default="0,5,10,15,20", help="comma-separated SNRs (Es/N0, dB); for a negative first value write --snr-db=-5,0,5")
    ev.add_argument("--channel", default="awgn", help="awgn | rayleigh")
    ev.add_argument("--cbr", type=float, help="channel bandwidth ratio (default: the model's highest; AKB models: 0.0625)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--out", help="run folder (default: runs/eval-<time>)")
    ev.add_argument("--force", action="store_true", help="overwrite the files of an earlier run in --out")
    ev.add_argument("--no-separation", action="store_true", help="skip the JPEG/JPEG 2000 reference")
    ev.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all cores)")
    ev.add_argument("--record-in-card", metavar="DATASET", help="store the summary in the model card under DATASET")
    ev.add_argument("--no-ckb", action="store_true", help="AKB codec: fixed entropy-to-rate mapping instead of the channel-KB policy")
    ev.add_argument("--no-skb", action="store_true", help="AKB codec: no source-KB conditioning")
    _add_allocation_arg(ev)
    ev.add_argument("--figures", action="store_true",
                    help="AKB codec: save entropy map, rate map and reconstruction of the first image per SNR")
    ev.set_defaults(func=_cmd_eval)

    b = sub.add_parser("bench", parents=[common], help="benchmarks")
    bsub = b.add_subparsers(dest="what", required=True, metavar="{codec}")
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
    dm.add_argument("--snr-db", default="0,5,10,15,20", help="comma-separated SNRs (dB, default %(default)s); "
                                                            "for a negative first value write --snr-db=-5,0")
    dm.add_argument("--cbr", help="comma-separated CBRs (default: 0.0625,0.020833)")
    dm.add_argument("--seed", type=int, default=0)
    dm.add_argument("--out", help="run folder (default: runs/loopback-<time> per CBR)")
    dm.add_argument("--force", action="store_true", help="overwrite the files of an earlier run in --out")
    dm.set_defaults(func=_cmd_demo)

    from ..agent.cli import add_parsers as add_agent_parsers

    add_agent_parsers(sub, common)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    _setup_logging(getattr(a, "verbose", 0))
    from ..core.card import ModelCardError
    from ..core.codecs import ModelError
    from ..core.images import ImageInputError

    try:
        return a.func(a)
    except KeyboardInterrupt:
        print("interrupted; finished results were kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:   # stdout closed early (e.g. `testbed doctor --json | head`): not a failure
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ModelError, ModelCardError, ImageInputError, ValueError, FileNotFoundError, ConnectionError,
            TimeoutError) as e:  # ConfigError is a ValueError
        name = " ".join(str(x) for x in (a.command, getattr(a, "what", None)) if x)
        print(f"testbed {name}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
