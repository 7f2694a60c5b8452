"""Header decoder (adapter of :func:`testbed.phy.equalizer.estimate_from_header`).

Input ``in``: a PDU of the header OFDM symbols after the FFT and GNU Radio's channel estimator
(metadata carries ``ofdm_sync_chan_taps``, ``ofdm_sync_carr_offset`` and ``sc_cfo``). Output
``header_data`` to the header/payload demux: a dict with ``frame_len`` (payload OFDM symbols)
and everything the payload equaliser needs (it comes back as tags on the payload), or False
when the CRC fails or the frame is longer than this receiver's ``payload_symbols_per_frame``
allows (its buffers could not hold it: the demux would drop it; counted in ``too_long``, with a
warning). Output ``verdict`` to the frame detector: whether the header was read and, if so, how
long the frame is (a too-long frame is still skipped whole, not searched for preambles).
"""
from __future__ import annotations

import logging

import numpy as np
import pmt
from gnuradio import gr

from ..phy import framing
from ..phy.config import OfdmConfig
from ..phy.equalizer import align, estimate_from_header
from .pmtutil import split_pdu, to_pmt

log = logging.getLogger(__name__)


class header_decoder(gr.basic_block):
    def __init__(self, cfg: OfdmConfig):
        gr.basic_block.__init__(self, name="header_decoder", in_sig=None, out_sig=None)
        self.cfg = cfg
        self.ok = 0
        self.failed = 0
        self.too_long = 0      # headers that passed the CRC but announce a frame this receiver cannot buffer
        self.message_port_register_in(pmt.intern("in"))
        self.message_port_register_out(pmt.intern("header_data"))
        self.message_port_register_out(pmt.intern("verdict"))
        self.set_msg_handler(pmt.intern("in"), self.handle)

    def handle(self, msg):
        cfg = self.cfg
        try:
            meta, data = split_pdu(msg)
            Y = np.asarray(data, np.complex64).reshape(-1, cfg.fft_len)
            off = int(meta.get("ofdm_sync_carr_offset", 0))
            # the estimator's taps are already carrier-aligned; the symbols are not
            taps = np.asarray(meta.get("ofdm_sync_chan_taps", np.ones(cfg.fft_len)), np.complex64)
            h, st, why = estimate_from_header(align(Y, off, cfg), taps, cfg)
        except Exception as e:  # never let a bad burst stop the receiver
            h, why = None, f"{type(e).__name__}: {e}"
        if h is None:
            self.failed += 1
            log.debug("header rejected: %s", why)
            self._reject()
            return
        frame_len = framing.payload_ofdm_symbols(h.n_payload, cfg, h.side_info_len)
        n_hdr = Y.shape[0]
        frame_samples = (2 + n_hdr + frame_len) * cfg.symbol_len
        if frame_len > cfg.max_payload_ofdm_symbols():
            self.too_long += 1
            log.warning("frame %d of image %d dropped: %d payload OFDM symbols, this receiver buffers at most %d "
                        "(payload_symbols_per_frame=%d; the transmitter's is larger)", h.frame_index, h.image_id,
                        frame_len, cfg.max_payload_ofdm_symbols(), cfg.payload_symbols_per_frame)
            self.message_port_pub(pmt.intern("header_data"), pmt.PMT_F)
            # the header is valid: the frame detector still skips the frame (its payload must not
            # be taken for preambles)
            self.message_port_pub(pmt.intern("verdict"), to_pmt({"ok": True, "frame_samples": frame_samples}))
            return
        self.ok += 1
        sc = float(meta.get("sc_cfo", 0.0))
        cfo_sub = off + sc + st.phase_rate / (2 * np.pi) * cfg.fft_len / cfg.symbol_len
        reply = {
            "frame_len": frame_len,
            **{f"h_{k}": v for k, v in h.as_dict().items()},
            "eq_taps": st.taps,
            "eq_noise": st.noise_var,
            "eq_snr_db": st.snr_db,
            "eq_snr_eff_db": st.snr_eff_db,
            "eq_carr_offset": off,
            "eq_cfo_hz": cfo_sub * cfg.subcarrier_spacing_hz,
        }
        self.message_port_pub(pmt.intern("header_data"), to_pmt(reply))
        self.message_port_pub(pmt.intern("verdict"), to_pmt({"ok": True, "frame_samples": frame_samples}))

    def _reject(self) -> None:
        self.message_port_pub(pmt.intern("header_data"), pmt.PMT_F)
        self.message_port_pub(pmt.intern("verdict"), to_pmt({"ok": False}))
