"""onnxruntime session options: one place for how the testbed runs its graphs.

``spinning``: by default onnxruntime's intra-op threads busy-wait between operators, which is
the fastest for one graph on an otherwise idle machine. Inside a GNU Radio flowgraph the codec
shares the cores with the PHY's threads, and a spinning pool takes their time: spinning off,
together with single-threaded BLAS (:mod:`testbed.gr`), took the Kodak loopback from 17.6 s to
12.4-13.1 s (BENCHMARKS.md, "Throughput"). Flowgraph runners therefore open their codecs with
``spinning=False``.

``threads``: 0 is onnxruntime's default (one intra-op thread per core) for a standalone session,
and **one** thread for a flowgraph's (``spinning=False``). There the blocks already run in
parallel, and a second pool thread per graph only adds hand-overs: on 2 cores the Kodak loopback
took a median 6.6 s with one thread against 8.7 s with the default (5 alternating runs each,
same PSNR; BENCHMARKS.md, "Throughput"). A number given is used as it is.
"""
from __future__ import annotations


def session_options(threads: int = 0, spinning: bool = True):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if not threads and not spinning:
        threads = 1
    if threads:
        opts.intra_op_num_threads = int(threads)
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def sha256_file(path, also=None) -> str:
    """The file's sha256 (hex); ``also``: another hashlib object fed the same bytes."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            if also is not None:
                also.update(chunk)
    return h.hexdigest()


def open_graphs(model_dir, card, threads: int = 0, verify: bool = True, spinning: bool = True) -> dict:
    """Role -> onnxruntime session for every graph a model card names (``card.graphs_by_role()``):
    each graph must exist and, with ``verify``, match its sha256 in the card, and the card's
    top-level ``sha256`` (the model's identity, recorded in every run's results) must be the
    sha256 over the bytes of its kind's graphs (``card.GRAPH_ROLES``, in that order), as the
    exporters compute it. Failures raise :class:`testbed.core.codecs.ModelError` naming the file."""
    import hashlib
    from pathlib import Path

    import onnxruntime as ort

    from .card import CARD_NAME
    from .codecs import ModelError

    d = Path(model_dir)
    opts = session_options(threads, spinning)
    graphs = card.graphs_by_role()
    identity = list(getattr(card, "GRAPH_ROLES", ()))
    order = [r for r in identity if r in graphs] + [r for r in graphs if r not in identity]
    model_hash = hashlib.sha256()
    sessions = {}
    for role in order:
        g = graphs[role]
        p = d / g["file"]
        if not p.is_file():
            raise ModelError(f"{p}: {role} graph missing (named in {d / CARD_NAME})")
        if verify:
            digest = sha256_file(p, also=model_hash if role in identity else None)
            if digest != g["sha256"]:
                raise ModelError(f"{p}: sha256 {digest[:16]}... does not match the model card "
                                 f"({g['sha256'][:16]}...); the graph and card are mismatched")
        try:
            sessions[role] = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelError(f"{p}: cannot load ONNX graph ({e})") from None
    if verify and identity and model_hash.hexdigest() != card.sha256:
        raise ModelError(f"{d / CARD_NAME}: key 'sha256' {str(card.sha256)[:16]}... is not the model's identity "
                         f"{model_hash.hexdigest()[:16]}... (sha256 over {', '.join(identity)}); the card was "
                         f"edited or belongs to other graphs")
    return {r: sessions[r] for r in graphs}
