"""``testbed ota`` and ``testbed replay``: runs over a radio, loopback or SigMF front-end."""
from __future__ import annotations

from ..core.checks import SNR_DB, number
from .common import CBR_TYPE, StdoutToStderr, add_allocation_arg, add_gui_args, add_mcs_arg, ckb, run_maybe_with_gui

TX_GAIN_DB = 200.0    # |--tx-gain-db| at most this; each front-end then checks its own range


def add_parsers(sub, common) -> None:
    ot = sub.add_parser("ota", parents=[common], help="over-the-air run (radio, loopback or SigMF front-end)")
    ot.add_argument("--config", required=True, help="firmware_configs/<radio>.yaml (pluto, usrp, loopback, sigmf)")
    ot.add_argument("--images", required=True, help="folder of images")
    ot.add_argument("--model", help="model folder or shipped name (default: jscc-v1)")
    ot.add_argument("--cbr", type=CBR_TYPE, help="CBR (fixed-rate: the model's highest; AKB: 0.0625)")
    ot.add_argument("--tx-gain-db", help="comma-separated TX gains to sweep (Pluto: -attenuation; loopback: "
                                         "added to the channel SNR); default: the config's. Negative values: "
                                         "--tx-gain-db=-30,-20,-10")
    ot.add_argument("--record", action="store_true", help="save the received IQ as SigMF in the run folder")
    ot.add_argument("--snr-hint-db", type=number(float, lo=SNR_DB[0], hi=SNR_DB[1]), default=10.0,
                    help="SNR the encoder assumes until the receiver's first estimate (default %(default)s)")
    ot.add_argument("--no-ckb", action="store_true", help="AKB codec: no channel-KB policy")
    ot.add_argument("--no-skb", action="store_true", help="AKB codec: no source KB")
    add_allocation_arg(ot)
    add_mcs_arg(ot)
    ot.add_argument("--out", help="run folder (default: runs/ota-<time>)")
    ot.add_argument("--force", action="store_true", help="overwrite the files of an earlier run in --out")
    add_gui_args(ot)
    ot.set_defaults(func=_cmd_ota)

    rp = sub.add_parser("replay", parents=[common], help="re-run the receiver on a SigMF recording of `testbed ota`")
    rp.add_argument("recording", help="REC.sigmf-meta")
    rp.add_argument("--images", help="folder with the reference images (default: the paths recorded)")
    rp.add_argument("--out", help="run folder (default: runs/replay-<time>)")
    rp.add_argument("--force", action="store_true", help="overwrite the files of an earlier run in --out")
    rp.set_defaults(func=_cmd_replay)


def _cmd_ota(a) -> int:
    from ..experiments.evaluate import parse_snrs
    from ..experiments.ota import OtaOptions, format_table, run_ota
    from ..core.runlog import to_json

    gains = parse_snrs(a.tx_gain_db, "--tx-gain-db", lo=-TX_GAIN_DB, hi=TX_GAIN_DB) if a.tx_gain_db is not None else None
    opts = OtaOptions(config=a.config, images=a.images, model=a.model, cbr=a.cbr, tx_gains_db=gains,
                      record=a.record, out=a.out, force=a.force, snr_hint_db=a.snr_hint_db, ckb=ckb(a), skb=not a.no_skb,
                      allocation=a.allocation, mcs=a.mcs)
    with StdoutToStderr():
        summary = run_maybe_with_gui(a, "testbed ota", lambda view: run_ota(opts, view=view))
    print(to_json(summary) if a.json else format_table(summary))
    return 0


def _cmd_replay(a) -> int:
    from ..experiments.ota import format_table, run_replay
    from ..core.sigmf_io import RecordingError
    from ..core.runlog import to_json

    try:
        with StdoutToStderr():
            summary = run_replay(a.recording, a.out, a.images, force=a.force)
    except RecordingError as e:
        raise ValueError(str(e)) from None
    print(to_json(summary) if a.json else format_table(summary))
    return 0
