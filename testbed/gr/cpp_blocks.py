"""The C++ PHY blocks (out-of-tree module ``gnuradio.testbedphy``, sources in gr-testbedphy/,
built by scripts/setup.sh) and what they are constructed from.

The receiver and transmitter use them when the module is installed (``impl="auto"``) and the
Python blocks otherwise; ``TESTBED_PHY_IMPL=python`` (or ``cpp``) forces one. The Python blocks
stay the reference: tests feed both the same samples.
"""
from __future__ import annotations

import logging
import os
from functools import lru_cache

import numpy as np


from ..phy import fec, framing
from ..phy import header as hdr
from ..phy.config import OfdmConfig
from ..phy.equalizer import _delay_projector

log = logging.getLogger(__name__)
IMPLS = ("auto", "cpp", "python")


@lru_cache(maxsize=1)
def module():
    """The imported C++ module, or None (why: :func:`unavailable_reason`)."""
    try:
        from gnuradio import testbedphy
    except ImportError as e:
        module.why = f"{type(e).__name__}: {e}"
        return None
    return testbedphy


def unavailable_reason() -> str | None:
    return None if module() is not None else getattr(module, "why", "not installed")


def resolve_impl(impl: str = "auto") -> str:
    """'cpp' or 'python' for ``impl`` (argument, else $TESTBED_PHY_IMPL, else auto)."""
    if impl == "auto":
        impl = os.environ.get("TESTBED_PHY_IMPL", "auto") or "auto"
    if impl not in IMPLS:
        raise ValueError(f"PHY implementation {impl!r}: expected one of {', '.join(IMPLS)} "
                         f"(argument or $TESTBED_PHY_IMPL)")
    if impl == "auto":
        return "cpp" if module() is not None else "python"
    if impl == "cpp" and module() is None:
        raise RuntimeError(f"the C++ PHY module gnuradio.testbedphy is not installed ({unavailable_reason()}); "
                           f"run ./scripts/setup.sh")
    return impl


def layout(cfg: OfdmConfig):
    """The C++ blocks' view of ``cfg``: carriers, projector, header interleavers and padding."""
    m = module()
    L = m.phy_layout()
    L.fft_len, L.cp_len, L.pilot_spacing = cfg.fft_len, cfg.cp_len, cfg.pilot_spacing
    L.header_repetition = cfg.header_repetition
    n_hdr = hdr.header_ofdm_symbols(cfg.header_repetition, cfg.n_data)
    L.header_ofdm_symbols = n_hdr
    L.max_payload_ofdm_symbols = cfg.max_payload_ofdm_symbols()
    L.subcarrier_spacing_hz = float(cfg.subcarrier_spacing_hz)
    L.used_carriers = cfg.carriers.tolist()
    L.pilot_carriers = cfg.pilot_carriers.tolist()
    L.data_carriers = cfg.data_carriers.tolist()
    L.pilot_symbols = cfg.pilot_symbols.tolist()
    P = _delay_projector(cfg, 0)
    L.projector = P.ravel().tolist()
    # P = Q Q^H with Q orthonormal (rank: the delays it keeps): smoothing in two thin products
    w, V = np.linalg.eigh(P)
    Q = V[:, w > 0.5]
    L.projector_basis, L.projector_rank = Q.ravel().tolist(), int(Q.shape[1])
    total = n_hdr * cfg.n_data
    for bits, suffix in ((hdr.N_BITS, ""), (hdr.N_BITS_V1, "_v1")):
        n = fec.coded_length(bits, cfg.header_repetition)
        if n > total:      # a version-1 header that does not fill the same OFDM symbols: not understood
            continue
        setattr(L, "header_bits" + suffix, bits)
        setattr(L, "header_perm" + suffix, fec.interleaver(n).tolist())
        setattr(L, "header_pad" + suffix, hdr._padding(total - n).tolist())
    L.validate()
    return L


MIN_CHUNK = 2048   # samples per call at least: a call per few samples costs more in the scheduler than the work


def sc_metric(cfg: OfdmConfig):
    """The metric and, where the detector (threshold cfg.sync_threshold) can read it, the phase."""
    m = module().sc_metric(cfg.fft_len, float(cfg.sync_threshold))
    m.set_min_noutput_items(MIN_CHUNK)
    return m


def sc_detector(cfg: OfdmConfig, header_samples: int | None = None, data_delay: int | None = None,
                timeout_s: float = 2.0):
    """C++ twin of :class:`testbed.gr.sc_detector.sc_detector` (the same parameters; by default
    those :class:`testbed.gr.ofdm_rx.ofdm_rx` uses: the sync words and the header, one OFDM symbol
    of delay)."""
    from .sc_detector import detector_params

    if header_samples is None:
        header_samples = (2 + hdr.header_ofdm_symbols(cfg.header_repetition, cfg.n_data)) * cfg.symbol_len
    if data_delay is None:
        data_delay = cfg.symbol_len
    p = detector_params(cfg, header_samples, data_delay)
    fine = p.pop("fine")
    m = 2 * (int(cfg.max_carrier_offset) // 2)     # the even integer CFOs FineTiming searches
    d = module().sc_detector(**p, preamble=fine.ref.tolist(), fft_len=cfg.fft_len, search=fine.search,
                             carrier_shifts=list(range(-m, m + 1, 2)), timeout_s=timeout_s)
    d.set_min_noutput_items(MIN_CHUNK)
    return d


def header_decoder(cfg: OfdmConfig):
    return module().header_decoder(layout(cfg))


def payload_equalizer(cfg: OfdmConfig):
    return module().payload_equalizer(layout(cfg), framing._signs(cfg.n_data).tolist())


def ofdm_demodulator(cfg: OfdmConfig):
    """The receiver after the detector in one block: CFO correction, FFT, preamble channel
    estimate, header decoding and payload equalisation (what ofdm_rx's reference chain does from
    the delay to the payload equaliser)."""
    return module().ofdm_demodulator(layout(cfg), cfg.sync_word1.tolist(), cfg.sync_word2.tolist(),
                                     int(cfg.max_carrier_offset), framing._signs(cfg.n_data).tolist())


def ofdm_modulator(cfg: OfdmConfig):
    """The whole transmitter (C++ twin of the in-tree chain in :class:`testbed.gr.ofdm_tx.ofdm_tx`)."""
    return module().ofdm_modulator(
        fft_len=cfg.fft_len, cp_len=cfg.cp_len, data_carriers=cfg.data_carriers.tolist(),
        pilot_carriers=cfg.pilot_carriers.tolist(), pilot_symbols=cfg.pilot_symbols.tolist(),
        sync_word1=cfg.sync_word1.tolist(), sync_word2=cfg.sync_word2.tolist(), gain=cfg.tx_gain(),
        clip=cfg.clip, gap=cfg.gap_samples, max_symbols=cfg.max_frame_symbols())


def rx_monitor(samp_rate: float, slack: int):
    """Counts the samples a radio source lost (see :mod:`testbed.link.air`)."""
    return module().rx_monitor(float(samp_rate), int(slack))
