"""``testbed train codec | akb | scheduler``."""
from __future__ import annotations

from ..core.checks import number


def add_parsers(sub, common) -> None:
    t = sub.add_parser("train", help="train models")
    tsub = t.add_subparsers(dest="what", required=True, metavar="{codec,akb,scheduler,pack}")
    tc = tsub.add_parser("codec", parents=[common], help="train the JSCC codec")
    from ..codec.train import add_arguments

    add_arguments(tc)
    tc.set_defaults(func=_cmd_train_codec)
    ta = tsub.add_parser("akb", parents=[common], help="train the AKB codec (entropy model, source KB) from codec v1")
    from ..akb.train import add_arguments as add_akb_arguments

    add_akb_arguments(ta)
    ta.set_defaults(func=_cmd_train_akb)
    ts = tsub.add_parser("scheduler", parents=[common], help="train the channel-KB policy (PPO) on an AKB codec")
    from ..akb.channel_kb.schedargs import add_arguments as add_sched_arguments

    add_sched_arguments(ts)
    ts.set_defaults(func=_cmd_train_scheduler)
    tp = tsub.add_parser("pack", parents=[common],
                         help="re-encode training (and validation) images into a pack that fits a size budget "
                              "(the data a GPU run carries)")
    tp.add_argument("--data", required=True, help="folder of training images (e.g. ../shared/data/train)")
    tp.add_argument("--val", help="folder of validation images; the first --val-images go along as PNG")
    tp.add_argument("--val-images", type=number(int, lo=0, hi=100_000), default=12,
                    help="validation images to pack (default %(default)s)")
    tp.add_argument("--out", default="train-pack", help="pack folder to write (default %(default)s, git-ignored)")
    tp.add_argument("--budget-mb", type=number(float, lo=0.0, hi=1e6, lo_open=True), default=15.0,
                    help="size of the pack in MB (10^6 bytes; default %(default)s): the training images get the "
                         "highest WebP quality that fits")
    tp.add_argument("--force", action="store_true", help="replace an existing pack")
    tp.set_defaults(func=_cmd_train_pack)


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


def _cmd_train_pack(a) -> int:
    from ..core.runlog import to_json
    from ..core.trainpack import build_pack

    m = build_pack(a.data, a.out, val=a.val, val_images=a.val_images, budget_mb=a.budget_mb, force=a.force)
    if a.json:
        print(to_json(m))
    else:
        t = m["train"]
        print(f"{a.out}: {t['images']} training images, WebP quality {t['quality']}, {t['bytes'] / 1e6:.2f} MB "
              f"(PSNR vs source {t['psnr_vs_source_db']['mean']:.2f} dB mean, {t['psnr_vs_source_db']['min']:.2f} min); "
              f"{m['val']['images']} validation images, {m['val']['bytes'] / 1e6:.2f} MB")
    return 0


def _cmd_train_scheduler(a) -> int:
    from ..core.runlog import to_json

    try:
        from ..akb.channel_kb.scheduler import config_from_args, train_scheduler
    except ImportError as e:   # gymnasium / stable-baselines3 absent (a GPU machine's image)
        raise ValueError(f"needs the Python package {e.name or str(e)!r}, not installed here") from None

    final = train_scheduler(config_from_args(a), resume=a.resume)
    if a.json:
        print(to_json(final))
    else:
        for r in final["evaluation"]:
            print(f"SNR {r['snr_db']:>4g} dB: reward {r['reward']:+.3f} (fixed mapping 0), "
                  f"PSNR {r['psnr_db']:.2f} dB ({r['psnr_gain_db']:+.3f} dB)")
        print(f"policy: {final['policy']}")
    return 0
