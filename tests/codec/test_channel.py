import numpy as np
import pytest
import torch

from testbed.codec.channel import apply_channel, awgn, rayleigh_block
from testbed.core.symbol_channel import apply_channel_np


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_awgn_torch_noise_power_matches_es_n0(snr_db):
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(4, 50000, 2)
    y = awgn(x, torch.full((4,), snr_db), g)
    n0 = y.pow(2).sum(-1).mean().item()  # complex noise power
    assert n0 == pytest.approx(10 ** (-snr_db / 10), rel=0.03)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_awgn_numpy_measured_snr(snr_db):
    rng = np.random.default_rng(0)
    x = np.exp(1j * rng.uniform(0, 2 * np.pi, 200000)).astype(np.complex64)  # Es = 1
    y, snr_rx = apply_channel_np(x, snr_db, "awgn", rng)
    meas = 10 * np.log10(1.0 / np.mean(np.abs(y - x) ** 2))
    assert meas == pytest.approx(snr_db, abs=0.1)
    assert snr_rx == snr_db


def test_rayleigh_effective_snr_is_exponential_gain():
    g = torch.Generator().manual_seed(3)
    x = torch.zeros(20000, 4, 2)
    _, eff = rayleigh_block(x, torch.full((20000,), 10.0), g)
    gain = 10 ** ((eff - 10.0) / 10)
    assert gain.mean().item() == pytest.approx(1.0, rel=0.05)          # E|h|^2 = 1
    assert (gain < 0.1).float().mean().item() == pytest.approx(1 - np.exp(-0.1), abs=0.01)  # deep fades


def test_unknown_channel_is_named():
    with pytest.raises(ValueError, match="'foo'"):
        apply_channel(torch.zeros(1, 2, 2), torch.zeros(1), "foo")
