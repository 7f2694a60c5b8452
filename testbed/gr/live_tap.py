"""``live_tap``: turns the receiver's frame PDUs into what the live view's QT GUI sinks plot.

In: ``frames`` (the OFDM RX's PDUs: equalised payload symbols, the channel estimate's
``snr_db`` in the metadata). Out, as PDUs that ``qtgui.const_sink_c`` and ``qtgui.time_sink_f``
take on their ``in`` message port:

* ``symbols``: each frame's equalised payload (analog JSCC symbols or QAM points), at most
  ``max_symbols`` of them;
* ``snr``: the per-frame SNR estimates so far (the latest ``history`` frames), oldest first.

With ``enabled`` false it passes nothing on (a headless run of a flowgraph that has the sinks).
"""
from __future__ import annotations

from collections import deque

import numpy as np
import pmt
from gnuradio import gr

from .pmtutil import split_pdu


class live_tap(gr.basic_block):
    def __init__(self, max_symbols: int = 1024, history: int = 200, enabled: bool = True):
        gr.basic_block.__init__(self, name="live_tap", in_sig=None, out_sig=None)
        if int(max_symbols) < 1 or int(history) < 2:
            raise ValueError(f"live_tap: max_symbols must be >= 1 and history >= 2 (got {max_symbols}, {history})")
        self.max_symbols, self.enabled = int(max_symbols), bool(enabled)
        self.snr_db: deque[float] = deque(maxlen=int(history))
        self.frames = 0
        self.message_port_register_in(pmt.intern("frames"))
        self.message_port_register_out(pmt.intern("symbols"))
        self.message_port_register_out(pmt.intern("snr"))
        self.set_msg_handler(pmt.intern("frames"), self._handle)

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = bool(enabled)

    def _handle(self, msg) -> None:
        if not self.enabled:
            return
        try:
            meta, data = split_pdu(msg)
            sym = np.asarray(data, np.complex64)[: self.max_symbols]
            snr = float(meta.get("snr_db", float("nan")))
        except (ValueError, TypeError):
            return                      # not a frame PDU: nothing to plot
        self.frames += 1
        if sym.size:
            self.message_port_pub(pmt.intern("symbols"),
                                  pmt.cons(pmt.PMT_NIL, pmt.init_c32vector(sym.size, sym.tolist())))
        if np.isfinite(snr):
            self.snr_db.append(snr)
            h = list(self.snr_db)
            self.message_port_pub(pmt.intern("snr"), pmt.cons(pmt.PMT_NIL, pmt.init_f32vector(len(h), h)))
