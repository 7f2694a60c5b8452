"""Side-information decoder after the C++ payload equaliser (which hands a variable-rate frame's
side-information symbols on as ``side_symbols``; see :mod:`testbed.phy.sideinfo`).

Frames without side information pass through untouched. A frame whose side information fails
its CRC is dropped and counted, as the Python payload equaliser does.
"""
from __future__ import annotations

import logging

import pmt
from gnuradio import gr

from ..core.wire import rate_block_grid
from ..phy import sideinfo
from .pmtutil import dict_to_py, to_pmt

log = logging.getLogger(__name__)
_KEY = pmt.intern("side_symbols")


class side_info_decoder(gr.basic_block):
    def __init__(self):
        gr.basic_block.__init__(self, name="side_info_decoder", in_sig=None, out_sig=None)
        self.frames = 0
        self.side_errors = 0
        self.errors = 0
        self.message_port_register_in(pmt.intern("in"))
        self.message_port_register_out(pmt.intern("frames"))
        self.set_msg_handler(pmt.intern("in"), self.handle)

    def handle(self, msg):
        meta = pmt.car(msg)
        if not pmt.dict_has_key(meta, _KEY):
            self.frames += 1
            self.message_port_pub(pmt.intern("frames"), msg)
            return
        try:
            d = dict_to_py(meta)
            sym = d.pop("side_symbols")
            hb, wb = rate_block_grid(int(d["h_height"]), int(d["h_width"]))
            si = sideinfo.demodulate(sym, int(d["h_side_info_len"]), hb, wb)
        except sideinfo.SideInfoError as e:
            self.side_errors += 1
            log.info("frame dropped: %s", e)
            return
        except Exception as e:  # never fatal
            self.errors += 1
            log.warning("payload dropped: %s: %s", type(e).__name__, e)
            return
        d.update({"side_kb_index": si.kb_index, "side_kb_hash": si.kb_hash,
                  "side_levels": si.levels.reshape(-1).tolist(), "side_hb": hb, "side_wb": wb})
        self.frames += 1
        self.message_port_pub(pmt.intern("frames"), pmt.cons(to_pmt(d), pmt.cdr(msg)))
