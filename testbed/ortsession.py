"""onnxruntime session options: one place for how the testbed runs its graphs.

``spinning``: by default onnxruntime's intra-op threads busy-wait between operators, which is
the fastest for one graph on an otherwise idle machine. Inside a GNU Radio flowgraph the codec
shares the cores with the PHY's threads, and a spinning pool takes their time: spinning off,
together with single-threaded BLAS (:mod:`testbed.gr`), took the Kodak loopback from 17.6 s to
12.4-13.1 s (BENCHMARKS.md, "Throughput"). Flowgraph runners therefore open their codecs with
``spinning=False``.
"""
from __future__ import annotations


def session_options(threads: int = 0, spinning: bool = True):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts
