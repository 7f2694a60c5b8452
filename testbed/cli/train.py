"""``testbed train codec | akb | scheduler``."""
from __future__ import annotations


def add_parsers(sub, common) -> None:
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
