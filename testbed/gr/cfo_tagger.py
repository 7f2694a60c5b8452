"""Tags each frame start with the Schmidl & Cox fine CFO estimate, so it reaches the header
decoder through the header/payload demux (which copies tags into its outputs).

Inputs: 0 samples (already frequency corrected), 1 the S&C fine offset stream, 2 the S&C
trigger. Output: the samples, with a ``sc_cfo`` tag (in sub-carrier spacings) on each trigger.
"""
from __future__ import annotations

import numpy as np
import pmt
from gnuradio import gr

KEY = pmt.intern("sc_cfo")


class cfo_tagger(gr.sync_block):
    def __init__(self):
        gr.sync_block.__init__(self, name="cfo_tagger", in_sig=[np.complex64, np.float32, np.int8],
                               out_sig=[np.complex64])

    def work(self, input_items, output_items):
        x, f, trig = input_items
        n = len(output_items[0])
        output_items[0][:] = x[:n]
        base = self.nitems_written(0)
        for i in np.flatnonzero(trig[:n]):
            # the stock receiver corrects with a phase step of -2*f/fft_len per sample, so the
            # offset is f/pi sub-carrier spacings
            self.add_item_tag(0, base + int(i), KEY, pmt.from_double(float(f[i]) / np.pi))
        return n
