"""Gray-mapped QAM and its max-log LLR demapper (testbed/phy/qam.py)."""
from math import erfc, sqrt

import numpy as np
import pytest

from testbed.digital import qam

MODS = ("qpsk", "16qam", "64qam")


@pytest.mark.parametrize("mod", MODS)
def test_constellation_has_unit_energy_and_distinct_points(mod):
    pts, labels = qam.constellation(mod)
    k = qam.bits_per_symbol(mod)
    assert len(pts) == len(set(np.round(pts, 6))) == 1 << k
    assert abs(np.mean(np.abs(pts) ** 2) - 1.0) < 1e-6


@pytest.mark.parametrize("mod", MODS)
def test_nearest_neighbours_differ_in_one_bit(mod):
    pts, labels = qam.constellation(mod)
    d = np.abs(pts[:, None] - pts[None, :])
    dmin = np.min(d[d > 1e-9])
    for a, b in zip(*np.nonzero(np.abs(d - dmin) < 1e-6)):
        assert np.sum(labels[a] != labels[b]) == 1


@pytest.mark.parametrize("mod", MODS)
def test_noise_free_llrs_give_back_the_bits(mod):
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2, 600 * qam.bits_per_symbol(mod)).astype(np.uint8)
    llr = qam.demodulate_llr(qam.modulate(bits, mod), 0.01, mod)
    assert llr.dtype == np.float32 and llr.size == bits.size
    assert np.array_equal(qam.hard_bits(llr), bits)


@pytest.mark.parametrize("mod", MODS)
def test_hard_decisions_equal_the_nearest_point(mod):
    """For a Gray map the signs of max-log LLRs are the bits of the nearest symbol."""
    rng = np.random.default_rng(2)
    pts, labels = qam.constellation(mod)
    y = (rng.normal(size=4000) + 1j * rng.normal(size=4000)) * 0.8
    nearest = labels[np.argmin(np.abs(y[:, None] - pts[None, :]), axis=1)].reshape(-1)
    assert np.array_equal(qam.hard_bits(qam.demodulate_llr(y, 0.3, mod)), nearest)


def test_qpsk_llr_is_exact_and_ber_matches_theory():
    rng = np.random.default_rng(3)
    n, esn0_db = 200_000, 6.0
    n0 = 10 ** (-esn0_db / 10)
    bits = rng.integers(0, 2, 2 * n).astype(np.uint8)
    x = qam.modulate(bits, "qpsk")
    y = x + np.sqrt(n0 / 2) * (rng.normal(size=n) + 1j * rng.normal(size=n))
    llr = qam.demodulate_llr(y, n0, "qpsk")
    a = 1 / sqrt(2)                          # bit 0 -> +a: exact LLR = 4 a y / N0 per dimension
    exact = np.stack([4 * a * y.real / n0, 4 * a * y.imag / n0], axis=1).reshape(-1)
    assert np.allclose(llr, exact, rtol=1e-4, atol=1e-3)
    ber = np.mean(qam.hard_bits(llr) != bits)
    theory = 0.5 * erfc(sqrt(10 ** (esn0_db / 10) / 2))     # Q(sqrt(Es/N0))
    assert abs(ber - theory) / theory < 0.06


def test_per_symbol_noise_scales_the_llrs():
    y = qam.modulate(np.array([0, 1, 1, 0], dtype=np.uint8), "qpsk")
    one = qam.demodulate_llr(y, 1.0, "qpsk")
    per = qam.demodulate_llr(y, np.array([1.0, 4.0]), "qpsk")
    assert np.allclose(per[:2], one[:2]) and np.allclose(per[2:], one[2:] / 4)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="'256qam'"):
        qam.bits_per_symbol("256qam")
    with pytest.raises(ValueError, match="multiple of 4"):
        qam.modulate(np.zeros(6, dtype=np.uint8), "16qam")
    with pytest.raises(ValueError, match="0 or 1"):
        qam.modulate(np.array([0, 2]), "qpsk")
    with pytest.raises(ValueError, match="noise variance"):
        qam.demodulate_llr(np.zeros(2, dtype=np.complex64), 0.0, "qpsk")
