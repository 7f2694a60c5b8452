"""Source knowledge base: embeddings, a vector KB shared by TX and RX, nearest-neighbour retrieval.

The transmitter embeds the image with an :class:`EmbeddingProvider`, finds the nearest KB entry
(``argmin_c ||r - c||^2``, paper section IV-B) and conditions encoder and decoder on that entry;
only the entry's index (``ratemap.KB_INDEX_BITS`` bits) goes into the frame header. A KB carries
a sha256 over its provider name and vectors; the receiver checks that it holds the same KB.

The default provider, :class:`ImageEmbedder`, is a network trained here: codec v1's encoder
trunk applied to a 128x128 thumbnail, global-average pooled and projected on its principal
components. It is shipped as ``embedder.onnx`` beside the AKB codec. The paper's cross-modal
provider (caption by an LVM, then the CLIP text encoder) lives in :mod:`testbed.akb.source_kb.clip_provider`
behind the same interface.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ...core.runlog import write_bytes_atomic

THUMB = 128  # the default embedder looks at a THUMB x THUMB thumbnail


class KbError(ValueError):
    pass


class EmbeddingProvider(Protocol):
    name: str
    dim: int

    def embed(self, image: np.ndarray) -> np.ndarray:
        """[H, W, 3] uint8 RGB -> float32 [dim]."""


class OnnxEmbedderProvider:
    """The shipped ``embedder.onnx`` run with onnxruntime (the default provider)."""

    def __init__(self, path: str | Path, name: str = "image-embedder"):
        import onnxruntime as ort

        from ...core.ortsession import session_options

        # a small graph run once per image, often inside a flowgraph: no spinning pool
        opts = session_options(spinning=False)
        self.path = Path(path)
        if not self.path.exists():
            raise KbError(f"{self.path}: embedder graph missing")
        self.sess = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self.dim = int(self.sess.get_outputs()[0].shape[-1])
        self.name = name

    def embed(self, image: np.ndarray) -> np.ndarray:
        return self.sess.run(None, {"image": np.ascontiguousarray(image)[None]})[0][0].astype(np.float32)


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 50) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; returns the centroids [k, D]."""
    n = x.shape[0]
    if n < k:
        raise KbError(f"k-means: {n} vectors cannot make {k} KB entries")
    cent = [x[rng.integers(n)]]
    d2 = ((x - cent[0]) ** 2).sum(1)
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1.0 / n)
        cent.append(x[rng.choice(n, p=p)])
        d2 = np.minimum(d2, ((x - cent[-1]) ** 2).sum(1))
    c = np.stack(cent)
    for _ in range(iters):
        assign = ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1)
        new = np.stack([x[assign == j].mean(0) if np.any(assign == j) else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return c.astype(np.float32)


@dataclass
class KnowledgeBase:
    vectors: np.ndarray          # [K, D] float32
    provider: str
    meta: dict
    proj_mean: np.ndarray | None = None    # [E]: provider embeddings of another size are projected:
    proj_matrix: np.ndarray | None = None  # [E, D]   (e - mean) @ matrix (PCA fitted at build time)

    @property
    def sha256(self) -> str:
        h = hashlib.sha256(self.provider.encode())
        h.update(np.ascontiguousarray(self.vectors, dtype=np.float32).tobytes())
        if self.proj_matrix is not None:
            h.update(np.ascontiguousarray(self.proj_mean, dtype=np.float32).tobytes())
            h.update(np.ascontiguousarray(self.proj_matrix, dtype=np.float32).tobytes())
        return h.hexdigest()

    def project(self, embedding: np.ndarray) -> np.ndarray:
        e = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if self.proj_matrix is None:
            return e
        if e.shape[0] != self.proj_matrix.shape[0]:
            raise KbError(f"embedding has {e.shape[0]} values, this KB's provider gives {self.proj_matrix.shape[0]}")
        return (e - self.proj_mean) @ self.proj_matrix

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def lookup(self, embedding: np.ndarray) -> tuple[int, np.ndarray]:
        """Nearest entry (L2) -> (index, vector)."""
        e = self.project(embedding)
        if e.shape[0] != self.vectors.shape[1]:
            raise KbError(f"embedding has {e.shape[0]} values, the KB holds {self.vectors.shape[1]}-d vectors")
        i = int(((self.vectors - e) ** 2).sum(1).argmin())
        return i, self.vectors[i]

    def vector(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise KbError(f"KB index {index} outside 0..{len(self) - 1} (KB {self.sha256[:12]})")
        return self.vectors[index]

    def save(self, path: str | Path) -> None:
        buf = io.BytesIO()
        extra = {}
        if self.proj_matrix is not None:
            extra = {"proj_mean": self.proj_mean.astype(np.float32), "proj_matrix": self.proj_matrix.astype(np.float32)}
        np.savez(buf, vectors=self.vectors.astype(np.float32),
                 meta=np.array(json.dumps({**self.meta, "provider": self.provider, "sha256": self.sha256})), **extra)
        write_bytes_atomic(Path(path), buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "KnowledgeBase":
        p = Path(path)
        try:
            with np.load(p, allow_pickle=False) as z:
                vectors = z["vectors"].astype(np.float32)
                meta = json.loads(str(z["meta"]))
                pm = z["proj_mean"].astype(np.float32) if "proj_mean" in z.files else None
                px = z["proj_matrix"].astype(np.float32) if "proj_matrix" in z.files else None
        except FileNotFoundError:
            raise KbError(f"{p}: no such KB file") from None
        except (OSError, ValueError, KeyError) as e:
            raise KbError(f"{p}: not a KB file ({e})") from None
        kb = cls(vectors, meta.pop("provider", "?"), meta, pm, px)
        stored = meta.pop("sha256", None)
        if stored is not None and stored != kb.sha256:
            raise KbError(f"{p}: sha256 {kb.sha256[:12]} does not match the recorded {stored[:12]} (file altered)")
        return kb


def check_same_kb(tx_sha: str, rx: KnowledgeBase) -> None:
    """Raise when the transmitter's KB (hash prefix from the header) is not the receiver's."""
    if not rx.sha256.startswith(tx_sha) and not tx_sha.startswith(rx.sha256[: len(tx_sha)]):
        raise KbError(f"source-KB mismatch: transmitter uses KB {tx_sha[:12]}, receiver holds {rx.sha256[:12]}")


def build_kb(provider: EmbeddingProvider, images: list[np.ndarray], entries: int, dim: int,
             rng: np.random.Generator, crops_per_image: int = 4, crop: int = 256, progress=None) -> KnowledgeBase:
    """Embed every image and ``crops_per_image`` random crops of it, then k-means -> ``entries`` vectors.

    When the provider's embeddings are not ``dim``-dimensional (e.g. CLIP text embeddings), a PCA
    projection to ``dim`` is fitted and stored in the KB."""
    if not images:
        raise KbError("no images to build a KB from")
    embs = []
    for img in images:
        views = [img]
        h, w = img.shape[:2]
        for _ in range(crops_per_image):
            c = min(crop, h, w)
            y, x = rng.integers(h - c + 1), rng.integers(w - c + 1)
            views.append(img[y:y + c, x:x + c])
        for v in views:
            embs.append(provider.embed(np.ascontiguousarray(v)))
        if progress is not None:
            progress(1)
    e = np.stack(embs).astype(np.float32)
    mean = matrix = None
    if e.shape[1] != dim:
        if e.shape[0] <= dim:
            raise KbError(f"{e.shape[0]} embeddings cannot fit a {dim}-d projection; use more images or crops")
        mean = e.mean(0)
        _, sv, vt = np.linalg.svd(e - mean, full_matrices=False)
        std = sv[:dim] / np.sqrt(max(1, e.shape[0] - 1))
        matrix = (vt[:dim].T / np.maximum(std, 1e-8)).astype(np.float32)
        e = (e - mean) @ matrix
    vec = kmeans(e, entries, rng)
    return KnowledgeBase(vec, provider.name, {"entries": entries, "images": len(images),
                                              "crops_per_image": crops_per_image}, mean, matrix)
