"""Pure signal analysis for radio checks: the link-check reference, CFO and SNR from a capture,
and the xo_correction that cancels a measured CFO. No hardware, no GNU Radio."""
from __future__ import annotations

import numpy as np

COARSE_PERIOD = 16     # samples: the reference repeats a 16-sample QPSK word...
WORDS = 256            # ...256 times per cyclic buffer (4096 samples)
PLUTO_XO_NOMINAL = 40e6


def reference(seed: int = 0x11F0) -> np.ndarray:
    """The cyclic TX buffer of the link check and calibration: a QPSK word repeated, unit power."""
    rng = np.random.default_rng(seed)
    word = np.exp(1j * (np.pi / 4 + np.pi / 2 * rng.integers(0, 4, COARSE_PERIOD)))
    return np.tile(word, WORDS).astype(np.complex64)


def estimate_cfo_snr(rx: np.ndarray, fs: float, period: int = COARSE_PERIOD, long_lag: int = 64 * COARSE_PERIOD
                     ) -> dict:
    """CFO (Hz) and SNR (dB) of a capture of the periodic reference.

    Coarse CFO from the lag-``period`` autocorrelation (unambiguous within +-fs/(2*period), e.g.
    +-31 kHz at 1 MS/s: 13 ppm at 2.4 GHz), refined at lag ``long_lag`` after removing it. SNR from
    the difference between one period and the next (noise) against the total power.
    """
    x = np.asarray(rx, np.complex128)
    if x.size < 2 * long_lag + period:
        raise ValueError(f"capture of {x.size} samples is too short (need {2 * long_lag + period})")
    c1 = np.sum(x[period:] * np.conj(x[:-period]))
    cfo = np.angle(c1) * fs / (2 * np.pi * period)
    n = np.arange(x.size)
    y = x * np.exp(-2j * np.pi * cfo / fs * n)
    c2 = np.sum(y[long_lag:] * np.conj(y[:-long_lag]))
    cfo += np.angle(c2) * fs / (2 * np.pi * long_lag)
    z = x * np.exp(-2j * np.pi * cfo / fs * n)
    d = z[period:] - z[:-period]
    noise = float(np.mean(np.abs(d) ** 2) / 2)
    total = float(np.mean(np.abs(z) ** 2))
    sig = max(total - noise, 1e-20)
    return {"cfo_hz": float(cfo), "snr_db": float(10 * np.log10(sig / max(noise, 1e-20))),
            "power_dbfs": float(10 * np.log10(max(total, 1e-20)))}


def suggest_xo_correction(cfo_hz: float, lo_hz: float, current_xo_hz: float = PLUTO_XO_NOMINAL) -> float:
    """The receiver's xo_correction that cancels ``cfo_hz`` measured at ``lo_hz``.

    The receiver's LO is ``lo * xo_actual / xo_assumed``; it sees the transmitter ``cfo`` above
    its LO when its reference runs slow by ``cfo / lo``: its true reference is then
    ``xo_assumed * (1 - cfo / lo)``, which is what the Pluto's ``xo_correction`` should hold.
    """
    return float(current_xo_hz * (1.0 - cfo_hz / lo_hz))
