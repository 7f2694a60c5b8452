"""Codec v2 (testbed.codec.arch_v2): the v1 symbol contract, ONNX export, rebuild from ONNX, its cost."""
import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers import perturbed
from testbed.codec.arch_v2 import CodecConfigV2
from testbed.codec.export import check_against_torch, export
from testbed.codec.model import JSCC, CodecConfig, arch_of, config_from_dict, grow
from testbed.codec.onnx_weights import load_from_onnx
from testbed.core.card import ModelCardError, read_card
from testbed.codec.modelcard import ModelCard
from testbed.zoo import open_codec

SMALL = CodecConfigV2(widths=(8, 16, 24), enc_depths=(0, 1, 2), dec_depths=(1, 1, 2), max_symbols=12)


def _randomised(cfg, seed=0):
    torch.manual_seed(seed)
    return perturbed(JSCC(cfg), seed)


def test_symbols_follow_the_v1_contract():
    m = _randomised(SMALL)
    x = torch.rand(2, 3, 48, 64)
    k = torch.tensor([5, 12])
    zc = m.encode(x, torch.tensor([3.0, 15.0]), k)
    assert zc.shape == (2, 12, 3, 4, 2)
    assert not zc[0, 5:].any() and zc[1].abs().sum() > 0          # nothing beyond k is sent
    power = zc.pow(2).sum(dim=(1, 2, 3, 4)) / (k * 12)
    assert torch.allclose(power, torch.ones(2), atol=1e-4)        # Es = 1 per image
    y = m.decode(zc, torch.tensor([3.0, 15.0]), k)
    assert y.shape == (2, 3, 48, 64) and torch.isfinite(y).all()


def test_config_round_trip_and_refusals():
    assert config_from_dict(SMALL.to_dict()) == SMALL
    assert arch_of(config_from_dict(CodecConfig().to_dict())) == "v1"    # v1 dicts never named an arch
    with pytest.raises(ValueError, match="unknown arch 'v9'"):
        config_from_dict({"arch": "v9"})
    with pytest.raises(ValueError, match="widths"):
        CodecConfigV2(widths=(8, 16))
    with pytest.raises(ValueError, match="odd kernels"):
        CodecConfigV2(kernel=4)
    with pytest.raises(ValueError, match="only a codec v1 model can be grown"):
        grow(JSCC(SMALL), 2, 2)


def test_onnx_export_matches_torch_and_rebuilds(tmp_path):
    m = _randomised(SMALL, seed=3)
    card = export(m, tmp_path / "v2", name="v2-test", operating_points=[4, 12], training={})
    assert card.architecture == "v2"
    err = check_against_torch(m, tmp_path / "v2", height=40, width=56, k=7)
    assert err["symbols_max_abs_err"] < 1e-4 and err["image_max_abs_err"] <= 1
    assert err["symbols_shape"] == [1, 7 * 3 * 4, 2]
    rebuilt = load_from_onnx(tmp_path / "v2")
    assert rebuilt.cfg == SMALL
    for (name, a), (_, b) in zip(m.state_dict().items(), rebuilt.state_dict().items()):
        assert torch.equal(a, b), name
    # the runtimes take it as they take v1: same card kind, same graphs contract
    codec = open_codec(str(tmp_path / "v2"), threads=1)
    img = np.random.default_rng(0).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    enc = codec.encode(img, 10.0, codec.rate(None))
    out = codec.decode(enc.symbols, 10.0, 33, 47, side=enc.side)
    assert out.shape == (33, 47, 3) and out.dtype == np.uint8


def test_card_architecture_is_checked(tmp_path):
    m = _randomised(SMALL)
    export(m, tmp_path / "v2", name="v2-test", operating_points=[12], training={})
    p = tmp_path / "v2" / "model_card.yaml"
    p.write_text(p.read_text().replace("architecture: v2", "architecture: v7"))
    with pytest.raises(ModelCardError, match="architecture"):
        read_card(p, ModelCard)


def _conv_macs(model, h=512, w=768) -> int:
    """Multiply-adds of the convolutions and linear layers of encoder + decoder on one h x w image."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
            k = mod.weight.shape[2] * mod.weight.shape[3]
            cin_per_group = mod.in_channels // mod.groups
            positions = out.shape[2] * out.shape[3] if isinstance(mod, nn.Conv2d) else inp[0].shape[2] * inp[0].shape[3]
            cout = mod.out_channels
            total += positions * cout * cin_per_group * k
        elif isinstance(mod, nn.Linear):
            total += mod.in_features * mod.out_features

    hs = [mod.register_forward_hook(hook) for mod in model.modules() if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    with torch.no_grad():
        k = torch.tensor([model.cfg.max_symbols])
        zc = model.encode(torch.rand(1, 3, h, w), torch.tensor([10.0]), k)
        model.decode(zc, torch.tensor([10.0]), k)
    for x in hs:
        x.remove()
    return total


def test_default_v2_has_at_most_0_6x_the_multiply_adds_of_shipped_v1():
    """The design target (measured time is in BENCHMARKS.md): v2's layers do at most 0.6x the
    shipped v1's (3,3 residual blocks) multiply-adds on a Kodak-sized image."""
    v1 = _conv_macs(JSCC(CodecConfig(enc_res_blocks=3, dec_res_blocks=3)))
    v2 = _conv_macs(JSCC(CodecConfigV2()))
    assert v2 <= 0.6 * v1, (v2 / 1e9, v1 / 1e9)
