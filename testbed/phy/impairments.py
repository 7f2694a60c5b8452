"""Channel impairments for the loopback channel: noise level, CFO, SCO, TDL multipath.

TDL profiles are 3GPP TR 38.901 Table 7.7.2-1 (TDL-A) and 7.7.2-3 (TDL-C): normalised delays
(multiply by the delay spread) and tap powers in dB. Each run draws one Rayleigh gain per tap
(block fading over the run) and resamples the profile to the sample rate with windowed-sinc
fractional delays; the taps are normalised to unit total power so the mean SNR is unchanged.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..core.checks import read_input
from .config import OfdmConfig

TDL = {
    "tdl-a": (
        [0.0, 0.3819, 0.4025, 0.5868, 0.4610, 0.5375, 0.6708, 0.5750, 0.7618, 1.5375, 1.8978, 2.2242,
         2.1718, 2.4942, 2.5119, 3.0582, 4.0810, 4.4579, 4.5695, 4.7966, 5.0066, 5.3043, 9.6586],
        [-13.4, 0.0, -2.2, -4.0, -6.0, -8.2, -9.9, -10.5, -7.5, -15.9, -6.6, -16.7, -12.4, -15.2, -10.8,
         -11.3, -12.7, -16.2, -18.3, -18.9, -16.6, -19.9, -29.7],
    ),
    "tdl-c": (
        [0.0, 0.2099, 0.2219, 0.2329, 0.2176, 0.6366, 0.6448, 0.6560, 0.6584, 0.7935, 0.8213, 0.9336,
         1.2285, 1.3083, 2.1704, 2.7105, 4.2589, 4.6003, 5.4902, 5.6077, 6.3065, 6.6374, 7.0427, 8.6523],
        [-4.4, -1.2, -3.5, -5.2, -2.5, 0.0, -2.2, -3.9, -7.4, -7.1, -10.7, -11.1, -5.1, -6.8, -8.7,
         -13.2, -13.9, -13.9, -15.8, -17.1, -16.0, -15.7, -21.6, -22.8],
    ),
}
MULTIPATH = ("none",) + tuple(TDL)


def noise_voltage(cfg: OfdmConfig, snr_db: float) -> float:
    """Complex noise RMS per sample giving Es/N0 = ``snr_db`` on each used sub-carrier for the
    transmitter's RMS level (``backoff_db`` below full scale)."""
    rms2 = 10 ** (-cfg.backoff_db / 10)
    return float(np.sqrt(rms2 * cfg.fft_len / cfg.carriers.size / 10 ** (snr_db / 10)))


def default_delay_spread_s(profile: str, cfg: OfdmConfig, fill: float = 0.5) -> float:
    """Delay spread that puts the profile's longest tap at ``fill`` x the cyclic prefix."""
    delays, _ = TDL[profile]
    return fill * cfg.cp_len / cfg.samp_rate / max(delays)


def tdl_taps(profile: str, delay_spread_s: float, samp_rate: float, rng: np.random.Generator,
             half_len: int = 4) -> np.ndarray:
    """FIR taps (complex, unit power) of one Rayleigh realisation of a TDL profile."""
    if profile not in TDL:
        raise ValueError(f"unknown multipath profile {profile!r}; valid: {', '.join(MULTIPATH)} or a taps file")
    delays, powers = TDL[profile]
    longest = max(delays) * delay_spread_s * samp_rate
    if not (math.isfinite(longest) and 0 <= longest <= MAX_TAPS):
        raise ValueError(f"delay spread {delay_spread_s * 1e9:g} ns: the {profile} profile's longest tap would be "
                         f"{longest:g} samples at {samp_rate:g} S/s (at most {MAX_TAPS})")
    d = np.asarray(delays) * delay_spread_s * samp_rate          # in samples
    g = np.sqrt(10 ** (np.asarray(powers) / 10) / 2) * (rng.standard_normal(len(d)) + 1j * rng.standard_normal(len(d)))
    n = int(np.ceil(d.max())) + 2 * half_len + 1
    t = np.arange(n) - half_len
    h = np.zeros(n, np.complex128)
    for di, gi in zip(d, g):
        x = t - di
        w = np.where(np.abs(x) <= half_len, 0.5 * (1 + np.cos(np.pi * x / (half_len + 1))), 0.0)
        h += gi * np.sinc(x) * w
    # drop the leading sinc tail before the first tap (it would be a pre-echo)
    h = h[half_len:]
    return (h / np.sqrt(np.sum(np.abs(h) ** 2))).astype(np.complex64)


MAX_TAPS = 4096     # taps of a taps file (a channel longer than this is no use with any cyclic prefix here)


def load_taps_file(path: str | Path) -> np.ndarray:
    """Taps from a text file: one tap per line, ``re im`` or ``re`` (``#`` comments allowed)."""
    p = Path(path)
    raw = read_input(p, "taps file")
    try:
        rows = [ln.split("#")[0].split() for ln in raw.decode("utf-8").splitlines()]
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not a text file of taps ('re im' per line, UTF-8)") from None
    taps = []
    for i, r in enumerate(rows, 1):
        if not r:
            continue
        try:
            v = [float(x) for x in r]
        except ValueError:
            raise ValueError(f"{p}:{i}: expected 're im' or 're', got {' '.join(r)[:60]!r}") from None
        if len(v) not in (1, 2):
            raise ValueError(f"{p}:{i}: expected 're im' or 're', got {len(v)} numbers")
        if not all(math.isfinite(x) and abs(x) <= 1e6 for x in v):
            raise ValueError(f"{p}:{i}: tap {' '.join(r)[:60]!r} must be finite numbers within +-1e6")
        taps.append(complex(v[0], v[1] if len(v) == 2 else 0.0))
        if len(taps) > MAX_TAPS:
            raise ValueError(f"{p}: more than {MAX_TAPS} taps")
    if not taps:
        raise ValueError(f"{p}: no taps")
    h = np.asarray(taps, np.complex64)
    e = float(np.sum(np.abs(h) ** 2))
    if e <= 0:
        raise ValueError(f"{p}: all taps are zero")
    return (h / np.sqrt(e)).astype(np.complex64)


def multipath_taps(spec: str, cfg: OfdmConfig, rng: np.random.Generator,
                   delay_spread_s: float | None = None) -> np.ndarray:
    if spec == "none":
        return np.ones(1, np.complex64)
    if spec in TDL:
        ds = delay_spread_s if delay_spread_s is not None else default_delay_spread_s(spec, cfg)
        return tdl_taps(spec, ds, cfg.samp_rate, rng)
    return load_taps_file(spec)
