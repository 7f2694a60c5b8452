"""Crash-safe result files.

* :class:`CsvLog` appends one complete row per call and flushes it to disk, so a killed run
  leaves every finished row behind (and at worst no partial row: rows are written with a single
  ``write`` of a full line, and a torn last line is dropped by :func:`read_csv_rows`).
* :func:`write_json_atomic` / :func:`write_bytes_atomic` write to a temporary file in the same
  folder and ``os.replace`` it, so readers see the old or the new file, never half of one.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import signal
import threading
from pathlib import Path
from typing import Any, Iterable, Sequence


@contextlib.contextmanager
def sigint_deferred():
    """Hold Ctrl-C (SIGINT) for the duration of the block and deliver it, to whatever handler
    was installed before, when the block ends. Outside the main thread (where signals are not
    delivered to Python code) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hits: list = []
    prev = signal.signal(signal.SIGINT, lambda signum, frame: hits.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, prev)
        if hits:
            if callable(prev):
                prev(signal.SIGINT, hits[0])
            elif prev == signal.SIG_DFL:
                raise KeyboardInterrupt


def default_run_dir(prefix: str) -> Path:
    """``runs/<prefix>-<YYYYmmdd-HHMMSS>``: the default run folder of every command."""
    import datetime as dt

    return Path("runs") / f"{prefix}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


class RunDirError(ValueError):
    """The run folder holds an earlier run's files (and ``--force`` was not given), or cannot be
    created (an unwritable place, a path through a regular file)."""


class OutputError(OSError):
    """A result file could not be written (no permission, disk full, ...); the message names it.
    An OSError with the original ``errno``: the command line reports it with exit code 2."""

    def __str__(self) -> str:
        return str(self.strerror)


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def prepare_run_dir(out: str | Path | None, prefix: str, force: bool = False) -> Path:
    """Create and return the folder a run writes its results to, never losing an earlier run.

    Without ``out``: a new ``runs/<prefix>-<time>`` folder (``-2``, ``-3``, ... when runs start
    in the same second). With ``out``: the folder must be new or empty unless ``force``, in which
    case files of the same names are overwritten.
    """
    if not out:
        base = default_run_dir(prefix)
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
            for i in range(1, 10_000):
                p = base if i == 1 else base.with_name(f"{base.name}-{i}")
                try:
                    p.mkdir()
                    return p
                except FileExistsError:
                    continue
        except OSError as e:
            raise RunDirError(f"{base.parent}: cannot create a run folder there ({_reason(e)}); "
                              "give one with --out") from None
        raise RunDirError(f"{base}: could not create a new run folder")
    p = Path(out)
    try:
        if p.exists() and not p.is_dir():
            raise RunDirError(f"--out {p}: exists and is not a folder")
        if not force and p.is_dir() and any(p.iterdir()):
            raise RunDirError(f"--out {p}: already holds an earlier run's files; choose another folder "
                              "or pass --force to overwrite them")
        p.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):   # a regular file on the way
        raise RunDirError(f"--out {p}: a part of the path is a file, not a folder") from None
    except OSError as e:
        raise RunDirError(f"--out {p}: cannot write there ({_reason(e)})") from None
    return p


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``;
    on any failure (disk full, no permission, a path through a regular file) the temporary file
    is removed, ``path`` is left as it was, and :class:`OutputError` names ``path``."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise OutputError(e.errno, f"{p}: cannot write ({_reason(e)})") from None
        raise


def _json_default(o: Any):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _clean(o: Any) -> Any:
    """Replace NaN/inf (not valid JSON) with None, recursively."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def to_json(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(_clean(obj), indent=indent, default=_json_default)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_bytes_atomic(path, (to_json(obj) + "\n").encode())


class CsvLog:
    """Append-only CSV with a fixed header; each row is flushed and fsync'ed."""

    def __init__(self, path: str | Path, fields: Sequence[str], resume: bool = False):
        self.path = Path(path)
        self.fields = list(fields)
        self._known = frozenset(self.fields)
        try:
            self._open(resume)
        except OSError as e:
            raise OutputError(e.errno, f"{self.path}: cannot write ({_reason(e)})") from None

    def _open(self, resume: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists and resume:
            with open(self.path, newline="") as f:
                header = next(csv.reader(f), [])
            if header != self.fields:
                raise ValueError(
                    f"{self.path}: existing header {header} does not match expected {self.fields}"
                )
            _truncate_torn_tail(self.path)
            self._f = open(self.path, "a", newline="")
        else:
            self._f = open(self.path, "w", newline="")
            self._write_line(self.fields)

    def _write_line(self, values: Iterable[Any]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        self._write(buf.getvalue())

    def _write(self, text: str) -> None:
        """One write, flushed and fsync'ed; a failure (disk full) names the file."""
        try:
            self._f.write(text)
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as e:
            raise OutputError(e.errno, f"{self.path}: cannot write ({_reason(e)}); the rows before were kept") from None

    def append(self, row: dict[str, Any], keep: list | None = None) -> None:
        """One row; with ``keep``, the row is also added to that list, and Ctrl-C cannot fall
        between the two (it is held until both are done), so an interrupted run's summary, made
        from the list, counts exactly the rows in the file."""
        with sigint_deferred():
            self.append_many([row])
            if keep is not None:
                keep.append(row)

    def append_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Several rows with one flush and fsync (group commit); each row is still one full line."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        fields, known = self.fields, self._known
        for row in rows:
            if not known.issuperset(row):
                raise KeyError(f"{self.path}: unknown column(s) {sorted(set(row) - known)}")
            w.writerow([_fmt(row.get(k)) for k in fields])
        self._write(buf.getvalue())

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else ""
    return v


def _truncate_torn_tail(path: Path) -> None:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(cut)


def read_csv_rows(path: str | Path) -> list[dict[str, str]]:
    """Complete rows of a :class:`CsvLog` file (a torn last line is ignored)."""
    data = Path(path).read_text()
    if data and not data.endswith("\n"):
        data = data[: data.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(data)))


def cell(v, fmt: str) -> str:
    """A table cell: ``v`` in ``fmt`` (e.g. ``"8.2f"``), or ``-`` at that width when missing."""
    return format(v, fmt) if v is not None else "-".rjust(int(fmt.split(".")[0]))
