import math

import pytest

from tests.helpers import smooth_image
from testbed.experiments.separation import capacity_bpp, jpeg2000_at_budget, jpeg_at_budget, separation_reference


def test_capacity_formula():
    # bpp = 3 * CBR * log2(1 + SNR): at 10 dB and CBR 1/16, 3/16 * log2(11)
    assert capacity_bpp(1 / 16, 10.0) == pytest.approx(3 / 16 * math.log2(11))
    assert capacity_bpp(1 / 48, 0.0) == pytest.approx(1 / 16)


def test_codecs_respect_the_budget_and_improve_with_it():
    img = smooth_image(128, 160, seed=2)
    budgets = [400, 1200, 4000]
    last_j, last_j2 = -1.0, -1.0
    for b in budgets:
        pj, bpp = jpeg_at_budget(img, b)
        if pj is not None:
            assert bpp * 128 * 160 / 8 <= b
            assert pj >= last_j
            last_j = pj
        p2, bpp2 = jpeg2000_at_budget(img, b)
        assert p2 is not None and bpp2 * 128 * 160 / 8 <= b
        assert p2 >= last_j2
        last_j2 = p2


def test_unachievable_budget_is_none():
    img = smooth_image(256, 256)
    pj, bpp = jpeg_at_budget(img, 50)  # 50 bytes cannot hold a JPEG header
    assert pj is None and bpp > 50 * 8 / (256 * 256)


def test_reference_rises_with_snr():
    img = smooth_image(128, 128, seed=4)
    r0 = separation_reference(img, 1 / 16, 0.0)
    r20 = separation_reference(img, 1 / 16, 20.0)
    assert r20["capacity_bpp"] > r0["capacity_bpp"]
    assert r20["jpeg2000_psnr_db"] > r0["jpeg2000_psnr_db"]
