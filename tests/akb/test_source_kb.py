"""Source knowledge base: k-means KB, retrieval, hashes, TX/RX mismatch, CLIP provider, `testbed kb build`."""
import json
import string

import numpy as np
import pytest

from tests.helpers.akb import tiny_akb
from tests.helpers import run_cli, smooth_image, write_png


def test_kmeans_lookup_and_file_roundtrip(tmp_path):
    from testbed.akb.source_kb.kb import KbError, KnowledgeBase, kmeans

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (4, 3))
    x = np.concatenate([c + rng.normal(0, 0.1, (50, 3)) for c in centres]).astype(np.float32)
    kb = KnowledgeBase(kmeans(x, 4, rng), "test", {})
    for c in centres:  # every true cluster is found
        i, v = kb.lookup(c)
        assert np.linalg.norm(v - c) < 0.2
    kb.save(tmp_path / "kb.npz")
    back = KnowledgeBase.load(tmp_path / "kb.npz")
    assert back.sha256 == kb.sha256 and np.array_equal(back.vectors, kb.vectors)
    with pytest.raises(KbError, match="index 9"):
        kb.vector(9)
    with pytest.raises(KbError, match="values"):
        kb.lookup(np.zeros(5))
    with pytest.raises(KbError, match="cannot make"):
        kmeans(x[:3], 4, rng)
    # an altered file is detected by its recorded hash
    z = dict(np.load(tmp_path / "kb.npz"))
    z["vectors"] = z["vectors"] + 1
    np.savez(tmp_path / "bad.npz", **z)
    with pytest.raises(KbError, match="does not match"):
        KnowledgeBase.load(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(KbError, match="not a KB file"):
        KnowledgeBase.load(tmp_path / "junk.npz")


def test_build_kb_projects_foreign_embeddings():
    from testbed.akb.source_kb.kb import KnowledgeBase, build_kb

    class Fake:
        name, dim = "fake", 40

        def embed(self, image):
            v = np.zeros(40, np.float32)
            v[: 3] = image.reshape(-1, 3).mean(0)
            v[3:] = np.random.default_rng(int(image.sum()) % 1000).normal(0, 0.01, 37)
            return v

    imgs = [smooth_image(64, 64, seed=i) for i in range(10)]
    kb = build_kb(Fake(), imgs, entries=4, dim=6, rng=np.random.default_rng(0), crops_per_image=2, crop=32)
    assert kb.vectors.shape == (4, 6) and kb.proj_matrix.shape == (40, 6)
    i, v = kb.lookup(Fake().embed(imgs[0]))
    assert 0 <= i < 4


def _tiny_clip(d):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    d.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + string.digits + ".,":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt")).save_pretrained(str(d))
    torch.manual_seed(0)
    cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=32, projection_dim=24,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1)
    CLIPTextModelWithProjection(cfg).save_pretrained(str(d))
    return d


@pytest.mark.slow
def test_clip_provider_with_small_local_weights(tmp_path):
    from testbed.akb.source_kb.clip_provider import CaptionClipProvider
    from testbed.akb.source_kb.kb import KbError, build_kb

    d = _tiny_clip(tmp_path / "clip")

    def caption(img):  # stands in for the LVM: a description that depends on the image
        return "a bright red scene." if img[..., 0].mean() > img[..., 2].mean() else "a calm blue sky."

    p = CaptionClipProvider(d, caption)
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 200
    blue = red[..., ::-1].copy()
    e1, e2 = p.embed(red), p.embed(blue)
    assert p.last_caption == "a calm blue sky."
    assert e1.shape == (24,) and abs(np.linalg.norm(e1) - 1) < 1e-5
    assert not np.allclose(e1, e2)
    assert np.allclose(p.embed(red), e1)  # deterministic
    imgs = [red, blue] * 10
    kb = build_kb(p, imgs, entries=2, dim=4, rng=np.random.default_rng(0), crops_per_image=1, crop=16)
    assert kb.provider == "caption-clip"
    assert kb.lookup(p.embed(red))[0] != kb.lookup(p.embed(blue))[0]
    with pytest.raises(KbError, match="not found"):
        CaptionClipProvider(tmp_path / "nowhere", caption)


@pytest.fixture(scope="module")
def akb_dir(tmp_path_factory):
    from testbed.akb.export import export_akb

    model, emb, kb = tiny_akb()
    d = tmp_path_factory.mktemp("akb-kb-model")
    export_akb(model, emb, kb, d, name="tiny-akb", training={"data": "random init (test)"})
    return d


def test_kb_build_cli_and_receiver_detects_kb_mismatch(akb_dir, tmp_path):
    from testbed.akb.runtime import AkbCodec, AkbSide
    from testbed.gr.jscc_decoder import jscc_decoder
    from testbed.phy import framing
    from testbed.phy.config import OfdmConfig
    from testbed.core.wire import SideInfo, kb_hash16

    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(5):
        write_png(data / f"{i}.png", smooth_image(80, 96, seed=i))
    r = json.loads(run_cli("kb", "build", "--data", data, "--model", akb_dir, "--entries", "3",
                           "--crops-per-image", "2", "--out", tmp_path / "mine.npz", "--json").stdout)
    assert r["entries"] == 3 and r["images"] == 5 and r["provider"] == "image-embedder"
    p = run_cli("kb", "build", "--data", data, "--model", akb_dir, "--entries", "300", "--out", tmp_path / "x.npz",
                check=False)
    assert p.returncode == 2 and "--entries" in p.stderr

    tx = AkbCodec(akb_dir, kb=tmp_path / "mine.npz")   # the transmitter uses the new KB
    rx = AkbCodec(akb_dir)                              # the receiver still holds the shipped one
    assert tx.kb.sha256 != rx.kb.sha256
    img = smooth_image(80, 96, seed=7)
    s, side = tx.encode_side(img, 15.0, 0.05, ckb=False)
    si = SideInfo(kb_index=side.kb_index, levels=side.levels, kb_hash=kb_hash16(tx.kb.sha256))
    cfg = OfdmConfig()
    images = []
    dec = jscc_decoder(rx, on_image=lambda rec, im: images.append(rec))
    for fh, pay in framing.make_frames(s, image_id=1, height=80, width=96, symbols_per_location=0,
                                       model_sha256=rx.sha256, cfg=cfg, side=si):
        for done in dec.reasm.add(framing.FrameRx(header=fh, symbols=pay, snr_db=15.0, side=si, extra={"snr_db": 15.0})):
            dec._decode(done)
    assert dec.wrong_kb == 1 and images == []
    # the same frames with the receiver's KB decode
    si_ok = SideInfo(kb_index=side.kb_index, levels=side.levels, kb_hash=kb_hash16(rx.kb.sha256))
    for fh, pay in framing.make_frames(s, image_id=2, height=80, width=96, symbols_per_location=0,
                                       model_sha256=rx.sha256, cfg=cfg, side=si_ok):
        for done in dec.reasm.add(framing.FrameRx(header=fh, symbols=pay, snr_db=15.0, side=si_ok, extra={"snr_db": 15.0})):
            dec._decode(done)
    assert len(images) == 1 and images[0]["kb_index"] == side.kb_index
    assert rx.decode(s, 15.0, 80, 96, AkbSide(side.levels, side.kb_index)).shape == (80, 96, 3)
