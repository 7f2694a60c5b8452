"""TX back-off, clipping and inter-burst gaps (GNU Radio adapter of :mod:`testbed.phy.txscale`).

Input: bursts tagged with the length tag (as the cyclic prefixer emits them). Output: each burst
scaled to the configured RMS, clipped, followed by ``gap`` zeros (radios such as the Pluto only
send full buffers, and the receiver needs samples after a frame to finish it). ``tx_sob`` marks
the first sample of a burst and ``tx_eob`` the last of its trailing zeros (what gr-uhd's USRP
sink needs to send bursts); flush zeros form bursts of their own.

Message input ``flush``: a dict ``{"after": N, "samples": M}`` asks for M more zeros once N
bursts have gone out (sent after the last frame of an image, so that the receiver's look-ahead
is filled and the image is decoded without waiting for the next one).
"""
from __future__ import annotations

import logging

import numpy as np
import pmt
from gnuradio import gr

from ..phy.txscale import scale_and_clip

log = logging.getLogger(__name__)


class burst_shaper(gr.basic_block):
    def __init__(self, gain: float = 1.0, clip: float = 1.0, gap: int = 600, len_tag: str = "packet_len"):
        gr.basic_block.__init__(self, name="burst_shaper", in_sig=[np.complex64], out_sig=[np.complex64])
        self.gain, self.clip, self.gap = float(gain), float(clip), int(gap)
        self.len_key = pmt.intern(len_tag)
        self.remaining = 0      # samples of the current burst still to copy
        self.pad_left = 0       # zeros still to emit after a burst
        self.in_burst = False   # between a tx_sob and its tx_eob
        self.bursts = 0
        self.clipped = 0
        self.flushes: list[tuple[int, int]] = []
        self.bad_flushes = 0    # flush messages that could not be read (logged, ignored)
        self.set_tag_propagation_policy(gr.TPP_DONT)
        self.message_port_register_in(pmt.intern("flush"))
        self.set_msg_handler(pmt.intern("flush"), self._flush)

    def _flush(self, msg):
        from .pmtutil import dict_to_py

        # an exception here would stop this block (and the TX stream) for good
        try:
            d = dict_to_py(msg)
            after, samples = int(d.get("after", 0)), int(d.get("samples", self.gap))
            if samples < 0:
                raise ValueError(f"samples={samples}")
        except Exception as e:
            self.bad_flushes += 1
            log.warning("burst_shaper: bad flush message ignored (%s: %s)", type(e).__name__, e)
            return
        self.flushes.append((after, samples))

    def _due_flush(self) -> None:
        if self.remaining == 0 and self.pad_left == 0:
            while self.flushes and self.flushes[0][0] <= self.bursts:
                self.pad_left += self.flushes.pop(0)[1]

    def forecast(self, noutput_items, ninputs):
        self._due_flush()
        return [0 if self.pad_left else min(noutput_items, 4096)] * ninputs

    def general_work(self, input_items, output_items):
        inp, out = input_items[0], output_items[0]
        self._due_flush()
        if self.pad_left:
            n = min(self.pad_left, len(out))
            out[:n] = 0
            if not self.in_burst:   # flush zeros after a finished burst: a burst of their own
                self.add_item_tag(0, self.nitems_written(0), pmt.intern("tx_sob"), pmt.PMT_T)
                self.in_burst = True
            self.pad_left -= n
            if self.pad_left == 0:
                self._due_flush()
                if self.pad_left == 0:   # the burst (frame + gap [+ flush]) ends here
                    self.add_item_tag(0, self.nitems_written(0) + n - 1, pmt.intern("tx_eob"), pmt.PMT_T)
                    self.in_burst = False
            return n
        if self.remaining == 0:
            if len(inp) == 0:
                return 0
            r0 = self.nitems_read(0)
            window = self.get_tags_in_window(0, 0, len(inp), self.len_key)
            tags = [t for t in window if t.offset == r0]
            if not tags:   # untagged samples: pass through (scaled), up to the next burst
                n = min([len(inp), len(out)] + [t.offset - r0 for t in window])
                out[:n], c = scale_and_clip(inp[:n], self.gain, self.clip)
                self.clipped += c
                self.consume(0, n)
                return n
            self.remaining = int(pmt.to_long(tags[0].value))
            self.add_item_tag(0, self.nitems_written(0), pmt.intern("tx_sob"), pmt.PMT_T)
            self.in_burst = True
            self.bursts += 1
            del r0
        n = min(self.remaining, len(inp), len(out))
        out[:n], c = scale_and_clip(inp[:n], self.gain, self.clip)
        self.clipped += c
        self.consume(0, n)
        self.remaining -= n
        if self.remaining == 0:
            self.pad_left = self.gap
            if self.gap == 0:
                self.add_item_tag(0, self.nitems_written(0) + n - 1, pmt.intern("tx_eob"), pmt.PMT_T)
                self.in_burst = False
        return n
