"""What several command groups share: the AKB rate-allocation options, the checked types of the
number options several commands have, and stdout kept clean of GNU Radio's logging while a
flowgraph runs."""
from __future__ import annotations

import logging
import sys

from ..core.checks import CBR, SEED, THREADS, number

log = logging.getLogger("testbed")

# argparse types of the number options several commands share (NaN, infinities, out of range: exit 2)
CBR_TYPE = number(float, lo=CBR[0], hi=CBR[1], lo_open=True)
SEED_TYPE = number(int, lo=SEED[0], hi=SEED[1])
THREADS_TYPE = number(int, lo=THREADS[0], hi=THREADS[1])


class StdoutToStderr:
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


def add_mcs_arg(p) -> None:
    p.add_argument("--mcs", help="digital codec (jpeg2000-ldpc, jpeg-ldpc): qpsk-1/2, qpsk-3/4, 16qam-1/2, 16qam-3/4, "
                                 "64qam-2/3, 64qam-3/4, 64qam-5/6, or auto (the default: the fastest MCS whose "
                                 "block error rate at the SNR is below 10 %%)")


def add_allocation_arg(p) -> None:
    from ..akb.allocation import ALLOCATIONS

    p.add_argument("--allocation", choices=ALLOCATIONS, default="entropy",
                   help="AKB codec: rate map from the entropy model (adjusted by the channel-KB policy unless "
                        "--no-ckb), or 'measured': the transmitter decodes the image at every rate level and "
                        "minimises the measured distortion (replaces the policy; one decoder pass per level)")


def ckb(a) -> bool:
    """The channel-KB policy is on unless --no-ckb, or --allocation measured (which replaces it)."""
    if a.allocation == "measured" and not a.no_ckb:
        log.info("--allocation measured: the rate map is measured, the channel-KB policy is not used")
    return not a.no_ckb and a.allocation != "measured"


def add_gui_args(p) -> None:
    p.add_argument("--gui", action="store_true",
                   help="live view while it runs: spectrum, equalised payload, per-frame SNR, latest image "
                        "(needs a display, or QT_QPA_PLATFORM=offscreen)")
    p.add_argument("--gui-snapshot", metavar="PNG",
                   help="with --gui: save the window as it is at the end of the run")


def run_maybe_with_gui(a, title: str, work):
    """``work(view)`` with a live view (``--gui``: ``view`` is a LiveView, the run on a worker
    thread) or without one (``view`` None)."""
    if getattr(a, "gui_snapshot", None) and not a.gui:
        raise ValueError("--gui-snapshot needs --gui")
    if not getattr(a, "gui", False):
        return work(None)
    from ..link.gui import GuiUnavailable, LiveView

    try:
        view = LiveView(1e6, title=title, snapshot=a.gui_snapshot)
    except GuiUnavailable as e:
        raise ValueError(str(e)) from None
    return view.run(lambda: work(view))
