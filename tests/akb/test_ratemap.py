"""Rate maps, side information and variable-rate framing (numpy/torch only, no GNU Radio)."""
import numpy as np
import pytest
import torch

from testbed.akb import placement as pl
from testbed.akb import ratemap as rm
from testbed.core.wire import side_info_symbols
from testbed.phy import framing, sideinfo
from testbed.phy.config import OfdmConfig


def test_grids_and_weights():
    assert rm.location_grid(512, 768) == (32, 48)
    assert rm.block_grid(512, 768) == (8, 12)
    w = rm.block_weights(9, 6)  # 3x2 blocks, partial last row/column
    assert w.shape == (3, 2)
    assert w.sum() == 9 * 6
    assert w[-1, -1] == 1 * 2


@pytest.mark.parametrize("cbr", [0.021, 0.036, 0.0625])
def test_preset_levels_meet_budget_and_follow_entropy(cbr):
    rng = np.random.default_rng(0)
    H, W = 512, 768
    bits = rng.gamma(2.0, 50.0, rm.block_grid(H, W))
    lv = rm.preset_levels(bits, cbr, H, W)
    c = rm.cbr_of(lv, H, W)
    assert c <= cbr + 1e-12
    assert c > 0.85 * cbr  # the budget is used, not wasted
    order = np.argsort(bits.ravel())
    assert np.all(np.diff(lv.ravel()[order]) >= 0)  # more entropy never gets fewer symbols
    assert len(np.unique(lv)) > 1


def test_offsets_are_applied_and_budget_reimposed():
    rng = np.random.default_rng(1)
    H, W = 256, 256
    bits = rng.gamma(2.0, 50.0, (4, 4))
    base = rm.preset_levels(bits, 0.036, H, W)
    off = np.zeros((4, 4), np.int64)
    off[0, 0] = 1
    off[3, 3] = -1
    lv = rm.preset_levels(bits, 0.036, H, W, off)
    assert rm.cbr_of(lv, H, W) <= 0.036 + 1e-12
    assert not np.array_equal(lv, base)


def test_budget_below_minimum_gives_lowest_map():
    lv = rm.preset_levels(np.ones((2, 2)), 0.001, 128, 128)
    assert np.all(lv == 0)
    assert rm.cbr_of(lv, 128, 128) == pytest.approx(rm.min_cbr(128, 128))


def test_uniform_levels():
    lv = rm.uniform_levels(0.0625, 512, 768)
    assert len(np.unique(lv)) == 1
    assert rm.cbr_of(lv, 512, 768) <= 0.0625
    assert rm.RATE_SET[lv[0, 0]] == 32  # 48 would exceed the budget once side information counts


def test_block_entropy_means_over_real_locations():
    e = np.arange(6 * 5, dtype=float).reshape(6, 5)
    be = rm.block_entropy(e)
    assert be.shape == (2, 2)
    assert be[0, 0] == pytest.approx(e[:4, :4].mean())
    assert be[1, 1] == pytest.approx(e[4:, 4:].mean())


def test_pack_levels_roundtrip_and_errors():
    lv = np.random.default_rng(2).integers(0, len(rm.RATE_SET), (5, 7))
    assert np.array_equal(sideinfo.unpack_levels(sideinfo.pack_levels(lv), 5, 7), lv)
    with pytest.raises(ValueError, match="does not fit in 3 bits"):
        sideinfo.pack_levels(np.array([[2 ** sideinfo.RATE_BITS]]))
    with pytest.raises(ValueError, match="bits"):
        sideinfo.unpack_levels(b"\x00", 5, 7)


def test_stream_pack_unpack_roundtrip_and_zero_fill():
    torch.manual_seed(0)
    levels = torch.tensor([[[0, 3], [7, 1]]])
    rates = pl.location_rates(levels, 6, 7)
    assert rates.shape == (1, 6, 7)
    mask = pl.symbol_mask(rates)[0]
    zc = torch.randn(rm.MAX_SYMBOLS, 6, 7, 2) * mask[..., None]
    stream = pl.pack_stream(zc, mask)
    assert stream.shape[0] == rm.n_symbols(levels[0].numpy(), 6, 7)
    assert torch.equal(pl.unpack_stream(stream, mask), zc)
    # a truncated stream zero-fills its tail (the least important symbols)
    part = pl.unpack_stream(stream[:100], mask)
    assert torch.count_nonzero(part[..., 0]) <= 100
    # importance-major: symbol 0 of every location comes first
    assert torch.equal(stream[: 6 * 7], zc[0].reshape(-1, 2))


