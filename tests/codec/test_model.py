import numpy as np
import pytest
import torch

from testbed.codec import symbols as sym
from testbed.codec.channel import apply_channel
from testbed.codec.model import JSCC, CodecConfig, pad_to_stride


@pytest.mark.parametrize("h,w", [(16, 16), (33, 47), (64, 80), (5, 3)])
def test_any_image_size_and_unit_power(tiny_model, h, w):
    x = torch.rand(2, 3, h, w)
    xp = pad_to_stride(x)
    assert xp.shape[-2] % 16 == 0 and xp.shape[-1] % 16 == 0
    k = torch.tensor([6, 2])
    zc = tiny_model.encode(xp, torch.tensor([0.0, 20.0]), k)
    gh, gw = sym.latent_grid(h, w)
    assert zc.shape == (2, 6, gh, gw, 2)
    for b, kb in enumerate(k.tolist()):
        p = zc[b, :kb].pow(2).sum() / (kb * gh * gw)
        assert p.item() == pytest.approx(1.0, abs=1e-4)
        assert torch.count_nonzero(zc[b, kb:]) == 0
    y = tiny_model.decode(zc, torch.tensor([0.0, 20.0]), k)
    assert y.shape == xp.shape


def test_snr_is_an_input_of_encoder_and_decoder(tiny_model):
    x = torch.rand(1, 3, 32, 32)
    k = torch.tensor([6])
    a = tiny_model.encode(x, torch.tensor([0.0]), k)
    b = tiny_model.encode(x, torch.tensor([20.0]), k)
    assert not torch.allclose(a, b)
    ya = tiny_model.decode(a, torch.tensor([0.0]), k)
    yb = tiny_model.decode(a, torch.tensor([20.0]), k)
    assert not torch.allclose(ya, yb)


def test_training_path_learns_a_few_steps():
    """Proves the training code path: loss falls over a few steps on a fixed batch."""
    torch.manual_seed(0)
    m = JSCC(CodecConfig(widths=(8, 8, 12, 16), max_symbols=6))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    x = torch.rand(4, 3, 32, 32) * 0.5 + 0.25
    g = torch.Generator().manual_seed(0)
    chan = lambda s, snr: apply_channel(s, snr, "awgn", g)  # noqa: E731
    losses = []
    for _ in range(30):
        y = m(x, torch.full((4,), 20.0), torch.tensor([6, 6, 3, 1]), chan)
        loss = torch.mean((y - x) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])


def test_pca_initialisation_gives_a_working_linear_codec():
    """Before any training, the PCA-initialised linear path already transmits the image."""
    from tests.helpers import smooth_image
    from testbed.codec.pca_init import init_linear_paths
    from testbed.codec.train import validate

    imgs = [smooth_image(96, 128, seed=s) for s in range(4)]
    torch.manual_seed(0)
    m = JSCC(CodecConfig(widths=(8, 8, 12, 16), max_symbols=48))
    before = validate(m, imgs[:2], 20.0, 48, "cpu")
    info = init_linear_paths(m, imgs, np.random.default_rng(0))
    after = validate(m, imgs[:2], 20.0, 48, "cpu")
    assert 0.9 < info["energy_kept"] <= 1.0
    assert after > before + 5.0, (before, after)
    assert after > 24.0
    # more symbols per location -> better, the importance order comes from the PCA order
    assert validate(m, imgs[:2], 20.0, 48, "cpu") > validate(m, imgs[:2], 20.0, 8, "cpu")


def test_grow_adds_identity_blocks_and_keeps_the_function(tiny_model):
    from testbed.codec.model import count_parameters, grow

    g = grow(tiny_model, 3, 2).eval()
    assert (g.cfg.enc_res_blocks, g.cfg.dec_res_blocks) == (3, 2)
    assert (len(g.encoder.res_more), len(g.decoder.res_more)) == (2, 1)
    assert count_parameters(g) > count_parameters(tiny_model)
    x = torch.rand(1, 3, 48, 64)
    snr, k = torch.tensor([7.0]), torch.tensor([4])
    with torch.no_grad():
        assert torch.equal(g.encode(x, snr, k), tiny_model.encode(x, snr, k))
        z = tiny_model.encode(x, snr, k)
        assert torch.equal(g.decode(z, snr, k), tiny_model.decode(z, snr, k))
        # the added blocks are real layers: once their weights move, the output does
        g.decoder.res_more[0].conv2.weight.normal_(0, 0.1)
        assert not torch.allclose(g.decode(z, snr, k), tiny_model.decode(z, snr, k))
    # growing a grown model further keeps its trained blocks
    g2 = grow(g, 3, 3)
    assert torch.equal(g2.decoder.res_more[0].conv2.weight, g.decoder.res_more[0].conv2.weight)


@pytest.mark.parametrize("enc,dec", [(0, 2), (2, 0)])
def test_grow_refuses_fewer_blocks(tiny_model, enc, dec):
    from testbed.codec.model import grow

    g = grow(tiny_model, 2, 2)
    with pytest.raises(ValueError, match="residual blocks"):
        grow(g, enc, dec)
    with pytest.raises(ValueError, match="only be grown"):
        grow(g, 1, 2)


def test_codec_config_refuses_fewer_than_one_residual_block():
    with pytest.raises(ValueError, match="residual blocks 0,1"):
        CodecConfig(enc_res_blocks=0)
