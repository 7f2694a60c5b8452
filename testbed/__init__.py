"""Hardware-in-the-loop SDR testbed for agentic semantic communications."""
import os as _os

# numpy's OpenBLAS starts one busy-waiting worker per core. The testbed's numpy work is small
# matrices inside GNU Radio blocks that already run one thread each, where those workers only
# take time from the flowgraph (measured: BENCHMARKS.md, "Throughput"). Must be set before numpy
# is first imported; a value the user set is kept.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