def test_side_info_roundtrip_noise_and_crc():
    lv = np.random.default_rng(3).integers(0, len(rm.RATE_SET), (8, 12))
    si = sideinfo.SideInfo(kb_index=42, levels=lv)
    n = sideinfo.body_len(8, 12)
    assert len(sideinfo.to_bytes(si)) == n + 4
    x = sideinfo.modulate(si, 194)
    assert x.size == sideinfo.ofdm_symbols(n, 194) * 194
    assert sideinfo.n_symbols(n) == side_info_symbols(8, 12)   # the size the codec counts in its CBR
    rng = np.random.default_rng(4)
    noisy = x + (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size)) * np.sqrt(0.5)  # 0 dB
    back = sideinfo.demodulate(noisy, n, 8, 12)
    assert back.kb_index == 42 and np.array_equal(back.levels, lv)
    with pytest.raises(sideinfo.SideInfoError):
        sideinfo.demodulate(-x, n, 8, 12)


def test_variable_rate_frames_reassemble_and_lost_frame_zero_fills():
    cfg = OfdmConfig(payload_symbols_per_frame=2000)
    rng = np.random.default_rng(5)
    H, W = 256, 384
    lv = rng.integers(0, len(rm.RATE_SET), rm.block_grid(H, W))
    n = rm.n_symbols(lv, *rm.location_grid(H, W))
    s = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(np.complex64)
    si = sideinfo.SideInfo(kb_index=3, levels=lv)
    frames = framing.make_frames(s, image_id=9, height=H, width=W, symbols_per_location=0,
                                 model_sha256="ab" * 32, cfg=cfg, side=si)
    assert len(frames) > 2
    for fh, p in frames:
        assert fh.symbols_per_location == 0 and fh.side_info_len == sideinfo.body_len(*lv.shape)
        sym = framing.frame_symbols(fh, p, cfg, si)
        assert sym.size <= cfg.max_frame_symbols()
        assert framing.payload_ofdm_symbols(fh.n_payload, cfg, fh.side_info_len) * cfg.n_data == \
            sym.size - framing.hdr.header_ofdm_symbols(cfg.header_repetition, cfg.n_data) * cfg.n_data
    def count(h, side):    # the receiver tells the PHY how many symbols a rate map means
        return rm.n_symbols(side.levels, *rm.location_grid(h.height, h.width))

    re = framing.Reassembler(count)
    out = []
    for fh, p in frames[1:]:  # frame 0 lost
        out += re.add(framing.FrameRx(header=fh, symbols=p, snr_db=10.0, side=si))
    out += re.flush()
    assert len(out) == 1
    img = out[0]
    assert img.side is si and img.missing_frames == [0]
    lost = np.arange(0, n, len(frames))
    assert np.all(img.stream[lost] == 0)
    keep = np.setdiff1d(np.arange(n), lost)
    assert np.array_equal(img.stream[keep], s[keep])
    # a frame announcing side information without carrying it is dropped
    re2 = framing.Reassembler(count)
    assert re2.add(framing.FrameRx(header=frames[0][0], symbols=frames[0][1], snr_db=10.0)) == []
    assert re2.inconsistent == 1


def test_header_rejects_ambiguous_rate_fields():
    from testbed.phy.header import FrameHeader, HeaderError

    h = FrameHeader(image_id=1, frame_index=0, frame_count=1, height=16, width=16, symbols_per_location=0,
                    n_payload=10, payload_offset=0, model_hash=1, side_info_len=0)
    with pytest.raises(HeaderError, match="inconsistent"):
        FrameHeader.from_bytes(h.to_bytes())
