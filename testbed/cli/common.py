"""What several command groups share: the AKB rate-allocation options and stdout kept clean of
GNU Radio's logging while a flowgraph runs."""
from __future__ import annotations

import logging
import sys

log = logging.getLogger("testbed")


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
