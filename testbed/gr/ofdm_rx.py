"""OFDM receiver for analog JSCC frames (hierarchical block).

Input: complex baseband samples from anything (radio, recording, loopback channel). Message
output ``frames``: one PDU per frame whose header passed its CRC, with the equalised analog
payload and the frame's metadata (JSCC header fields, SNR and CFO estimates).

In-tree: the Schmidl & Cox metric (as in ofdm_sync_sc_cfb, see :class:`~testbed.gr.sc_detector.sc_sync`)
-> frequency_modulator + multiply (CFO correction) -> header_payload_demux -> fft_vcc ->
ofdm_chanest_vcvc (integer CFO, channel from the sync symbols). The testbed's blocks: frame
detection and CFO hold (:mod:`testbed.phy.syncgate`), the header decoder that answers the demux,
and the payload equaliser for the analog symbols (see :mod:`testbed.phy.equalizer` for why it
is not an in-tree one).

With the C++ module installed (:mod:`testbed.gr.cpp_blocks`) the receiver is three C++ blocks:
the metric, the detector, and ``ofdm_demodulator``, which does per detected frame what the chain
from the delay to the payload equaliser does, without streaming every sample through it. The
Python chain is the reference.
"""
from __future__ import annotations

from gnuradio import analog, blocks, digital, fft, gr, pdu

from ..phy import header as hdr
from ..phy.config import OfdmConfig
from . import cpp_blocks
from .sc_detector import sc_detector, sc_sync
from .header_decoder import header_decoder
from .payload_equalizer import payload_equalizer
from .side_info_decoder import side_info_decoder

FRAME_TAG = "frame_len"
HDR_TAG = "hdr_len"


