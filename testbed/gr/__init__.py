"""GNU Radio blocks of the testbed: thin adapters around :mod:`testbed.phy` and the ONNX codec.

Importing this package imports GNU Radio (Debian's, seen through the venv's system site
packages). One block per module; ``ofdm_tx`` / ``ofdm_rx`` are the PHY hierarchical blocks and
never know what is on the other side of their sample ports (radio, recording, or
``loopback_channel``).
"""


def _quiet_gnuradio() -> None:
    """GNU Radio logs at info level to stdout by default (buffer sizes, demux chatter); keep
    warnings and errors only, unless TESTBED_GR_LOG=debug|info."""
    import os

    from gnuradio import gr

    level = os.environ.get("TESTBED_GR_LOG", "warn")
    gr.logging().set_default_level(getattr(gr.log_levels, level, gr.log_levels.warn))


def _single_threaded_blas() -> None:
    """numpy's OpenBLAS keeps one busy-waiting worker per core. The blocks' numpy work is small
    matrices inside GNU Radio threads that already run in parallel, where those workers only take
    CPU from the flowgraph: the Kodak loopback took 14.5-15.8 s with them and 8.8-10.0 s without
    (BENCHMARKS.md, "Throughput"). Limited at run time (threadpoolctl), so it holds whatever
    imported numpy first; it applies to the whole process that uses the GNU Radio blocks."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


_quiet_gnuradio()
_single_threaded_blas()
