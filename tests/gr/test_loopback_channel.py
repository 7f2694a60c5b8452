"""The loopback channel's light form (rotator + noise, built when there is no sample-clock offset
and no multipath) is the same channel as GNU Radio's channel_model (dynamic=True)."""
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from testbed.phy.config import OfdmConfig
from testbed.phy.impairments import noise_voltage

CFG = OfdmConfig()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("chan") / "runs.pkl"
    p = subprocess.run([sys.executable, str(Path(__file__).with_name("channel_run.py")), str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    with open(out, "rb") as f:
        return pickle.load(f)


def test_built_light_only_without_sco_and_multipath(runs):
    assert runs[("noise", False)][1] and not runs[("noise", True)][1]
    assert not runs["multipath_light"] and not runs["sco_light"]
    assert "dynamic=True" in runs["sco_change"]


def test_same_noise_power(runs):
    want = noise_voltage(CFG, 10.0)
    for dyn in (False, True):
        y = runs[("noise", dyn)][0]
        assert y.size > 190_000
        assert np.std(y) == pytest.approx(want, rel=0.02), dyn
        # complex Gaussian: both parts carry half the power, uncorrelated
        assert np.var(y.real) == pytest.approx(np.var(y.imag), rel=0.05)


def test_same_cfo(runs):
    want = 2 * np.pi * 1000.0 / CFG.samp_rate
    for dyn in (False, True):
        y = runs[("cfo", dyn)][0]
        step = np.angle(y[1001:15000] * np.conj(y[1000:14999]))
        assert abs(np.mean(step) - want) < 2e-7 and np.max(np.abs(step - want)) < 1e-5, dyn   # float32
        assert np.allclose(np.abs(y[1000:15000]), 1.0, atol=1e-3)


def test_delay_and_runtime_changes(runs):
    y = runs[("delay", False)][0]
    assert np.all(np.abs(y[:100]) < 1e-6) and np.allclose(np.abs(y[100:]), 1.0, atol=1e-3)
    for dyn in (False, True):
        y = runs[("changed", dyn)][0][1000:15000]
        assert np.std(y - np.mean(y * np.exp(2j * np.pi * 2000.0 / CFG.samp_rate * np.arange(y.size)))
                      * np.exp(-2j * np.pi * 2000.0 / CFG.samp_rate * np.arange(y.size))) == pytest.approx(
            noise_voltage(CFG, 0.0), rel=0.05), dyn
