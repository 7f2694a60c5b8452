"""SigMF recordings of received IQ (the ``sigmf`` package), written so that a killed run leaves a
valid recording: the ``.sigmf-meta`` is written (atomically) when the recording opens and again
when it closes, and the ``.sigmf-data`` file is appended sample by sample.

The run's settings (model, CBR, OFDM config, radio config, gains, images) are stored in the
global object under ``testbed:settings``; per-image boundaries as annotations when known.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from .checks import read_input
from .runlog import write_bytes_atomic

DATATYPE = "cf32_le"
EXTENSION = {"name": "testbed", "version": "1.0.0", "optional": True}


class RecordingError(ValueError):
    pass


def base_path(path: str | Path) -> Path:
    """``x``, ``x.sigmf-meta`` or ``x.sigmf-data`` -> ``x``."""
    p = Path(path)
    if p.name.endswith((".sigmf-meta", ".sigmf-data")):
        p = p.with_name(p.name.rsplit(".", 1)[0])
    return p


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class SigmfRecorder:
    def __init__(self, path: str | Path, sample_rate: float, frequency: float, settings: dict,
                 description: str = "testbed received IQ", overwrite: bool = False):
        """An existing recording at ``path`` is an error unless ``overwrite``."""
        from sigmf import SigMFFile

        self.base = base_path(path)
        self.base.parent.mkdir(parents=True, exist_ok=True)
        self.data_path = self.base.with_name(self.base.name + ".sigmf-data")
        self.meta_path = self.base.with_name(self.base.name + ".sigmf-meta")
        if not overwrite:
            for p in (self.data_path, self.meta_path):
                if p.exists():
                    raise RecordingError(f"{p}: a recording already exists; not overwritten")
        self.data_path.write_bytes(b"")
        self.samples = 0
        self.annotations: list[tuple[int, int, dict]] = []
        self._meta = SigMFFile(
            global_info={"core:datatype": DATATYPE, "core:sample_rate": float(sample_rate),
                         "core:description": description, "core:recorder": "testbed",
                         "core:extensions": [EXTENSION], "testbed:settings": settings},
            skip_checksum=True)
        self._meta.add_capture(0, metadata={"core:frequency": float(frequency), "core:datetime": _now()})
        self._f = open(self.data_path, "ab")
        self._write_meta()

    def _write_meta(self) -> None:
        from sigmf import SigMFFile

        m = SigMFFile(global_info=dict(self._meta.get_global_info()), skip_checksum=True)
        for c in self._meta.get_captures():
            m.add_capture(c["core:sample_start"], metadata={k: v for k, v in c.items() if k != "core:sample_start"})
        for start, length, md in self.annotations:
            m.add_annotation(start, length, metadata=md)
        m.set_global_field("testbed:samples", int(self.samples))
        write_bytes_atomic(self.meta_path, m.dumps(pretty=True).encode())

    def write(self, samples: np.ndarray) -> None:
        a = np.ascontiguousarray(samples, dtype=np.complex64)
        self._f.write(a.tobytes())
        self.samples += a.size

    def annotate(self, start: int, length: int, **metadata) -> None:
        self.annotations.append((int(start), max(1, int(length)), metadata))

    def set_setting(self, key: str, value) -> None:
        s = dict(self._meta.get_global_field("testbed:settings") or {})
        s[key] = value
        self._meta.set_global_field("testbed:settings", s)

    def close(self) -> None:
        """Close the data file and (re)write the metadata; safe to call more than once."""
        if self._f is not None:
            self._f.close()
            self._f = None
        self._write_meta()


class Recording:
    """A SigMF recording opened for reading (cf32_le only, as written here or by GNU Radio).
    Every problem is a :class:`RecordingError` naming the file and key."""

    def __init__(self, path: str | Path):
        base = base_path(path)
        self.meta_path = base.with_name(base.name + ".sigmf-meta")
        self.data_path = base.with_name(base.name + ".sigmf-data")
        raw = read_input(self.meta_path, "SigMF metadata file", RecordingError)
        try:
            meta = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise RecordingError(f"{self.meta_path}: not a text file (SigMF metadata is UTF-8 JSON)") from None
        except (json.JSONDecodeError, RecursionError) as e:
            raise RecordingError(f"{self.meta_path}: not valid JSON ({e})") from None
        g = meta.get("global") if isinstance(meta, dict) else None
        if not isinstance(g, dict):
            raise RecordingError(f"{self.meta_path}: no 'global' object (not SigMF metadata)")
        if g.get("core:datatype") != DATATYPE:
            raise RecordingError(f"{self.meta_path}: core:datatype {_show(g.get('core:datatype'))}; "
                                 f"only {DATATYPE} is supported")
        if "core:sample_rate" not in g:
            raise RecordingError(f"{self.meta_path}: core:sample_rate missing")
        self.sample_rate = _number(self.meta_path, "global.core:sample_rate", g["core:sample_rate"], positive=True)
        if not self.data_path.exists():
            raise RecordingError(f"{self.data_path}: recording data missing")
        if not self.data_path.is_file():
            raise RecordingError(f"{self.data_path}: not a regular file (the recording's samples)")
        size = self.data_path.stat().st_size
        if size % 8:
            raise RecordingError(f"{self.data_path}: {size} bytes is not a whole number of cf32 samples")
        self.captures = meta.get("captures", [])
        self.annotations = meta.get("annotations", [])
        for key, v in (("captures", self.captures), ("annotations", self.annotations)):
            if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
                raise RecordingError(f"{self.meta_path}: {key} must be a list of objects, got {_show(v)}")
        self.global_info = g
        self.samples = size // 8
        self.settings = g.get("testbed:settings", {}) or {}
        if not isinstance(self.settings, dict):
            raise RecordingError(f"{self.meta_path}: global.testbed:settings must be an object, got {_show(self.settings)}")
        self.frequency = (_number(self.meta_path, "captures[0].core:frequency",
                                  self.captures[0].get("core:frequency", 0.0)) if self.captures else 0.0)

    def read(self, start: int = 0, count: int | None = None) -> np.ndarray:
        n = self.samples - start if count is None else count
        return np.fromfile(self.data_path, dtype=np.complex64, count=n, offset=8 * start)

    def replay_settings(self) -> dict:
        """``testbed:settings`` as ``testbed replay`` needs them (written by ``testbed ota``):
        ``model``, ``model_sha256`` and ``model_name`` strings, ``ofdm`` an object, ``images`` a
        list of objects with ``image_id`` (an integer), ``file``, ``path`` and ``sha256`` (strings)
        and optional numbers ``frames``, ``cbr``, ``tx_snr_db``. Names the file and key of a problem."""
        st, where = self.settings, self.meta_path
        for key in ("model", "model_sha256", "ofdm", "images"):
            if key not in st:
                raise RecordingError(f"{where}: testbed:settings.{key} missing (not recorded by testbed ota?)")
        for key in ("model", "model_sha256", "model_name"):
            if key in st and not isinstance(st[key], str):
                raise RecordingError(f"{where}: testbed:settings.{key} must be a string, got {_show(st[key])}")
        for key in ("ofdm", "radio"):
            if key in st and not isinstance(st[key], dict):
                raise RecordingError(f"{where}: testbed:settings.{key} must be an object, got {_show(st[key])}")
        if st.get("cbr") is not None:
            _number(where, "testbed:settings.cbr", st["cbr"])
        if not isinstance(st["images"], list):
            raise RecordingError(f"{where}: testbed:settings.images must be a list, got {_show(st['images'])}")
        for i, im in enumerate(st["images"]):
            key = f"testbed:settings.images[{i}]"
            if not isinstance(im, dict):
                raise RecordingError(f"{where}: {key} must be an object, got {_show(im)}")
            if not (isinstance(im.get("image_id"), int) and not isinstance(im.get("image_id"), bool)
                    and im["image_id"] >= 0):
                raise RecordingError(f"{where}: {key}.image_id must be an integer >= 0, got {_show(im.get('image_id'))}")
            for k in ("file", "path", "sha256"):
                if not isinstance(im.get(k), str):
                    raise RecordingError(f"{where}: {key}.{k} must be a string, got {_show(im.get(k))}")
            for k in ("frames", "cbr", "tx_snr_db"):
                if im.get(k) is not None:
                    _number(where, f"{key}.{k}", im[k])
        return st


def _show(v, limit: int = 60) -> str:
    from .checks import show

    return show(v, limit)


def _number(where, key: str, v, positive: bool = False) -> float:
    """``v`` as a finite float (``positive``: > 0), else RecordingError naming the file and key."""
    import math

    ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    try:
        ok = ok and math.isfinite(v) and (v > 0 or not positive)
    except OverflowError:
        ok = False
    if not ok:
        raise RecordingError(f"{where}: {key} must be a {'positive ' if positive else ''}finite number, got {_show(v)}")
    return float(v)
