"""Command-line plumbing shared by the trainers (`testbed train akb|scheduler`): numeric options
taken from a config dataclass's defaults, and the config built back from the parsed arguments
with the command line that started the run (recorded in checkpoints and model cards)."""
from __future__ import annotations

import argparse
import sys


def add_number_options(p: argparse.ArgumentParser, defaults, ints: tuple[str, ...], floats: tuple[str, ...]) -> None:
    for names, tp in ((ints, int), (floats, float)):
        for name in names:
            p.add_argument("--" + name.replace("_", "-"), type=tp, default=getattr(defaults, name))


def config_from_args(cls, a: argparse.Namespace, what: str):
    """``cls`` filled from ``a``; ``command`` = the ``testbed train WHAT ...`` line without --resume."""
    fields = {k: getattr(a, k) for k in cls.__dataclass_fields__ if hasattr(a, k)}
    argv = sys.argv[1:]
    tail = argv[2:] if argv[:2] == ["train", what] else argv
    fields["command"] = " ".join(["testbed", "train", what] + [x for x in tail if x != "--resume"])
    return cls(**fields)
