"""Measured-distortion rate allocation (numpy only)."""
import itertools

import numpy as np
import pytest

from testbed.akb import allocation as al
from testbed.akb import ratemap as rm

RATES = np.asarray(rm.RATE_SET, dtype=np.float64)


@pytest.mark.parametrize("cbr", [0.021, 0.036, 0.0625])
def test_budget_is_met_and_used_and_harder_blocks_get_more(cbr):
    rng = np.random.default_rng(0)
    H, W = 512, 768
    hb, wb = rm.block_grid(H, W)
    hardness = rng.gamma(2.0, 1.0, (hb, wb))
    sse = hardness[..., None] * 1e5 / RATES[None, None, :]      # diminishing returns
    lv = al.optimal_levels(sse, cbr, H, W)
    assert lv.shape == (hb, wb) and lv.dtype == np.int64
    c = rm.cbr_of(lv, H, W)
    assert 0.9 * cbr < c <= cbr + 1e-12
    order = np.argsort(hardness.ravel())
    assert np.all(np.diff(lv.ravel()[order]) >= 0)
    assert len(np.unique(lv)) > 1


def test_no_map_within_the_budget_has_less_distortion():
    """Brute force over every map of a 2x2-block image with non-convex, noisy distortion curves."""
    rng = np.random.default_rng(3)
    H = W = 128
    h, w = rm.location_grid(H, W)
    wts = rm.block_weights(h, w).ravel()
    budget = 0.04 * H * W * 3 - rm.side_info_symbols(2, 2)
    for trial in range(5):
        sse = np.sort(rng.gamma(2.0, 1e4, (2, 2, len(RATES))), axis=-1)[..., ::-1] + rng.normal(0, 2e3, (2, 2, len(RATES)))
        lv = al.optimal_levels(sse, 0.04, H, W)
        assert rm.n_symbols(lv, h, w) <= budget
        d_best = sum(sse.reshape(4, -1)[i, lv.ravel()[i]] for i in range(4))
        for combo in itertools.product(range(len(RATES)), repeat=4):
            c = float((RATES[list(combo)] * wts).sum())
            d = sum(sse.reshape(4, -1)[i, combo[i]] for i in range(4))
            assert not (c <= budget and d < d_best - 1e-9), (trial, combo, lv)


def test_edge_blocks_never_exceed_the_budget():
    """Odd sizes: edge blocks hold fewer locations (their cost is rounded up, never down)."""
    rng = np.random.default_rng(4)
    for H, W in ((130, 200), (500, 333), (16, 16)):
        hb, wb = rm.block_grid(H, W)
        sse = np.sort(rng.gamma(2.0, 1e4, (hb, wb, len(RATES))), axis=-1)[..., ::-1]
        for cbr in (0.02, 0.05, 0.07):
            lv = al.optimal_levels(sse, cbr, H, W)
            if rm.cbr_of(np.zeros((hb, wb), np.int64), H, W) <= cbr:
                assert rm.cbr_of(lv, H, W) <= cbr + 1e-12


def test_lowest_map_when_nothing_fits_and_no_symbols_for_nothing():
    H, W = 512, 768
    hb, wb = rm.block_grid(H, W)
    sse = np.tile(1e5 / RATES, (hb, wb, 1))
    assert np.all(al.optimal_levels(sse, 0.001, H, W) == 0)
    flat = np.ones((hb, wb, len(RATES)))
    assert np.all(al.optimal_levels(flat, 0.0625, H, W) == 0)   # more symbols buy nothing here


def test_bad_tables_are_refused():
    with pytest.raises(ValueError, match="shape"):
        al.optimal_levels(np.ones((2, 2, len(RATES))), 0.03, 512, 768)
    bad = np.ones((8, 12, len(RATES)))
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        al.optimal_levels(bad, 0.03, 512, 768)


def test_block_sse_sums_each_tile():
    e = np.zeros((70, 130))
    e[0, 0] = 1.0
    e[69, 129] = 2.0
    e[64, 0] = 3.0
    s = al.block_sse(e, 2, 3)
    assert s.shape == (2, 3)
    assert s[0, 0] == 1.0 and s[1, 2] == 2.0 and s[1, 0] == 3.0 and s.sum() == 6.0


def test_many_edge_blocks_fall_back_to_the_lowest_map():
    """A 16-pixel-wide strip: every block holds 1x4 locations, so whole-unit costs overstate it;
    when the rounded-up lowest map does not fit, the (truly fitting) lowest map is returned."""
    H, W = 1024, 16
    hb, wb = rm.block_grid(H, W)
    sse = np.tile(1e5 / RATES, (hb, wb, 1))
    lowest = np.zeros((hb, wb), np.int64)
    cbr = rm.cbr_of(lowest, H, W) * 1.5    # the lowest map fits; whole units of the lowest map would not
    lv = al.optimal_levels(sse, cbr, H, W)
    assert rm.cbr_of(lv, H, W) <= cbr
