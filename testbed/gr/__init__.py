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


_quiet_gnuradio()
