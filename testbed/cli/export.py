"""``testbed export`` (codec v1) and ``testbed export-akb``: a checkpoint to ONNX graphs and a
model card. The card's ``training`` section is built by the exporters (``training_record`` of
:mod:`testbed.codec.export` and :mod:`testbed.akb.export`)."""
from __future__ import annotations


def add_export_parser(sub, common) -> None:
    e = sub.add_parser("export", parents=[common], help="export a codec checkpoint to ONNX with a model card")
    e.add_argument("checkpoint", help="checkpoint.pt from `testbed train codec`")
    e.add_argument("--out", required=True, help="model folder to write (e.g. models/jscc-v1)")
    e.add_argument("--name", help="model name (default: folder name)")
    e.add_argument("--operating-points", help="symbols per 16x16 block, e.g. 16,48 (default: from training)")
    e.add_argument("--training-command", help="training command to record in the model card")
    e.add_argument("--description")
    e.set_defaults(func=_cmd_export)


def add_export_akb_parser(sub, common) -> None:
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


def _load_checkpoint(path: str):
    """The checkpoint at ``path``; a file torch cannot read is a ValueError naming it."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise ValueError(f"{path}: a folder, not a training checkpoint") from None
    except Exception as e:
        raise ValueError(f"{path}: not a training checkpoint ({type(e).__name__}: {e})") from None


def _cmd_export(a) -> int:
    from pathlib import Path

    from ..codec.export import check_against_torch, export, training_record
    from ..codec.checkpoint import load_model

    ck = _load_checkpoint(a.checkpoint)
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
                raise ValueError(f"--operating-points: {v[:40]!r} is not an integer (symbols per location)") from None
            if not 1 <= ops[-1] <= model.cfg.max_symbols:
                raise ValueError(f"--operating-points: {v[:40]} is outside 1..{model.cfg.max_symbols} "
                                 f"(the checkpoint's symbols per location)")
        if len(set(ops)) != len(ops):
            raise ValueError(f"--operating-points: {a.operating_points[:60]!r} names a value more than once")
    else:
        ops = tc.get("operating_points", [model.cfg.max_symbols])
    training = training_record(a.checkpoint, ck, command=a.training_command)
    card = export(model, a.out, name=a.name or Path(a.out).name, operating_points=ops, training=training,
                  description=a.description or "")
    err = check_against_torch(model, a.out)
    print(f"exported {card.name} to {a.out}: sha256 {card.sha256[:16]}..., "
          f"CBR {', '.join(f'{c:.4f}' for c in card.cbrs())}; onnxruntime vs PyTorch: "
          f"symbols max |err| {err['symbols_max_abs_err']:.2e}, image max |err| {err['image_max_abs_err']}")
    return 0


def _cmd_export_akb(a) -> int:
    from pathlib import Path

    from ..akb.export import attach_policy, check_against_torch, export_akb, scheduler_record, training_record
    from ..akb.train import load_akb
    from ..core.runlog import to_json

    out = Path(a.out)
    scheduler = scheduler_record(a.scheduler_run) if a.scheduler_run else None
    if a.attach:
        if not a.policy:
            raise ValueError("--attach needs --policy")
        card = attach_policy(out, a.policy, scheduler)
        print(to_json({"model_dir": str(out), "sha256": card.sha256}) if a.json
              else f"attached {a.policy} to {out} (model sha256 {card.sha256[:16]} unchanged)")
        return 0
    if not a.checkpoint:
        raise ValueError("export-akb: give a checkpoint (or --attach)")
    ck = _load_checkpoint(a.checkpoint)
    if not isinstance(ck, dict) or "akb_config" not in ck:
        hint = " (a codec checkpoint: use `testbed export`)" if isinstance(ck, dict) and "codec_config" in ck else ""
        raise ValueError(f"{a.checkpoint}: not an AKB checkpoint of `testbed train akb`{hint}")
    model, emb, kb = load_akb(a.checkpoint)
    training = training_record(a.checkpoint, ck, scheduler)
    card = export_akb(model, emb, kb, out, name=a.name or out.name, training=training,
                      policy_file=a.policy, description=a.description)
    check = check_against_torch(model, emb, kb, out)
    res = {"model_dir": str(out), "sha256": card.sha256, "parameters": card.parameters, "onnx_vs_torch": check}
    print(to_json(res) if a.json else f"exported {card.name} to {out} (sha256 {card.sha256[:16]}), "
          f"ONNX vs PyTorch: {check}")
    return 0
