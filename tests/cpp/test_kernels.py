"""C++ kernels (Viterbi, CRC, header decoding with the header as training, payload equalisation,
side information) against the Python reference, on synthetic frequency-domain frames."""
import zlib

import numpy as np
import pmt
import pytest

from testbed.core.wire import SideInfo, rate_block_grid, side_info_bytes
from testbed.gr import cpp_blocks
from testbed.phy import fec, framing, sideinfo
from testbed.phy import header as hdr
from testbed.phy.config import OfdmConfig
from testbed.phy.equalizer import ChannelState, equalize_payload, estimate_from_header


@pytest.fixture(scope="module")
def tp():
    m = cpp_blocks.module()
    assert m is not None, f"gr-testbedphy not installed: {cpp_blocks.unavailable_reason()}"
    return m


CFG = OfdmConfig()


def _channel(rng, taps=4):
    h = (rng.standard_normal(taps) + 1j * rng.standard_normal(taps)) * np.exp(-np.arange(taps) / 2)
    H = np.fft.fftshift(np.fft.fft(h, CFG.fft_len))
    return (H / np.sqrt(np.mean(np.abs(H) ** 2))).astype(np.complex128)


def _grid(rows_data, rng, H, snr_db, phase_step=0.0):
    """[n, fft_len] received symbols: data on the data carriers, pilots, channel, noise."""
    n = rows_data.shape[0]
    X = np.zeros((n, CFG.fft_len), np.complex128)
    X[:, CFG.bins(CFG.data_carriers)] = rows_data
    X[:, CFG.bins(CFG.pilot_carriers)] = CFG.pilot_symbols[None, :]
    ph = np.exp(1j * phase_step * np.arange(n))[:, None]
    nv = 10 ** (-snr_db / 10)
    noise = np.sqrt(nv / 2) * (rng.standard_normal(X.shape) + 1j * rng.standard_normal(X.shape))
    return (X * H[None, :] * ph + noise).astype(np.complex64)


def test_crc_and_viterbi(tp):
    for data in (b"", b"hello", bytes(range(200))):
        assert tp.kernels.crc32(data) == zlib.crc32(data)
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2, 232)
    soft = 1.0 - 2.0 * fec.conv_encode(bits) + 0.8 * rng.standard_normal(2 * (232 + 6))
    ref = fec.viterbi_decode(soft, 232)
    got = np.array(tp.kernels.viterbi_decode(soft.tolist(), 232))
    assert np.array_equal(ref, got)
    assert np.mean(ref != bits) < 0.05            # the noise was such that it still decodes mostly


@pytest.mark.parametrize("version", [2, 1])
def test_header_estimate(tp, version):
    rng = np.random.default_rng(version)
    L = cpp_blocks.layout(CFG)
    h = hdr.FrameHeader(image_id=7, frame_index=2, frame_count=9, height=512, width=768, symbols_per_location=2,
                        n_payload=9000, payload_offset=3, model_hash=0xDEADBEEF, mode=0 if version == 1 else 3,
                        version=version)
    n_hdr = hdr.header_ofdm_symbols(CFG.header_repetition, CFG.n_data)
    H = _channel(rng)
    Y = _grid(hdr.modulate(h, CFG.header_repetition, CFG.n_data).reshape(n_hdr, CFG.n_data), rng, H, 8.0, 0.01)
    H0 = (H + 0.2 * (rng.standard_normal(H.shape) + 1j * rng.standard_normal(H.shape))).astype(np.complex64)
    ref_h, st, why = estimate_from_header(Y, H0, CFG)
    got = tp.kernels.estimate_from_header(Y.ravel().tolist(), H0.tolist(), L)
    assert ref_h == h and why == "ok"
    assert got["header"] == {k: v for k, v in h.as_dict().items()}
    assert np.max(np.abs(np.array(got["taps"]) - st.taps)) <= 1e-5
    for k in ("snr_db", "snr_eff_db"):
        assert abs(got[k] - getattr(st, k)) <= 1e-4
    assert abs(got["phase_rate"] - st.phase_rate) <= 1e-6
    # noise only: both refuse
    Yn = _grid(np.zeros((n_hdr, CFG.n_data)), rng, H, -30.0)
    assert estimate_from_header(Yn, H0, CFG)[0] is None
    assert "header" not in tp.kernels.estimate_from_header(Yn.ravel().tolist(), H0.tolist(), L)


