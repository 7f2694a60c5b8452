"""The GNU Radio flowgraph with a software channel: ``testbed loopback``, ``testbed demo``, and
``testbed grc-path`` (where the GRC block definitions are)."""
from __future__ import annotations

from ..core.checks import CBR, SAMP_RATE, number
from .common import (CBR_TYPE, SEED_TYPE, StdoutToStderr, add_allocation_arg, add_gui_args, add_mcs_arg, ckb,
                     run_maybe_with_gui)

MAX_DELAY_SAMPLES = 10_000_000      # --delay-samples: 10 s at 1 MS/s
MAX_DELAY_SPREAD_NS = 1e6           # --delay-spread-ns: 1 ms (the cyclic prefix limits what decodes)


def add_parsers(sub, common) -> None:
    gp = sub.add_parser("grc-path", help="print the folder of the testbed's GRC block definitions (for GRC_BLOCKS_PATH)")
    gp.set_defaults(func=_cmd_grc_path)

    lb = sub.add_parser("loopback", parents=[common],
                        help="run the GNU Radio flowgraph (OFDM PHY) with a software channel instead of a radio")
    _add_loopback_args(lb)
    add_gui_args(lb)
    lb.set_defaults(func=_cmd_loopback)

    dm = sub.add_parser("demo", parents=[common],
                        help="default run: shipped model on the sample images through the OFDM flowgraph, loopback channel")
    dm.add_argument("--model", help="model (default: the shipped jscc-v1)")
    dm.add_argument("--images", help="image folder (default: the shipped samples/)")
    dm.add_argument("--snr-db", default="0,5,10,15,20", help="comma-separated SNRs (dB, default %(default)s); "
                                                            "for a negative first value write --snr-db=-5,0")
    dm.add_argument("--cbr", help="comma-separated CBRs (default: 0.0625,0.020833)")
    dm.add_argument("--seed", type=SEED_TYPE, default=0)
    dm.add_argument("--out", help="run folder (default: runs/loopback-<time> per CBR)")
    dm.add_argument("--force", action="store_true", help="overwrite the files of an earlier run in --out")
    dm.set_defaults(func=_cmd_demo)


def _add_loopback_args(p) -> None:
    p.add_argument("--model", help="model folder or shipped name (default: jscc-v1)")
    p.add_argument("--images", help="image folder (default: the shipped samples/)")
    p.add_argument("--snr-db", default="10", help="comma-separated SNRs (Es/N0 per sub-carrier, dB); "
                                                  "for a negative first value write --snr-db=-5,0,5")
    p.add_argument("--cbr", type=CBR_TYPE, help="channel bandwidth ratio (default: the model's highest; AKB models: 0.0625)")
    p.add_argument("--cfo-hz", type=number(float), default=0.0,
                   help="carrier frequency offset (Hz; within +-0.45 of the sample rate)")
    p.add_argument("--sco-ppm", type=number(float, lo=-1000, hi=1000), default=0.0,
                   help="sample-clock offset (ppm, -1000..1000)")
    p.add_argument("--delay-samples", type=number(int, lo=0, hi=MAX_DELAY_SAMPLES), default=0,
                   help=f"timing offset: zeros before the first burst (0..{MAX_DELAY_SAMPLES})")
    p.add_argument("--multipath", default="none", help="none | tdl-a | tdl-c | TAPS_FILE (one 're im' per line)")
    p.add_argument("--delay-spread-ns", type=number(float, lo=0, hi=MAX_DELAY_SPREAD_NS), help="TDL delay spread (default: longest tap at half the CP)")
    p.add_argument("--samp-rate", type=number(float, lo=SAMP_RATE[0], hi=SAMP_RATE[1], lo_open=True),
                   help="sample rate in S/s (default 1e6, or the config's)")
    p.add_argument("--ofdm-config", help="YAML file with an 'ofdm:' section (testbed.phy.config.OfdmConfig keys)")
    p.add_argument("--seed", type=SEED_TYPE, default=0)
    p.add_argument("--out", help="run folder (default: runs/loopback-<time>)")
    p.add_argument("--force", action="store_true", help="overwrite the files of an earlier run in --out")
    p.add_argument("--no-ckb", action="store_true", help="AKB codec: fixed entropy-to-rate mapping (no channel-KB policy)")
    p.add_argument("--no-skb", action="store_true", help="AKB codec: no source-KB conditioning")
    add_allocation_arg(p)
    add_mcs_arg(p)
    p.add_argument("--no-ms-ssim", action="store_true", help="skip MS-SSIM (faster)")
    p.add_argument("--realtime", action="store_true",
                   help="pace the channel at the sample rate and drop the samples the receiver has no room "
                        "for, as a radio would; drops are counted in summary.json and per image (frames_hit)")
    p.add_argument("--rx-buffer-ms", type=number(float, lo=0, hi=10_000, lo_open=True),
                   help="--realtime: the emulated radio's receive buffer (ms of samples, at least 65 536 "
                        "samples; default 250): how long the receiver may fall behind before samples drop")


def _ofdm_from_args(a):
    from ..phy.config import OfdmConfig

    cfg = OfdmConfig.from_file(a.ofdm_config) if getattr(a, "ofdm_config", None) else OfdmConfig()
    if getattr(a, "samp_rate", None) is not None:
        from dataclasses import replace

        source = getattr(cfg, "source", None)
        cfg = replace(cfg, samp_rate=float(a.samp_rate))
        cfg.validate()
        if source:
            object.__setattr__(cfg, "source", source)
    return cfg


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
                           ckb=ckb(a), skb=not a.no_skb, allocation=a.allocation, mcs=a.mcs,
                           realtime=getattr(a, "realtime", False),
                           rx_buffer_ms=getattr(a, "rx_buffer_ms", None))
    if a.verbose >= 2:
        import os

        os.environ.setdefault("TESTBED_GR_LOG", "info")
    with StdoutToStderr():
        summary = run_maybe_with_gui(a, "testbed loopback", lambda view: run_loopback(opts, view=view))
    print(to_json(json_view(summary)) if a.json else format_table(summary))
    return 0


def _cmd_demo(a) -> int:
    """The built-in default run: shipped model and sample images through the GNU Radio flowgraph
    (OFDM PHY) with the loopback channel in place of a radio."""
    from ..experiments.evaluate import parse_snrs
    from ..experiments.loopback import LoopbackOptions, format_table, json_view, run_loopback
    from ..core.paths import DEFAULT_MODEL, samples_dir
    from ..core.runlog import prepare_run_dir, to_json

    cbrs = parse_snrs(a.cbr, "--cbr", unit="", lo=CBR[0], hi=CBR[1], lo_open=True) if a.cbr is not None else [0.0625, 0.020833]
    if a.out:   # the CBR runs go to OUT/cbr-<CBR>: OUT itself must be new or empty (or --force)
        prepare_run_dir(a.out, "demo", force=a.force)
    outs = []
    with StdoutToStderr():
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
