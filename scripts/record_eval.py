#!/usr/bin/env python3
"""Record finished ``testbed eval`` runs in their codecs' cards (a built-in digital codec: in
``testbed/data/digital_eval.json``), as ``--record-in-card`` would have at the end of the run.

    .venv/bin/python scripts/record_eval.py RUN_DIR... [--dataset kodak] [--command TEXT] [--force]

The card's entry names ``--command`` (default: "testbed eval ... (recorded from RUN_DIR)"); the
run's model sha256 must be the codec's.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--dataset", default="kodak")
    p.add_argument("--command", help="the command that made the runs (recorded with each)")
    p.add_argument("--force", action="store_true", help="replace an entry with more images or SNRs")
    a = p.parse_args(argv)
    from testbed.cli.evaluate import record_in_card

    for run in a.runs:
        try:
            summary = json.loads((run / "summary.json").read_text())
        except (OSError, ValueError) as e:
            print(f"{run}: no readable summary.json ({e})", file=sys.stderr)
            return 2
        if summary.get("interrupted"):
            print(f"{run}: an interrupted run; not recorded", file=sys.stderr)
            return 2
        command = a.command or f"testbed eval --model {summary['model']} ... (recorded from {run})"
        record_in_card(summary["model"], a.dataset, summary, command, force=a.force)
        print(f"{run}: recorded for {summary['model']} (CBR {summary['cbr']}, MCS {summary.get('mcs')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
