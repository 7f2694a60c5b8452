"""Payload equaliser (adapter of :func:`testbed.phy.equalizer.equalize_payload`).

Input ``in``: a PDU of one frame's payload OFDM symbols after the FFT; its metadata holds what
the header decoder sent to the demux (channel, SNR, JSCC header). Output ``frames``: a PDU with
the equalised analog symbols and the frame's metadata.
"""
from __future__ import annotations

import logging

import numpy as np
import pmt
from gnuradio import gr

from ..phy.config import OfdmConfig
from ..phy.equalizer import ChannelState, align, equalize_payload
from .pmtutil import pdu, split_pdu

log = logging.getLogger(__name__)


class payload_equalizer(gr.basic_block):
    def __init__(self, cfg: OfdmConfig):
        gr.basic_block.__init__(self, name="payload_equalizer", in_sig=None, out_sig=None)
        self.cfg = cfg
        self.frames = 0
        self.errors = 0
        self.message_port_register_in(pmt.intern("in"))
        self.message_port_register_out(pmt.intern("frames"))
        self.set_msg_handler(pmt.intern("in"), self.handle)

    def handle(self, msg):
        cfg = self.cfg
        try:
            meta, data = split_pdu(msg)
            h = {k[2:]: v for k, v in meta.items() if k.startswith("h_")}
            st = ChannelState(taps=np.asarray(meta["eq_taps"], np.complex64), noise_var=float(meta["eq_noise"]),
                              snr_db=float(meta["eq_snr_db"]), snr_eff_db=float(meta["eq_snr_eff_db"]),
                              phase_end=0.0, phase_rate=0.0)
            Y = align(np.asarray(data, np.complex64).reshape(-1, cfg.fft_len), int(meta["eq_carr_offset"]), cfg)
            sym, diag = equalize_payload(Y, st, int(h["n_payload"]), cfg)
        except Exception as e:  # a malformed frame is counted and dropped, never fatal
            self.errors += 1
            log.warning("payload dropped: %s: %s", type(e).__name__, e)
            return
        self.frames += 1
        out = {**{f"h_{k}": v for k, v in h.items()}, "snr_db": float(meta["eq_snr_db"]),
               "cfo_hz": float(meta.get("eq_cfo_hz", float("nan"))), **diag}
        self.message_port_pub(pmt.intern("frames"), pdu(out, sym))
