"""Running a flowgraph so that Ctrl-C reaches the caller.

GNU Radio's ``top_block.run()`` / ``wait()`` catch KeyboardInterrupt themselves: they stop the
flowgraph and return normally, so the caller cannot tell an interrupted run from a finished one.
:class:`Running` starts the flowgraph and waits for its end in a helper thread; the caller's
thread polls :meth:`Running.finished` (and whatever it checks for Ctrl-C) and stays interruptible;
:meth:`Running.stop` stops it in any case.
"""
from __future__ import annotations

import threading


class Running:
    def __init__(self, tb):
        self.tb = tb
        self._done = threading.Event()
        tb.start()
        threading.Thread(target=self._wait, name="flowgraph-wait", daemon=True).start()

    def _wait(self) -> None:
        try:
            self.tb.wait()
        finally:
            self._done.set()

    def finished(self, timeout: float = 0.0) -> bool:
        """True once every block is done (the sources ended); waits up to ``timeout`` seconds."""
        return self._done.wait(timeout) if timeout > 0 else self._done.is_set()

    def stop(self) -> None:
        """Stop the flowgraph (if still running) and wait for its threads; safe to repeat."""
        self.tb.stop()
        self._done.wait()


def run(tb, check=None, poll_s: float = 0.1) -> None:
    """``tb.run()`` that lets KeyboardInterrupt (and whatever ``check()`` raises) through, after
    stopping the flowgraph."""
    r = Running(tb)
    try:
        while not r.finished(poll_s):
            if check is not None:
                check()
    finally:
        r.stop()
