"""SigMF source: the samples of a recording (cf32_le), then ``tail`` zeros so that the receiver's
look-ahead drains; the flowgraph ends when they are through (adapter of
:class:`testbed.radio.sigmf_io.Recording` and GNU Radio's file source)."""
from __future__ import annotations

from gnuradio import blocks, gr

from ..radio.sigmf_io import Recording


class sigmf_source(gr.hier_block2):
    def __init__(self, path, tail: int = 20000):
        gr.hier_block2.__init__(self, "sigmf_source", gr.io_signature(0, 0, 0),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.recording = Recording(path)
        self.file = blocks.file_source(gr.sizeof_gr_complex, str(self.recording.data_path), False)
        self.zeros = blocks.vector_source_c([0j] * tail, False)
        self.cat = blocks.stream_mux(gr.sizeof_gr_complex, [self.recording.samples, tail]) \
            if self.recording.samples else None
        if self.cat is not None:
            self.connect(self.file, (self.cat, 0))
            self.connect(self.zeros, (self.cat, 1))
            self.connect(self.cat, self)
        else:
            self.connect(self.zeros, self)
