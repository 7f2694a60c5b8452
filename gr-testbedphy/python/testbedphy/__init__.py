"""C++ blocks of the testbed's OFDM PHY (out-of-tree GNU Radio module ``testbedphy``).

The Python implementations in ``testbed.phy`` and ``testbed.gr`` are the reference; the
testbed's tests feed both the same samples and compare what they produce.
"""
from .testbedphy_python import *  # noqa: F401,F403
from .testbedphy_python import kernels  # noqa: F401
