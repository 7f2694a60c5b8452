"""SigMF sink: appends its complex input to a :class:`testbed.core.sigmf_io.SigmfRecorder`."""
from __future__ import annotations

import numpy as np
from gnuradio import gr


class sigmf_sink(gr.sync_block):
    def __init__(self, recorder):
        gr.sync_block.__init__(self, name="sigmf_sink", in_sig=[np.complex64], out_sig=None)
        self.recorder = recorder

    def work(self, input_items, output_items):
        self.recorder.write(input_items[0])
        return len(input_items[0])

    def stop(self):
        self.recorder.close()
        return True