class ofdm_rx(gr.hier_block2):
    def __init__(self, cfg: OfdmConfig, impl: str = "auto"):
        """``impl``: 'cpp', 'python' or 'auto' (see :func:`testbed.gr.cpp_blocks.resolve_impl`)."""
        gr.hier_block2.__init__(self, "jscc_ofdm_rx", gr.io_signature(1, 1, gr.sizeof_gr_complex),
                                gr.io_signature(0, 0, 0))
        self.cfg = cfg
        cpp = cpp_blocks.resolve_impl(impl) == "cpp"
        self.impl = "cpp" if cpp else "python"
        self.message_port_register_hier_out("frames")
        n_hdr = hdr.header_ofdm_symbols(cfg.header_repetition, cfg.n_data)
        n_head = (2 + n_hdr) * cfg.symbol_len
        if cpp:
            self._build_cpp(cfg, n_head)
        else:
            self._build_python(cfg, n_hdr, n_head)

    def _build_cpp(self, cfg: OfdmConfig, n_head: int) -> None:
        self.sync = cpp_blocks.sc_metric(cfg)
        self.gate = cpp_blocks.sc_detector(cfg, n_head, cfg.symbol_len)
        self.demod = cpp_blocks.ofdm_demodulator(cfg)
        self.side = side_info_decoder()   # the C++ equaliser hands side information on undecoded
        self.connect(self, self.sync)
        self.connect((self.sync, 0), (self.gate, 0))
        self.connect((self.sync, 1), (self.gate, 1))
        self.connect(self, (self.gate, 2))
        self.connect(self, (self.demod, 0))
        self.connect((self.gate, 0), (self.demod, 1))
        self.connect((self.gate, 1), (self.demod, 2))
        self.msg_connect(self.demod, "verdict", self.gate, "verdict")
        # a frame's worth of samples per call, not the default 4096 (scheduler round trips)
        n_samp = (2 + cfg.max_payload_ofdm_symbols() + 2) * cfg.symbol_len
        for b in (self.sync, self.gate):
            b.set_min_output_buffer(n_samp)
        self.msg_connect(self.demod, "frames", self.side, "in")
        self.msg_connect(self.side, "frames", self, "frames")

    def _build_python(self, cfg: OfdmConfig, n_hdr: int, n_head: int) -> None:
        n = cfg.fft_len
        # Schmidl & Cox metric from in-tree blocks; frame detection and CFO hold in sc_detector
        # (GNU Radio's own plateau detector marks early at low SNR and depends on scheduling)
        self.sync = sc_sync(n)
        # data delayed by one OFDM symbol: the detector places its trigger one symbol after the
        # frame start it wants (timing_backoff samples before the preamble, inside the prefix)
        self.delay = blocks.delay(gr.sizeof_gr_complex, cfg.symbol_len)
        self.osc = analog.frequency_modulator_fc(-2.0 / n)
        self.mixer = blocks.multiply_cc()
        self.demux = digital.header_payload_demux(2 + n_hdr, n, cfg.cp_len, FRAME_TAG, "", True,
                                                  gr.sizeof_gr_complex)
        self.gate = sc_detector(cfg, n_head, cfg.symbol_len)
        self.connect(self, self.sync)
        self.connect((self.sync, 0), (self.gate, 0))
        self.connect((self.sync, 1), (self.gate, 1))
        self.connect(self, (self.gate, 2))
        self.connect(self, self.delay, (self.mixer, 0))
        self.connect((self.gate, 0), self.osc, (self.mixer, 1))
        # the detector's sc_cfo tags ride on its CFO output through the oscillator and the mixer
        self.connect(self.mixer, (self.demux, 0))
        self.connect((self.gate, 1), (self.demux, 1))
        # header path
        self.h_fft = fft.fft_vcc(n, True, (), True)
        self.chanest = digital.ofdm_chanest_vcvc(cfg.sync_word1.tolist(), cfg.sync_word2.tolist(), n_hdr, 0,
                                                cfg.max_carrier_offset)
        # the demux always emits whole headers and the estimator drops the 2 sync symbols, so the
        # header stream is re-cut into fixed n_hdr-symbol packets
        self.h_pkt = blocks.stream_to_tagged_stream(gr.sizeof_gr_complex, n, n_hdr, HDR_TAG)
        self.h_v2s = blocks.vector_to_stream(gr.sizeof_gr_complex, n)
        self.h_len = blocks.tagged_stream_multiply_length(gr.sizeof_gr_complex, HDR_TAG, n)
        self.h_pdu = pdu.tagged_stream_to_pdu(gr.types.complex_t, HDR_TAG)
        self.h_dec = header_decoder(cfg)
        for b in (self.h_v2s, self.h_len):
            b.set_min_output_buffer(2 * n_hdr * n)
        self.connect((self.demux, 0), self.h_fft, self.chanest, self.h_pkt, self.h_v2s, self.h_len, self.h_pdu)
        self.msg_connect(self.h_pdu, "pdus", self.h_dec, "in")
        self.msg_connect(self.h_dec, "header_data", self.demux, "header_data")
        self.msg_connect(self.h_dec, "verdict", self.gate, "verdict")
        # payload path
        self.p_fft = fft.fft_vcc(n, True, (), True)
        self.p_v2s = blocks.vector_to_stream(gr.sizeof_gr_complex, n)
        self.p_len = blocks.tagged_stream_multiply_length(gr.sizeof_gr_complex, FRAME_TAG, n)
        self.p_pdu = pdu.tagged_stream_to_pdu(gr.types.complex_t, FRAME_TAG)
        self.p_eq = payload_equalizer(cfg)
        n_pay = cfg.max_payload_ofdm_symbols()   # longer frames: rejected by the header decoder
        for b in (self.p_fft, self.p_v2s, self.p_len):
            b.set_min_output_buffer(2 * n_pay * (1 if b is self.p_fft else n))
        self.demux.set_min_output_buffer(max(4 * n_pay, 4 * (2 + n_hdr)))
        # the demux needs a whole payload of samples in its input buffers
        n_samp = 2 * (n_pay + 2 + n_hdr) * cfg.symbol_len
        for b in (self.mixer, self.delay, self.osc, self.gate):
            b.set_min_output_buffer(n_samp)
        for b in (self.sync.norm, self.sync.arg):
            b.set_min_output_buffer(n_samp)
        self.connect((self.demux, 1), self.p_fft, self.p_v2s, self.p_len, self.p_pdu)
        self.msg_connect(self.p_pdu, "pdus", self.p_eq, "in")
        self.msg_connect(self.p_eq, "frames", self, "frames")

    def samples_read(self) -> int:
        """Received samples the receiver has taken in."""
        return (self.demod if self.impl == "cpp" else self.delay).nitems_read(0)

    def counters(self) -> dict:
        if self.impl == "cpp":
            g, d = self.gate, self.demod
            return {"headers_ok": d.headers_ok(), "headers_failed": d.headers_failed(),
                    "headers_too_long": d.headers_too_long(),
                    "detections": g.accepted(), "detections_suppressed": g.suppressed(),
                    "detections_rejected": g.rejected(), "gate_timeouts": g.timeouts(),
                    "frames_equalized": self.side.frames,
                    "payload_errors": d.payload_errors() + self.side.errors}
        return {"headers_ok": self.h_dec.ok, "headers_failed": self.h_dec.failed,
                "headers_too_long": self.h_dec.too_long,
                "detections": self.gate.det.accepted, "detections_suppressed": self.gate.det.suppressed,
                "detections_rejected": self.gate.det.rejected,
                "gate_timeouts": self.gate.timeouts,
                "frames_equalized": self.p_eq.frames, "payload_errors": self.p_eq.errors}
