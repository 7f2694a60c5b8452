"""GNU Radio adapter of :class:`testbed.phy.syncgate.SyncGate`.

Inputs: 0 Schmidl & Cox fine CFO (float), 1 its trigger (byte). Outputs: the gated CFO (to the
frequency correction) and trigger (to the demux). Message input ``verdict``: a dict with
``ok`` and ``frame_samples`` from the header decoder. A timer releases the gate if no verdict
arrives (e.g. the stream ended inside a header).
"""
from __future__ import annotations

import threading

import numpy as np
import pmt
from gnuradio import gr

from ..phy.syncgate import HEADER, WAIT, SyncGate
from .pmtutil import dict_to_py


class sync_gate(gr.basic_block):
    def __init__(self, header_samples: int, margin: int, timeout_s: float = 2.0):
        gr.basic_block.__init__(self, name="sync_gate", in_sig=[np.float32, np.int8],
                                out_sig=[np.float32, np.int8])
        self.gate = SyncGate(header_samples, margin)
        self.timeout_s = timeout_s
        self._timer: threading.Timer | None = None
        self._waiting_for = -1
        self.timeouts = 0
        self.message_port_register_in(pmt.intern("verdict"))
        self.set_msg_handler(pmt.intern("verdict"), self._verdict)
        self.message_port_register_in(pmt.intern("timeout"))
        self.set_msg_handler(pmt.intern("timeout"), self._timeout)

    def _verdict(self, msg):
        d = dict_to_py(msg)
        self._cancel()
        self.gate.on_header(bool(d.get("ok")), int(d.get("frame_samples", 0)))

    def _timeout(self, msg):
        if self.gate.state in (HEADER, WAIT) and int(pmt.to_long(msg)) == self.gate.trigger_at:
            self.timeouts += 1
            self.gate.release()

    def _cancel(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def stop(self):
        self._cancel()
        return True

    def general_work(self, input_items, output_items):
        f, t = input_items
        n = min(len(f), len(t), len(output_items[0]), len(output_items[1]))
        before = self.gate.accepted
        fo, to = self.gate.process(f[:n], t[:n], self.nitems_read(0))
        m = len(fo)
        output_items[0][:m] = fo
        output_items[1][:m] = to
        self.consume(0, m)
        self.consume(1, m)
        if self.gate.accepted != before:
            self._cancel()
            trig = self.gate.trigger_at
            self._timer = threading.Timer(self.timeout_s, lambda: self._post(pmt.intern("timeout"), pmt.from_long(trig)))
            self._timer.daemon = True
            self._timer.start()
        return m
