"""The AKB codec on codec v2: starts out computing v2, trains, exports and runs through the runtime."""
import numpy as np
import pytest
import torch

from tests.helpers import perturbed
from tests.helpers.akb import tiny_training_data
from testbed.akb import placement as pl
from testbed.akb import ratemap as rm
from testbed.akb.model import from_codec
from testbed.akb.source_kb.embedder import ImageEmbedder
from testbed.codec.arch_v2 import CodecConfigV2
from testbed.codec.model import JSCC, CodecConfig

SMALL = CodecConfigV2(widths=(8, 16, 24), enc_depths=(0, 1, 1), dec_depths=(1, 1, 1), max_symbols=48)


def _v2(seed=1):
    torch.manual_seed(seed)
    return perturbed(JSCC(SMALL), seed)


def test_from_codec_v2_reproduces_v2_at_uniform_rate():
    v2 = _v2()
    m = from_codec(v2).eval()
    assert m.cfg.backbone == SMALL.to_dict()
    x = torch.rand(1, 3, 64, 96)
    snr = torch.tensor([7.0])
    with torch.no_grad():
        z1 = v2.encode(x, snr, torch.tensor([48]))
        feats, bits, _ = m.analyse(x, snr, torch.tensor([48.0]), torch.zeros(1, m.cfg.kb_dim))
        assert bits.shape == (1, 4, 6)
        lv = torch.full((1, 1, 2), rm.RATE_SET.index(48))
        z2 = m.encoder.symbols(feats, pl.location_rates(lv, 4, 6))
        assert torch.allclose(z1, z2[:, :48], atol=1e-5)
        y1 = v2.decode(z1, snr, torch.tensor([48]))
        y2 = m.transmit(feats, lv, snr, torch.zeros(1, m.cfg.kb_dim), lambda z, s: (z, s))
    assert torch.allclose(y1, y2, atol=1e-4)
    # the source-KB embedder runs v2's trunk
    emb = ImageEmbedder.from_codec(v2, dim=m.cfg.kb_dim)
    img = torch.randint(0, 256, (2, 40, 56, 3), dtype=torch.uint8)
    assert emb.pooled(img).shape == (2, SMALL.widths[-1])
    same = ImageEmbedder.for_config(m.cfg)
    same.load_state_dict(emb.state_dict())


def test_a_v1_codec_with_grown_blocks_is_refused_not_truncated():
    with pytest.raises(ValueError, match="3,3 residual blocks"):
        from_codec(JSCC(CodecConfig(widths=(8, 8, 12, 16), enc_res_blocks=3, dec_res_blocks=3)))


@pytest.mark.slow
def test_akb_v2_trains_exports_and_runs(tmp_path):
    import testbed.akb.train as at
    from testbed.akb.export import export_akb
    from testbed.zoo import open_codec

    data, val = tiny_training_data(tmp_path)
    v2 = _v2()
    ck = tmp_path / "v2.pt"
    torch.save({"model": v2.state_dict(), "ema": None, "codec_config": v2.cfg.to_dict()}, ck)
    cfg = at.AkbTrainConfig(data=str(data), val=str(val), out=str(tmp_path / "run"), init_from=str(ck), crop=64,
                            batch=1, entropy_steps=2, steps=3, kb_crops=40, kb_entries=4, ckpt_every=2, val_every=1,
                            val_images=1, threads=1, rate_grad=True, max_minutes=5.0)
    final = at.train(cfg)
    assert final["step"] == 5 and final["best_val"] is not None
    model, emb, kb = at.load_akb(tmp_path / "run" / "best.pt")
    assert model.cfg.backbone == SMALL.to_dict()
    d = tmp_path / "akb-v2"
    export_akb(model, emb, kb, d, name="akb-v2-test", training={"data": str(data)})
    codec = open_codec(str(d), threads=1)
    img = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    rate = codec.rate(0.04, ckb=False)
    enc = codec.encode(img, 10.0, rate)
    out = codec.decode(enc.symbols, 10.0, 70, 90, side=enc.side)
    assert out.shape == (70, 90, 3) and out.dtype == np.uint8
