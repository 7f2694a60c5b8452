"""GNU Radio adapter of :class:`testbed.phy.syncgate.ScDetector`, and the Schmidl & Cox
metric built from in-tree blocks (:class:`sc_sync`).

``sc_detector`` inputs: 0 the S&C timing metric, 1 the phase of the S&C correlation, 2 the raw
samples (for fine timing against the known preamble). Outputs: 0
the CFO estimate held per frame (for ``frequency_modulator_fc(-2/fft_len)``), 1 the frame
trigger (for the header/payload demux). Each trigger's sample on output 0 carries an ``sc_cfo``
tag, the fine CFO estimate in sub-carrier spacings: the in-tree oscillator and mixer propagate it
onto the corrected samples, and the demux copies it into the header's metadata. Message input
``verdict`` from the header decoder; a timer releases the gate if no verdict arrives.
"""
from __future__ import annotations

import threading

import numpy as np
import pmt
from gnuradio import blocks, filter as grfilter, gr

from ..phy.config import OfdmConfig
from ..phy.syncgate import HEADER, WAIT, FineTiming, ScDetector
from .pmtutil import dict_to_py

CFO_TAG = pmt.intern("sc_cfo")


def detector_params(cfg: OfdmConfig, header_samples: int, data_delay: int) -> dict:
    """:class:`ScDetector`'s arguments for ``cfg`` (the C++ detector is built from the same)."""
    n = cfg.fft_len
    # the middle of the above-threshold region lies about fft_len + cp/4 after the preamble's
    # first sample (threshold 0.15); fine timing searches +-fft_len/2 around that
    return dict(threshold=cfg.sync_threshold, min_len=cfg.cp_len, gap=n // 8, max_region=2 * n,
                header_samples=header_samples, margin=2 * cfg.symbol_len, fine=FineTiming(cfg, n // 2),
                coarse_offset=n + cfg.cp_len // 4, start_offset=data_delay - cfg.timing_backoff)


class sc_detector(gr.basic_block):
    def __init__(self, cfg: OfdmConfig, header_samples: int, data_delay: int, timeout_s: float = 2.0):
        gr.basic_block.__init__(self, name="sc_detector", in_sig=[np.float32, np.float32, np.complex64],
                                out_sig=[np.float32, np.int8])
        self.det = ScDetector(**detector_params(cfg, header_samples, data_delay))
        self.timeout_s = timeout_s
        self._timer: threading.Timer | None = None
        self.timeouts = 0
        self.message_port_register_in(pmt.intern("verdict"))
        self.set_msg_handler(pmt.intern("verdict"), self._verdict)
        self.message_port_register_in(pmt.intern("timeout"))
        self.set_msg_handler(pmt.intern("timeout"), self._timeout)

    def _verdict(self, msg):
        d = dict_to_py(msg)
        self._cancel()
        self.det.on_header(bool(d.get("ok")), int(d.get("frame_samples", 0)))

    def _timeout(self, msg):
        if self.det.state in (HEADER, WAIT) and int(pmt.to_long(msg)) == self.det.trigger_at:
            self.timeouts += 1
            self.det.release()

    def _cancel(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def stop(self):
        self._cancel()
        return True

    def forecast(self, noutput_items, ninputs):
        return [noutput_items] * ninputs

    def general_work(self, input_items, output_items):
        m, a, raw = input_items
        n_out = min(len(output_items[0]), len(output_items[1]))
        # look at no more than the output space plus the detector's look-ahead
        n_in = min(len(m), len(a), len(raw), n_out + self.det.lookahead)
        before = self.det.accepted
        # look at everything available (look-ahead), emit what is decided, at most n_out
        fo, to = self.det.process(m[:n_in], a[:n_in], self.nitems_read(0), max_out=n_out, raw=raw[:n_in])
        k = len(fo)
        output_items[0][:k] = fo
        output_items[1][:k] = to
        base = self.nitems_written(0)
        for i in np.flatnonzero(to[:k]):
            # the receiver corrects with a phase step of -2*f/fft_len per sample (S&C phase f),
            # so the offset is f/pi sub-carrier spacings
            self.add_item_tag(0, base + int(i), CFO_TAG, pmt.from_double(float(fo[i]) / np.pi))
        self.consume(0, k)
        self.consume(1, k)
        self.consume(2, k)
        if self.det.accepted != before:
            self._cancel()
            trig = self.det.trigger_at
            self._timer = threading.Timer(self.timeout_s, lambda: self._post(pmt.intern("timeout"), pmt.from_long(trig)))
            self._timer.daemon = True
            self._timer.start()
        return k


class sc_sync(gr.hier_block2):
    """The Schmidl & Cox timing metric and correlation phase, from in-tree blocks exactly as in
    GNU Radio's ofdm_sync_sc_cfb (before its plateau detector). Outputs: metric, phase."""

    def __init__(self, fft_len: int):
        gr.hier_block2.__init__(self, "sc_sync", gr.io_signature(1, 1, gr.sizeof_gr_complex),
                                gr.io_signature(2, 2, gr.sizeof_float))
        h = fft_len // 2
        self.delay = blocks.delay(gr.sizeof_gr_complex, h)
        self.conj = blocks.conjugate_cc()
        self.corr = blocks.multiply_cc()
        self.corr_ma = grfilter.fir_filter_ccf(1, [1.0] * h)
        self.corr_mag = blocks.complex_to_mag_squared()
        self.norm = blocks.divide_ff()
        self.pow = blocks.complex_to_mag_squared()
        self.pow_ma = grfilter.fir_filter_fff(1, [0.5] * fft_len)
        self.pow_sq = blocks.multiply_ff()
        self.arg = blocks.complex_to_arg()
        self.connect(self, self.delay, self.conj, (self.corr, 1))
        self.connect(self, (self.corr, 0))
        self.connect(self.corr, self.corr_ma, self.corr_mag, (self.norm, 0))
        self.connect(self, self.pow, self.pow_ma, (self.pow_sq, 0))
        self.connect(self.pow_ma, (self.pow_sq, 1))
        self.connect(self.pow_sq, (self.norm, 1))
        self.connect(self.norm, (self, 0))
        self.connect(self.corr_ma, self.arg, (self, 1))
