"""Tests of the C++ PHY module (gr-testbedphy)."""
import pickle
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_flowgraphs(script: str, tmp_dir: Path, timeout: float = 600) -> dict:
    """Run ``tests/cpp/SCRIPT OUT.pkl`` in a process of its own (in-process flowgraphs keep
    shared-memory segments until the process ends) and return what it pickled."""
    from testbed.gr import cpp_blocks

    assert cpp_blocks.module() is not None, f"gr-testbedphy not installed: {cpp_blocks.unavailable_reason()}"
    out = tmp_dir / "runs.pkl"
    p = subprocess.run([sys.executable, str(HERE / script), str(out)], capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, p.stderr[-3000:]
    with open(out, "rb") as f:
        return pickle.load(f)
