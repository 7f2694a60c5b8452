"""Gating of Schmidl & Cox detections (pure Python/numpy; GNU Radio adapter: testbed.gr.sync_gate).

Schmidl & Cox also fires inside frames (an analog payload over a frequency-selective channel
can look like its preamble), and every detection updates the CFO correction, which would ruin
the rest of the frame. The gate therefore

* accepts a detection only when no frame is in progress, latches its CFO estimate and passes
  the trigger on to the header/payload demux;
* lets the header through, then waits for the header decoder's verdict: on success it holds
  the CFO and suppresses detections until the frame's last sample; on failure (or a timeout)
  it releases at once.
"""
from __future__ import annotations

import numpy as np

IDLE, HEADER, WAIT, HOLD = "idle", "header", "wait", "hold"


class SyncGate:
    def __init__(self, header_samples: int, margin: int):
        self.header_samples = int(header_samples)
        self.margin = int(margin)
        self.state = IDLE
        self.freq = 0.0
        self.trigger_at = -1          # absolute index of the accepted trigger
        self.release_at = -1          # absolute index until which HEADER passes / HOLD holds
        self.accepted = 0
        self.suppressed = 0

    def on_header(self, ok: bool, frame_samples: int = 0) -> None:
        """Verdict on the outstanding header: ok with the frame length in samples, or failed."""
        if self.state not in (HEADER, WAIT):
            return
        if ok:
            self.state = HOLD
            self.release_at = self.trigger_at + int(frame_samples)
        else:
            self.state = IDLE

    def release(self) -> None:
        if self.state in (HEADER, WAIT):
            self.state = IDLE

    def process(self, freq: np.ndarray, trig: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Gate ``freq``/``trig`` (absolute index of their first item: ``start``). Returns the
        outputs, possibly shorter than the inputs when the gate must wait for a verdict."""
        n = len(freq)
        f_out = np.empty(n, np.float32)
        t_out = np.zeros(n, np.int8)
        i = 0
        while i < n:
            pos = start + i
            if self.state == WAIT:
                break
            if self.state == HEADER:
                end = min(n, self.release_at - start)
                if end <= i:
                    self.state = WAIT
                    break
                f_out[i:end] = self.freq
                self.suppressed += int(np.count_nonzero(trig[i:end]))
                i = end
                continue
            if self.state == HOLD:
                if pos >= self.release_at:
                    self.state = IDLE
                    continue
                end = min(n, self.release_at - start)
                f_out[i:end] = self.freq
                self.suppressed += int(np.count_nonzero(trig[i:end]))
                i = end
                continue
            # IDLE: pass the CFO latched at the last accepted trigger, look for a new trigger
            hits = np.flatnonzero(trig[i:])
            end = n if hits.size == 0 else i + int(hits[0])
            f_out[i:end] = self.freq
            i = end
            if i < n:
                self.freq = float(freq[i])
                self.trigger_at = start + i
                self.release_at = self.trigger_at + self.header_samples + self.margin
                self.state = HEADER
                self.accepted += 1
                f_out[i] = self.freq
                t_out[i] = 1
                i += 1
        return f_out[:i], t_out[:i]
