"""Receiver signal processing after the FFT, for analog payloads (numpy).

GNU Radio's decision-directed equalisers need a constellation and its static one does not track
the common phase, so the analog payload is equalised here:

1. **Header as training.** The header is decoded with the preamble channel estimate and pilot
   phase tracking; once its CRC passes every header symbol is known, and the channel is
   re-estimated from the second sync symbol plus all header symbols, then smoothed by projecting
   it onto the delays a cyclic prefix can hold (noise on the estimate drops by about
   ``taps / carriers``).
2. **SNR** per frame from the residual of the known header symbols (degrees of freedom
   corrected): ``mean |H|^2 / N0``, i.e. Es/N0 per sub-carrier, the SNR the codec is trained for.
3. **Payload**: per OFDM symbol, a common phase and a phase slope across carriers (residual CFO,
   sample-clock offset) from the pilots; the slope is fitted linearly over the frame and the
   phase smoothed over a few symbols; then MMSE per carrier, de-spreading (see
   :func:`testbed.phy.framing.spread`) and unbiasing. The effective SNR after this is what the
   decoder is told.

Frequency-domain arrays are ``[n_symbols, fft_len]`` in shifted order (see
:mod:`testbed.phy.config`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import header as hdr
from .config import OfdmConfig


@dataclass
class ChannelState:
    taps: np.ndarray         # [fft_len] channel on each bin (shifted order), after carrier alignment
    noise_var: float         # N0 per sub-carrier (same units as |taps|^2)
    snr_db: float            # mean |H|^2 / N0 over the used carriers
    snr_eff_db: float        # post zero-forcing SNR: 1 / mean(N0 / |H|^2)
    phase_end: float         # common phase at the last header symbol (rad)
    phase_rate: float        # residual common-phase drift (rad per OFDM symbol)


def align(Y: np.ndarray, carr_offset: int, cfg: OfdmConfig | None = None) -> np.ndarray:
    """Undo an integer carrier offset: carrier k was received on bin k + carr_offset.

    With ``cfg`` (and ``Y`` of shape [n_symbols, fft_len]) the phase that such an offset adds
    from one OFDM symbol to the next (``2*pi*offset*cp_len/fft_len``, the cyclic prefix) is
    removed as well, so that only the residual fractional offset is left to the pilot tracking.
    """
    if not carr_offset:
        return Y
    Y = np.roll(Y, -int(carr_offset), axis=-1)
    if cfg is not None and Y.ndim == 2:
        s = np.arange(Y.shape[0])
        Y = Y * np.exp(-2j * np.pi * carr_offset * cfg.cp_len * s / cfg.fft_len)[:, None]
    return Y


def _delay_projector(cfg: OfdmConfig, centre: int = 0) -> np.ndarray:
    """Projection of a per-carrier channel onto delays centre-cp/2 .. centre+cp (samples)."""
    k = cfg.carriers.astype(np.float64)
    delays = np.arange(centre - (cfg.cp_len // 2), centre + cfg.cp_len + 1, dtype=np.float64)
    F = np.exp(-2j * np.pi * np.outer(k, delays) / cfg.fft_len)
    return F @ np.linalg.pinv(F)


_PROJ: dict[tuple, np.ndarray] = {}


def channel_delay(H_used: np.ndarray, cfg: OfdmConfig) -> int:
    """Where the channel's energy sits in delay (samples): the centre of the window
    ``centre-cp/2 .. centre+cp`` used by :func:`smooth_channel`. 0 (the nominal timing) unless
    another window holds clearly more energy, as when Schmidl & Cox timing was off."""
    grid = np.zeros(cfg.fft_len, np.complex128)
    grid[cfg.carriers % cfg.fft_len] = H_used
    profile = np.abs(np.fft.ifft(grid)) ** 2          # delay profile, index = delay mod fft_len
    width = cfg.cp_len + cfg.cp_len // 2 + 1
    ext = np.concatenate([profile, profile[: width - 1]])
    e = np.convolve(ext, np.ones(width), mode="valid")[: cfg.fft_len]   # e[j]: delays j..j+width-1
    nominal = (-(cfg.cp_len // 2)) % cfg.fft_len
    j = int(np.argmax(e))
    if e[j] < 1.25 * e[nominal]:       # not clearly better: keep the nominal window
        return 0
    d = j + cfg.cp_len // 2            # window start -> centre
    d = d % cfg.fft_len
    return d - cfg.fft_len if d >= cfg.fft_len // 2 else d


def smooth_channel(H_used: np.ndarray, cfg: OfdmConfig, centre: int | None = None) -> np.ndarray:
    """De-noise a per-carrier channel estimate by keeping only delays a prefix can hold, around
    ``centre`` (default: found from the estimate itself, see :func:`channel_delay`)."""
    if centre is None:
        centre = channel_delay(H_used, cfg)
    centre = int(np.clip(centre, -cfg.fft_len // 4, cfg.fft_len // 4))
    # windows near the default (the usual case) share a cached projector
    key = (cfg.fft_len, cfg.cp_len, cfg.occupied, 0 if abs(centre) <= cfg.cp_len // 4 else centre)
    if key not in _PROJ:
        _PROJ[key] = _delay_projector(cfg, key[3])
        if len(_PROJ) > 64:
            _PROJ.pop(next(iter(_PROJ)))
    return _PROJ[key] @ H_used


def n_delay_taps(cfg: OfdmConfig) -> int:
    return cfg.cp_len + cfg.cp_len // 2 + 1


def _pilot_phase(Y: np.ndarray, H: np.ndarray, cfg: OfdmConfig) -> np.ndarray:
    """Per-symbol common phase from the pilots, [n_symbols]."""
    pb = cfg.bins(cfg.pilot_carriers)
    z = Y[:, pb] * np.conj(H[pb] * cfg.pilot_symbols)[None, :]
    return np.angle(z.sum(axis=1))


def estimate_from_header(Yh: np.ndarray, H0: np.ndarray, cfg: OfdmConfig
                         ) -> tuple[hdr.FrameHeader | None, ChannelState | None, str]:
    """Decode the header symbols ``Yh`` [n_hdr, fft_len] (carrier-aligned) with the preamble
    estimate ``H0``; on success return the header and the refined channel state."""
    n_hdr = hdr.header_ofdm_symbols(cfg.header_repetition, cfg.n_data)
    if Yh.shape[0] < n_hdr:
        return None, None, f"{Yh.shape[0]} header symbols, expected {n_hdr}"
    Yh = Yh[:n_hdr]
    ub = cfg.bins(cfg.carriers)
    H0s = np.zeros(cfg.fft_len, np.complex128)
    H0s[ub] = smooth_channel(np.asarray(H0, np.complex128)[ub], cfg)   # de-noised preamble estimate
    H0 = np.where(np.abs(H0s) > 1e-12, H0s, 1e-12)
    db = cfg.bins(cfg.data_carriers)
    phi = _pilot_phase(Yh, H0, cfg)
    soft = (Yh[:, db] * np.exp(-1j * phi)[:, None] / H0[db][None, :]).ravel()
    # scale for the Viterbi metric: weight by |H|^2 (maximum-ratio) so faded carriers count less
    w = np.tile(np.abs(H0[db]) ** 2, n_hdr)
    try:
        h = hdr.demodulate(soft.real * w, cfg.header_repetition)
    except hdr.HeaderError as e:
        return None, None, str(e)
    # -- header as training ------------------------------------------------------------------
    X = np.zeros((n_hdr, cfg.fft_len), np.complex128)
    X[:, db] = hdr.modulate(h, cfg.header_repetition, cfg.n_data).reshape(n_hdr, cfg.n_data)
    X[:, cfg.bins(cfg.pilot_carriers)] = cfg.pilot_symbols[None, :]
    H = H0.astype(np.complex128)
    for _ in range(2):
        phi = np.angle((Yh[:, ub] * np.conj(H[ub] * X[:, ub])).sum(axis=1))
        Yd = Yh * np.exp(-1j * phi)[:, None]
        num = (Yd[:, ub] * np.conj(X[:, ub])).sum(axis=0) + H0[ub]   # + the sync-2 estimate
        den = (np.abs(X[:, ub]) ** 2).sum(axis=0) + 1.0
        Hu = smooth_channel(num / den, cfg)
        H = np.zeros(cfg.fft_len, np.complex128)
        H[ub] = Hu
    resid = Yd[:, ub] - H[ub][None, :] * X[:, ub]
    n = resid.size
    dof = n_delay_taps(cfg) + n_hdr
    noise = float((np.abs(resid) ** 2).sum() / max(1, n - dof))
    # the smoothed estimate still carries noise of about dof_taps/(n_hdr+1) per carrier, which
    # the residual does not see; it is small and left out of the SNR (which is the channel's)
    p = np.abs(Hu) ** 2
    noise = max(noise, 1e-15)
    snr = float(p.mean() / noise)
    snr_eff = float(1.0 / np.mean(noise / np.maximum(p, 1e-15)))
    s = np.arange(n_hdr)
    rate = float(np.polyfit(s, np.unwrap(phi), 1)[0]) if n_hdr > 1 else 0.0
    st = ChannelState(taps=H.astype(np.complex64), noise_var=noise, snr_db=10 * math.log10(snr),
                      snr_eff_db=10 * math.log10(max(snr_eff, 1e-15)), phase_end=float(phi[-1]),
                      phase_rate=rate)
    return h, st, "ok"


def equalize_payload(Yp: np.ndarray, st: ChannelState, n_payload: int, cfg: OfdmConfig,
                     phase_window: int = 5, n_side: int = 0) -> tuple[np.ndarray, dict]:
    """Equalise payload symbols ``Yp`` [n_syms, fft_len] (carrier-aligned) -> complex [n_payload].

    Returns the symbols and diagnostics (pilot SNR, fitted timing drift). With ``n_side`` > 0 the
    first ``n_side`` OFDM symbols are a BPSK side-information block (not spread); its equalised
    symbols are returned in ``diag["side_symbols"]``."""
    n_syms = n_side + -(-n_payload // cfg.n_data)
    if Yp.shape[0] < n_syms:
        raise ValueError(f"{Yp.shape[0]} payload OFDM symbols, expected {n_syms}")
    Yp = Yp[:n_syms].astype(np.complex128)
    H = st.taps.astype(np.complex128)
    pc = cfg.pilot_carriers
    pb = cfg.bins(pc)
    # maximum-ratio weighting: a pilot in a deep fade contributes little (dividing by |H|^2
    # instead would let its noise dominate the phase estimates)
    z = Yp[:, pb] * np.conj(H[pb] * cfg.pilot_symbols)[None, :]
    # phase slope across carriers (timing drift from a sample-clock offset). The channel was
    # estimated at the header, so the slope is zero there and grows linearly: slope(s) =
    # b * (s - s_ref). Each symbol's slope is read from pilot pairs half the band apart (a long
    # baseline: precise), and b is a one-parameter weighted fit over the frame. The phase over
    # that baseline wraps once the drift reaches fft_len / (2 * baseline) samples (1.1 samples:
    # 200 OFDM symbols at 20 ppm), so the fit grows over the frame: b from the first 8 symbols,
    # then each doubled span read relative to what b predicts there, and b refined.
    m = max(1, pc.size // 2)
    base = m * cfg.pilot_spacing                          # carriers between the paired pilots
    r = (z[:, m:] * np.conj(z[:, :-m])).sum(axis=1)
    s = np.arange(n_syms, dtype=np.float64)
    n_hdr = hdr.header_ofdm_symbols(cfg.header_repetition, cfg.n_data)
    t = s - (-(n_hdr + 1) / 2.0)                          # symbols since the header's centre
    wts = np.abs(r)
    b, span = 0.0, 8
    while True:
        tt, ww = t[:span], wts[:span]
        resid = np.angle(r[:span] * np.exp(-1j * b * tt * base)) / base   # rad per carrier, after b
        b += float(np.sum(ww * tt * resid) / max(np.sum(ww * tt * tt), 1e-12))
        if span >= n_syms:
            break
        span *= 2
    slope = b * t
    zc = z * np.exp(-1j * slope[:, None] * pc[None, :])
    c = zc.sum(axis=1)
    # common phase: a linear trend (residual CFO) fitted over the frame, plus a short moving
    # average of what is left (phase noise); the trend is removed before averaging so that the
    # average is not biased by the rotation at the frame edges
    trend = np.zeros(n_syms)
    if n_syms > 1:
        rate = np.angle(np.sum(c[1:] * np.conj(c[:-1])))
        trend = rate * s
    c = c * np.exp(-1j * trend)
    if phase_window > 1 and n_syms > 1:
        c = np.convolve(c, np.ones(min(phase_window, n_syms)), mode="same")
    phase = np.angle(c) + trend
    db = cfg.bins(cfg.data_carriers)
    rot = np.exp(-1j * (phase[:, None] + slope[:, None] * cfg.data_carriers[None, :]))
    # MMSE per carrier, then de-spreading, then unbiasing: with spreading, a faded carrier's
    # noise is shared by all symbols of its OFDM symbol, so zero-forcing would let deep fades
    # dominate; MMSE (as in single-carrier FDE) keeps the effective SNR near the mean SNR.
    Hd = H[db]
    g = np.abs(Hd) ** 2
    W = np.conj(Hd) / (g + st.noise_var)
    mu = float(np.mean(g / (g + st.noise_var)))
    X = Yp[:, db] * rot * W[None, :] / mu
    from .framing import despread

    side = X[:n_side].ravel()
    out = despread(X[n_side:].ravel(), cfg.n_data)[:n_payload]
    # pilot residual SNR (diagnostic)
    gp = np.maximum(np.abs(H[pb]) ** 2, 1e-15)
    pr = zc * np.exp(-1j * phase)[:, None] / gp[None, :] - 1.0
    pilot_noise = float(np.mean(np.abs(pr) ** 2 * gp[None, :]))
    snr_eff = mu / max(1.0 - mu, 1e-12)
    diag = {
        "snr_eff_db": 10 * math.log10(snr_eff),
        "pilot_snr_db": 10 * math.log10(float(np.mean(np.abs(H[pb]) ** 2)) / max(pilot_noise, 1e-15)),
        "timing_drift_samples_per_symbol": float(-b * cfg.fft_len / (2 * np.pi)),
        "phase_rate_rad_per_symbol": float(np.polyfit(s, np.unwrap(phase), 1)[0]) if n_syms > 1 else 0.0,
    }
    if n_side:
        diag["side_symbols"] = side.astype(np.complex64)
    return out, diag
