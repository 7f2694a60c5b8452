"""The analog equaliser on synthetic frequency-domain frames (no GNU Radio)."""
import numpy as np
import pytest

from testbed.phy import framing, header as hdr
from testbed.phy.config import OfdmConfig
from testbed.phy.equalizer import align, equalize_payload, estimate_from_header

CFG = OfdmConfig()


def _grid(frame_syms):
    n = frame_syms.size // CFG.n_data
    G = np.zeros((n, CFG.fft_len), np.complex128)
    G[:, CFG.bins(CFG.data_carriers)] = frame_syms.reshape(n, CFG.n_data)
    G[:, CFG.bins(CFG.pilot_carriers)] = CFG.pilot_symbols[None, :]
    return G


def _channel(rng, taps):
    k = np.arange(CFG.fft_len) - CFG.fft_len // 2
    H = sum(t * np.exp(-2j * np.pi * k * d / CFG.fft_len) for d, t in taps)
    return H


def _run(snr_db, rng, taps=((0, 1.0),), phase_rate=0.0, drift=0.0, n=3000):
    payload = ((rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2)).astype(np.complex64)
    h = hdr.FrameHeader(image_id=1, frame_index=0, frame_count=1, height=16, width=16 * 63, symbols_per_location=48,
                        n_payload=n, payload_offset=0, model_hash=5)
    G = _grid(framing.frame_symbols(h, payload, CFG))
    H = _channel(rng, taps)
    s = np.arange(G.shape[0])[:, None]
    k = (np.arange(CFG.fft_len) - CFG.fft_len // 2)[None, :]
    rot = np.exp(1j * (0.3 + phase_rate * s + 2 * np.pi * k * drift * s / CFG.fft_len))
    n0 = 10 ** (-snr_db / 10)
    noise = (rng.standard_normal(G.shape) + 1j * rng.standard_normal(G.shape)) * np.sqrt(n0 / 2)
    Y = H[None, :] * G * rot + noise
    used = CFG.bins(CFG.carriers)
    H0 = np.zeros(CFG.fft_len, np.complex128)   # LS estimate from a preamble symbol
    H0[used] = H[used] * np.exp(0.3j) + (rng.standard_normal(used.size) + 1j * rng.standard_normal(used.size)) * np.sqrt(n0 / 2)
    n_hdr = hdr.header_ofdm_symbols(CFG.header_repetition, CFG.n_data)
    got, st, why = estimate_from_header(Y[:n_hdr], H0, CFG)
    return h, got, st, why, Y[n_hdr:], payload


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_header_decodes_and_snr_estimate_is_within_half_a_db(snr_db):
    rng = np.random.default_rng(int(snr_db))
    h, got, st, why, _, _ = _run(snr_db, rng)
    assert got == h, why
    assert abs(st.snr_db - snr_db) < 0.5


def test_payload_equalised_to_within_half_a_db_of_the_channel_snr():
    rng = np.random.default_rng(3)
    h, got, st, _, Yp, payload = _run(15.0, rng, phase_rate=0.05, drift=0.002)
    out, diag = equalize_payload(Yp, st, h.n_payload, CFG)
    snr = 10 * np.log10(1 / np.mean(np.abs(out - payload) ** 2))
    assert snr > 14.5
    assert abs(diag["snr_eff_db"] - snr) < 0.7
    # the drift is found (sign: samples per OFDM symbol)
    assert diag["timing_drift_samples_per_symbol"] == pytest.approx(-0.002, abs=0.001)


@pytest.mark.parametrize("n_payload, drift", [(40000, 20e-6 * 288), (3000, 300e-6 * 288)])
def test_long_timing_drift_is_tracked(n_payload, drift):
    """The drift accumulated over a frame may exceed what the pilot pairs' phase holds before
    it wraps (1.1 samples): 20 ppm over a 40 000-symbol frame (206 OFDM symbols), or 300 ppm
    over a short one."""
    rng = np.random.default_rng(7)
    h, got, st, _, Yp, payload = _run(15.0, rng, drift=drift, n=n_payload)
    n_syms = -(-n_payload // CFG.n_data)
    assert drift * (n_syms + 3) > 1.15   # beyond the wrap
    out, diag = equalize_payload(Yp, st, h.n_payload, CFG)
    snr = 10 * np.log10(1 / np.mean(np.abs(out - payload) ** 2))
    assert snr > 14.5
    assert diag["timing_drift_samples_per_symbol"] == pytest.approx(-drift, rel=0.05)


def test_frequency_selective_channel_within_the_prefix():
    rng = np.random.default_rng(4)
    taps = ((0, 0.8), (3, 0.5j), (9, -0.3))
    h, got, st, why, Yp, payload = _run(20.0, rng, taps=taps)
    assert got == h, why
    out, diag = equalize_payload(Yp, st, h.n_payload, CFG)
    mse = np.mean(np.abs(out - payload) ** 2)
    assert abs(10 * np.log10(1 / mse) - diag["snr_eff_db"]) < 1.0   # the decoder is told the truth


def test_without_drift_tracking_the_same_frame_would_fail():
    """The pilot tracking matters: a strong phase drift destroys the payload without it."""
    rng = np.random.default_rng(5)
    h, got, st, _, Yp, payload = _run(20.0, rng, phase_rate=0.3)
    out, _ = equalize_payload(Yp, st, h.n_payload, CFG)
    assert 10 * np.log10(1 / np.mean(np.abs(out - payload) ** 2)) > 18
    naive = framing.despread((Yp[:, CFG.bins(CFG.data_carriers)] / st.taps[CFG.bins(CFG.data_carriers)]).ravel(),
                             CFG.n_data)[: h.n_payload]
    assert 10 * np.log10(1 / np.mean(np.abs(naive - payload) ** 2)) < 5


def test_noise_only_header_is_rejected():
    rng = np.random.default_rng(6)
    n_hdr = hdr.header_ofdm_symbols(CFG.header_repetition, CFG.n_data)
    Y = rng.standard_normal((n_hdr, CFG.fft_len)) + 1j * rng.standard_normal((n_hdr, CFG.fft_len))
    got, st, why = estimate_from_header(Y, np.ones(CFG.fft_len), CFG)
    assert got is None and st is None and why


def test_align_undoes_integer_offset():
    Y = np.arange(2 * CFG.fft_len, dtype=np.complex128).reshape(2, CFG.fft_len)
    Z = np.roll(Y, 2, axis=1)
    assert np.array_equal(align(Z, 2), Y)
