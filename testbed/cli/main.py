"""The ``testbed`` command line: the parser assembled from the command groups, and ``main``.

Each group is a module of this package with the parsers of its commands and their ``_cmd_*``
functions: ``doctor``, ``train``, ``export`` (``export``, ``export-akb``), ``ota`` (``ota``,
``replay``), ``radio`` (``radios``, ``link-check``, ``calibrate``, ``pluto-config``), ``kb``,
``evaluate`` (``eval``, ``bench``), ``link`` (``grc-path``, ``loopback``, ``demo``) and ``agent``
(``node``, ``controller``, ``intent``, ``status``, ``broker``).

Conventions: ``-v`` (INFO) / ``-vv`` (DEBUG) logging on stderr, progress bars on stderr,
results as files in a run folder and, with ``--json``, one JSON object on stdout.
Exit codes: 0 ok, 1 failed check, 2 bad input, 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from . import agent, doctor, evaluate, export, kb, link, ota, radio, train

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else (logging.INFO if verbosity == 1 else logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)
    logging.captureWarnings(True)


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
    # in the order `testbed --help` lists the commands
    doctor.add_parsers(sub, common)
    train.add_parsers(sub, common)
    export.add_export_parser(sub, common)
    ota.add_parsers(sub, common)
    radio.add_parsers(sub, common)
    kb.add_parsers(sub, common)
    export.add_export_akb_parser(sub, common)
    evaluate.add_parsers(sub, common)
    link.add_parsers(sub, common)
    agent.add_parsers(sub, common)
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
    except (ModelError, ModelCardError, ImageInputError, ValueError, OSError) as e:
        # ConfigError is a ValueError; OSError: a file or folder that cannot be read or written
        # (FileNotFoundError, a full disk), a broker that cannot be reached (ConnectionError), TimeoutError
        name = " ".join(str(x) for x in (a.command, getattr(a, "what", None)) if x)
        print(f"testbed {name}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
