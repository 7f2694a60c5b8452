"""Payload equaliser (adapter of :func:`testbed.phy.equalizer.equalize_payload`).

Input ``in``: a PDU of one frame's payload OFDM symbols after the FFT; its metadata holds what
the header decoder sent to the demux (channel, SNR, JSCC header). Output ``frames``: a PDU with
the equalised analog symbols and the frame's metadata, including the decoded side information
(rate map, KB index) of variable-rate images; a frame whose side information fails its CRC is
dropped and counted.
"""
from __future__ import annotations

import logging

import numpy as np
import pmt
from gnuradio import gr

from ..core.wire import rate_block_grid
from ..phy import sideinfo
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
        self.side_errors = 0   # frames whose side information failed its CRC
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
            side_len = int(h.get("side_info_len", 0))
            n_side = sideinfo.ofdm_symbols(side_len, cfg.n_data)
            sym, diag = equalize_payload(Y, st, int(h["n_payload"]), cfg, n_side=n_side)
            side = {}
            if side_len:
                hb, wb = rate_block_grid(int(h["height"]), int(h["width"]))
                si = sideinfo.demodulate(diag.pop("side_symbols"), side_len, hb, wb)
                side = {"side_kb_index": si.kb_index, "side_kb_hash": si.kb_hash,
                        "side_levels": si.levels.reshape(-1).tolist(),
                        "side_hb": hb, "side_wb": wb}
        except sideinfo.SideInfoError as e:
            self.side_errors += 1
            log.info("frame dropped: %s", e)
            return
        except Exception as e:  # a malformed frame is counted and dropped, never fatal
            self.errors += 1
            log.warning("payload dropped: %s: %s", type(e).__name__, e)
            return
        self.frames += 1
        out = {**{f"h_{k}": v for k, v in h.items()}, "snr_db": float(meta["eq_snr_db"]),
               "cfo_hz": float(meta.get("eq_cfo_hz", float("nan"))), **diag, **side}
        self.message_port_pub(pmt.intern("frames"), pdu(out, sym))
