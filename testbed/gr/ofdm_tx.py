"""OFDM transmitter for analog JSCC frames (hierarchical block).

Message input ``frames``: PDUs of complex symbols (header BPSK then analog payload, whole OFDM
symbols; see :func:`testbed.phy.framing.frame_symbols`); ``flush``: see
:class:`~testbed.gr.burst_shaper.burst_shaper`. Output: complex baseband samples,
bursts with ``tx_sob``/``tx_eob`` tags separated by zero gaps.

With the C++ module (:mod:`testbed.gr.cpp_blocks`) it is one block, ``ofdm_modulator``. The
reference is the in-tree chain pdu_to_tagged_stream -> ofdm_carrier_allocator_cvc (sync words,
pilots) -> fft_vcc (inverse, shift) -> ofdm_cyclic_prefixer -> burst_shaper (back-off, clipping,
gap), which produces the same samples but waits on the scheduler at each of its tagged-stream
hops (tens of ms per frame).
"""
from __future__ import annotations

import pmt
from gnuradio import digital, fft, gr, pdu

from ..phy.config import OfdmConfig
from . import cpp_blocks
from .burst_shaper import burst_shaper

LEN_TAG = "packet_len"


class ofdm_tx(gr.hier_block2):
    def __init__(self, cfg: OfdmConfig, impl: str = "auto"):
        """``impl``: 'cpp', 'python' or 'auto' (:func:`testbed.gr.cpp_blocks.resolve_impl`)."""
        gr.hier_block2.__init__(self, "jscc_ofdm_tx", gr.io_signature(0, 0, 0),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.cfg = cfg
        self.impl = cpp_blocks.resolve_impl(impl)
        self._frames_port = None
        self.message_port_register_hier_in("frames")
        self.message_port_register_hier_in("flush")
        if self.impl == "cpp":
            self.mod = self.shaper = cpp_blocks.ofdm_modulator(cfg)
            self._frames_in = self._flush_in = self.mod
            self.msg_connect(self, "frames", self.mod, "frames")
            self.msg_connect(self, "flush", self.mod, "flush")
            self.connect(self.mod, self)
            return
        self.to_stream = pdu.pdu_to_tagged_stream(gr.types.complex_t, LEN_TAG)
        self.allocator = digital.ofdm_carrier_allocator_cvc(
            cfg.fft_len,
            occupied_carriers=[cfg.data_carriers.tolist()],
            pilot_carriers=[cfg.pilot_carriers.tolist()],
            pilot_symbols=[cfg.pilot_symbols.tolist()],
            sync_words=[cfg.sync_word1.tolist(), cfg.sync_word2.tolist()],
            len_tag_key=LEN_TAG,
            output_is_shifted=True,
        )
        self.ifft = fft.fft_vcc(cfg.fft_len, False, (), True)
        self.cp = digital.ofdm_cyclic_prefixer(cfg.fft_len, cfg.symbol_len, 0, LEN_TAG)
        self.shaper = burst_shaper(gain=cfg.tx_gain(), clip=cfg.clip, gap=cfg.gap_samples, len_tag=LEN_TAG)
        self._frames_in, self._flush_in = self.to_stream, self.shaper
        # tagged-stream blocks need a whole frame in their buffers
        n_sym = cfg.max_frame_symbols()
        n_ofdm = -(-n_sym // cfg.n_data) + 2
        self.to_stream.set_min_output_buffer(2 * n_sym)
        self.allocator.set_min_output_buffer(2 * n_ofdm)
        self.ifft.set_min_output_buffer(2 * n_ofdm)
        self.cp.set_min_output_buffer(2 * n_ofdm * cfg.symbol_len)
        self.msg_connect(self, "frames", self.to_stream, "pdus")
        self.msg_connect(self, "flush", self.shaper, "flush")
        self.connect(self.to_stream, self.allocator, self.ifft, self.cp, self.shaper, self)

    def post_frame(self, msg) -> None:
        """Hand a frame PDU to the transmitter directly (tests, benchmarks; flowgraphs connect
        the ``frames`` port)."""
        if self._frames_port is None:   # to_basic_block() costs 0.1-0.3 ms while a flowgraph runs
            self._frames_port = (self._frames_in.to_basic_block(), pmt.intern("frames" if self.impl == "cpp" else "pdus"))
        block, port = self._frames_port
        block._post(port, msg)

    def post_flush(self, after: int, samples: int) -> None:
        self._flush_in.to_basic_block()._post(pmt.intern("flush"),
                                              pmt.to_pmt({"after": int(after), "samples": int(samples)}))

    def samples_sent(self) -> int:
        return int(self.shaper.nitems_written(0))

    def bursts_sent(self) -> int:
        """Bursts (frames) started."""
        b = self.shaper.bursts
        return int(b() if callable(b) else b)

    def clipped_samples(self) -> int:
        c = self.shaper.clipped
        return int(c() if callable(c) else c)
