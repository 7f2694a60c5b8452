import pytest
import torch

from testbed.codec import stream as st
from testbed.codec import symbols as sym


def test_cbr_operating_points():
    assert sym.cbr(48, 512, 768) == pytest.approx(1 / 16)
    assert sym.cbr(16, 512, 768) == pytest.approx(1 / 48)
    # padding counts: a 17x17 image uses a 2x2 grid
    assert sym.latent_grid(17, 17) == (2, 2)
    assert sym.cbr(1, 17, 17) == pytest.approx(4 / (17 * 17 * 3))


@pytest.mark.parametrize("k", [1, 3, 6])
def test_power_is_one_over_sent_symbols_and_zero_beyond(k):
    z = torch.randn(2, 12, 3, 5) * 7
    zc = st.normalize_power(z, torch.tensor([k, k]))
    assert zc.shape == (2, 6, 3, 5, 2)
    sent = zc[:, :k]
    p = sent.pow(2).sum(dim=(1, 2, 3, 4)) / (k * 15)
    assert torch.allclose(p, torch.ones(2), atol=1e-5)
    assert torch.count_nonzero(zc[:, k:]) == 0


def test_stream_order_is_importance_major_and_roundtrips():
    zc = torch.randn(1, 4, 2, 3, 2)
    s = st.to_stream(zc)
    # the first h*w symbols are importance level 0 of every location
    assert torch.equal(s[0, :6], zc[0, 0].reshape(6, 2))
    back = st.from_stream(s[:, : 2 * 6], 4, 2, 3)
    assert torch.equal(back[:, :2], zc[:, :2])
    assert torch.count_nonzero(back[:, 2:]) == 0


def test_latent_roundtrip():
    z = torch.randn(2, 8, 3, 4)
    zc = z.reshape(2, 4, 2, 3, 4).permute(0, 1, 3, 4, 2)
    assert torch.equal(st.to_latent(zc), z)