@pytest.mark.parametrize("n_side", [0, 2])
def test_payload_equalizer(tp, n_side):
    rng = np.random.default_rng(10 + n_side)
    n_payload = 4000
    sym = ((rng.standard_normal(n_payload) + 1j * rng.standard_normal(n_payload)) / np.sqrt(2)).astype(np.complex64)
    n_rows = -(-n_payload // CFG.n_data)
    pay = np.zeros(n_rows * CFG.n_data, np.complex64)
    pay[:n_payload] = sym
    rows = framing.spread(pay, CFG.n_data).reshape(n_rows, CFG.n_data)
    side = np.sign(rng.standard_normal((n_side, CFG.n_data)))
    H = _channel(np.random.default_rng(10))      # one channel without deep fades for both cases
    Y = _grid(np.concatenate([side, rows]) if n_side else rows, rng, H, 20.0, 0.002)
    nv = 10 ** (-20 / 10)
    st = ChannelState(taps=H.astype(np.complex64), noise_var=nv, snr_db=20, snr_eff_db=20, phase_end=0, phase_rate=0)
    ref, diag = equalize_payload(Y, st, n_payload, CFG, n_side=n_side)
    got, got_side, got_diag = tp.kernels.equalize_payload(Y.ravel().tolist(), st.taps.tolist(), nv, n_payload,
                                                          cpp_blocks.layout(CFG), n_side,
                                                          framing._signs(CFG.n_data).tolist())
    got = np.array(got)
    rms = np.sqrt(np.mean(np.abs(ref) ** 2))
    assert np.max(np.abs(got - ref)) <= 1e-5 * rms
    assert 10 * np.log10(np.mean(np.abs(sym) ** 2) / np.mean(np.abs(got - sym) ** 2)) > 15   # it equalises
    for k in ("snr_eff_db", "pilot_snr_db", "timing_drift_samples_per_symbol", "phase_rate_rad_per_symbol"):
        assert abs(got_diag[k] - diag[k]) <= 1e-4, k
    if n_side:
        assert np.max(np.abs(np.array(got_side) - diag["side_symbols"])) <= 1e-5
    else:
        assert got_side == []


def test_side_info_decoder_block():
    from testbed.gr.pmtutil import dict_to_py, to_pmt
    from testbed.gr.side_info_decoder import side_info_decoder

    hb, wb = rate_block_grid(64, 96)
    levels = np.arange(hb * wb).reshape(hb, wb) % 8
    side = SideInfo(kb_index=3, levels=levels, kb_hash=0x1234)
    sym = sideinfo.modulate(side, CFG.n_data)
    blk = side_info_decoder()
    got = []
    blk.message_port_pub = lambda port, msg: got.append(msg)
    meta = {"h_height": 64, "h_width": 96, "h_side_info_len": side_info_bytes(hb, wb), "snr_db": 10.0,
            "side_symbols": sym}
    data = to_pmt(np.ones(5, np.complex64))
    blk.handle(pmt.cons(to_pmt(meta), data))
    assert len(got) == 1 and blk.frames == 1
    d = dict_to_py(pmt.car(got[0]))
    assert d["side_kb_index"] == 3 and d["side_kb_hash"] == 0x1234 and d["side_levels"] == levels.ravel().tolist()
    assert "side_symbols" not in d
    # corrupted side information: dropped and counted
    meta["side_symbols"] = -sym
    blk.handle(pmt.cons(to_pmt(meta), data))
    assert len(got) == 1 and blk.side_errors == 1
    # no side information: passed through as it came
    plain = pmt.cons(to_pmt({"snr_db": 1.0}), data)
    blk.handle(plain)
    assert got[-1] is plain or pmt.equal(got[-1], plain)


def test_layout_is_checked(tp):
    L = cpp_blocks.layout(CFG)
    L.header_perm = L.header_perm[:-1]
    with pytest.raises(ValueError, match="header_perm"):
        L.validate()


def test_fast_atan2_against_numpy(tp):
    """The S&C metric's phase (polynomial atan2): within 5e-7 rad over 16 decades of magnitude,
    on the axes, at zero and on the diagonals."""
    rng = np.random.default_rng(0)
    z = (rng.standard_normal(100_000) + 1j * rng.standard_normal(100_000)) * 10.0 ** rng.uniform(-8, 8, 100_000)
    edge = [0, 1, -1, 1j, -1j, 1 + 1j, -1 - 1j, 1 - 1j, -1 + 1j, 1e-30, -1e-30j, 3.0]
    z = np.concatenate([z, edge]).astype(np.complex64)
    a = np.array(tp.kernels.atan2(z.tolist()), np.float64)
    err = np.angle(np.exp(1j * (a - np.angle(z).astype(np.float64))))
    assert np.max(np.abs(err)) <= 5e-7
    assert a[-12] == 0.0 and np.all(np.abs(a) <= np.pi + 1e-6)
