"""GNU Radio blocks of the testbed: thin adapters around :mod:`testbed.phy` and the ONNX codec.

Importing this package imports GNU Radio (Debian's, seen through the venv's system site
packages). One block per module; ``ofdm_tx`` / ``ofdm_rx`` are the PHY hierarchical blocks and
never know what is on the other side of their sample ports (radio, recording, or
``loopback_channel``).
"""
