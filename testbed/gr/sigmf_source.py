"""SigMF source: the samples of a recording (cf32_le), then ``tail`` zeros so that the receiver's
look-ahead drains; the flowgraph ends when they are through (adapter of
:class:`testbed.core.sigmf_io.Recording` and GNU Radio's file source)."""
from __future__ import annotations

from gnuradio import blocks, gr

from ..core.sigmf_io import Recording

# stream_mux takes its lengths as 32-bit ints: a longer recording is read by several file
# sources (offset/len), each at most CHUNK samples (2^31 - 1 samples are 36 min at 1 MS/s)
CHUNK = 2 ** 31 - 1


class sigmf_source(gr.hier_block2):
    def __init__(self, path, tail: int = 20000):
        gr.hier_block2.__init__(self, "sigmf_source", gr.io_signature(0, 0, 0),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.recording = Recording(path)
        n = self.recording.samples
        self.files = [blocks.file_source(gr.sizeof_gr_complex, str(self.recording.data_path), False,
                                         start, min(CHUNK, n - start))
                      for start in range(0, n, CHUNK)]
        self.zeros = blocks.vector_source_c([0j] * tail, False)
        if not self.files:
            self.cat = None
            self.connect(self.zeros, self)
            return
        self.cat = blocks.stream_mux(gr.sizeof_gr_complex,
                                     [min(CHUNK, n - s) for s in range(0, n, CHUNK)] + [tail])
        for i, f in enumerate(self.files):
            self.connect(f, (self.cat, i))
        self.connect(self.zeros, (self.cat, len(self.files)))
        self.connect(self.cat, self)
