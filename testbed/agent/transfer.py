"""Model dissemination: a model folder (ONNX graphs, KB, card) as a deterministic tar, sent in
base64 chunks with the archive's sha256; the receiver verifies, unpacks safely and checks the
card's graph hashes by opening the model before it is used.
"""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import shutil
import tarfile
from pathlib import Path

from .messages import ModelAnnounce, ModelChunk

log = logging.getLogger(__name__)
CHUNK_SIZE = 128 * 1024       # bytes of archive per message (mosquitto's default limit is far higher)


class TransferError(ValueError):
    pass


def held_models(folders: dict[str, Path], who: str) -> dict[str, tuple[str, Path]]:
    """Name -> (card sha256, folder) of the model folders whose card loads; the others are logged
    (naming ``who``) and skipped."""
    from ..zoo import CARD_NAME, load_card

    held = {}
    for name, d in folders.items():
        try:
            held[name] = (load_card(d / CARD_NAME).sha256, d)
        except Exception as e:
            log.warning("%s: model %s ignored: %s", who, d, e)
    return held


def pack(model_dir: str | Path) -> bytes:
    """A tar of the folder's regular files, byte-identical for identical contents."""
    d = Path(model_dir)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for p in sorted(x for x in d.iterdir() if x.is_file() and not x.name.startswith(".")):
            info = tarfile.TarInfo(p.name)
            info.size = p.stat().st_size
            info.mode = 0o644
            info.mtime = 0
            with open(p, "rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()


def announce(name: str, card, archive: bytes, chunk_size: int = CHUNK_SIZE) -> ModelAnnounce:
    cbrs = [round(float(c), 6) for c in card.cbrs()]
    return ModelAnnounce(name=name, sha256=card.sha256, archive_sha256=hashlib.sha256(archive).hexdigest(),
                         size=len(archive), chunk_size=chunk_size, chunks=max(1, -(-len(archive) // chunk_size)),
                         codec=card.codec, cbrs=cbrs, snr_range_db=[float(x) for x in card.snr_range_db])


def chunks(ann: ModelAnnounce, archive: bytes):
    for i in range(ann.chunks):
        part = archive[i * ann.chunk_size:(i + 1) * ann.chunk_size]
        yield ModelChunk(name=ann.name, sha256=ann.sha256, archive_sha256=ann.archive_sha256, index=i,
                         count=ann.chunks, data=base64.b64encode(part).decode())


class Assembler:
    """Collects the chunks of one transfer; :meth:`add` returns the archive once complete."""

    def __init__(self, name: str, archive_sha256: str, count: int):
        self.name, self.archive_sha256, self.count = name, archive_sha256, count
        self.parts: dict[int, bytes] = {}

    def add(self, c: ModelChunk) -> bytes | None:
        if c.archive_sha256 != self.archive_sha256 or c.count != self.count:
            raise TransferError(f"model {self.name}: chunk {c.index} belongs to another transfer")
        try:
            self.parts[c.index] = base64.b64decode(c.data, validate=True)
        except ValueError:
            raise TransferError(f"model {self.name}: chunk {c.index} is not valid base64") from None
        if len(self.parts) < self.count:
            return None
        archive = b"".join(self.parts[i] for i in range(self.count))
        digest = hashlib.sha256(archive).hexdigest()
        if digest != self.archive_sha256:
            raise TransferError(f"model {self.name}: archive sha256 {digest[:16]}... does not match the announced "
                                f"{self.archive_sha256[:16]}...; discarded")
        return archive


def unpack(archive: bytes, dest: str | Path) -> Path:
    """Unpack into ``dest`` (replaced atomically); only plain files at the top level are allowed."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
        for m in tar.getmembers():
            if not m.isfile() or "/" in m.name or m.name in ("", ".", ".."):
                shutil.rmtree(tmp, ignore_errors=True)
                raise TransferError(f"model archive: member {m.name!r} is not a plain top-level file; refused")
            with tar.extractfile(m) as src, open(tmp / m.name, "wb") as out:
                shutil.copyfileobj(src, out)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest
