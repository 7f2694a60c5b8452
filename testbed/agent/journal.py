"""Append-only line files that survive a kill: the node's outbox and the controller's decision log.

Lines are written whole, flushed and fsync'ed. A torn last line (a kill mid-write) is skipped
when the file is read and cut off before it is appended to, so the next line never gets glued to
the fragment (and lost with it).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..core.runlog import _truncate_torn_tail


def read_lines(path: Path) -> list[str]:
    """The complete, non-empty lines of ``path`` (none if it does not exist)."""
    if not path.exists():
        return []
    data = path.read_text()
    lines = data.split("\n")
    if not data.endswith("\n"):     # torn tail
        lines = lines[:-1]
    return [x for x in lines if x]


def open_append(path: Path):
    """``path`` opened for appending, a torn last line cut off first."""
    if path.exists():
        _truncate_torn_tail(path)
    return open(path, "a")


def append_lines(f, lines: Iterable[str]) -> None:
    """Append whole lines with one write, one flush and one fsync."""
    f.write("".join(line + "\n" for line in lines))
    f.flush()
    os.fsync(f.fileno())


def fsync_dir(folder: Path) -> None:
    """Make renames in ``folder`` durable (where the platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
