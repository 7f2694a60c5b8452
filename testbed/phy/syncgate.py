"""Frame detection on the Schmidl & Cox metric, with frame gating (pure numpy; GNU Radio adapter:
:mod:`testbed.gr.sc_detector`).

GNU Radio's ``ofdm_sync_sc_cfb`` marks the middle of the *first* run of its metric above the
threshold, and its plateau detector depends on how the scheduler cuts the stream. At low SNR
the metric's plateau breaks into fragments, so the mark lands early, and a plateau cut by a
buffer boundary gives a misplaced mark plus a second one. :class:`ScDetector` instead

* merges above-threshold runs separated by less than ``gap`` samples into one region, ignores
  regions shorter than ``min_len``, and takes the CFO estimate (the metric's phase) at the
  region's middle (GNU Radio's mark at high SNR);
* refines the timing by correlating the CFO-corrected samples with the known preamble waveform
  (both sync symbols; the remaining even integer CFO is searched), so the frame starts
  ``timing_backoff`` samples inside the cyclic prefix at any SNR;
* holds that CFO estimate for the whole frame and suppresses detections inside it (an analog
  payload over a selective channel can look like a preamble): it lets the header through, then
  waits for the header decoder's verdict; on success it holds until the frame's last sample, on
  failure (or timeout) it releases at once.

The output lags the input: samples are only released once the region around them is decided.
"""
from __future__ import annotations

import numpy as np

SEARCH, HEADER, WAIT, HOLD = "search", "header", "wait", "hold"


def preamble_waveform(cfg) -> np.ndarray:
    """Time-domain sync symbols 1 and 2 with cyclic prefixes, as the transmitter sends them."""
    out = []
    for sw in (cfg.sync_word1, cfg.sync_word2):
        t = np.fft.ifft(np.fft.ifftshift(sw))
        out.append(np.concatenate([t[-cfg.cp_len:], t]))
    return np.concatenate(out).astype(np.complex64)


class FineTiming:
    """Locate the preamble's first sample near a coarse guess by correlation."""

    def __init__(self, cfg, search: int):
        self.cfg = cfg
        self.search = int(search)
        self.ref = preamble_waveform(cfg)
        n = np.arange(self.ref.size)
        # Schmidl & Cox leaves an ambiguity of an even number of sub-carriers: search the even
        # offsets within +-max_carrier_offset (always including 0, as GNU Radio's estimator does)
        m = 2 * (int(cfg.max_carrier_offset) // 2)
        ks = range(-m, m + 1, 2)
        self.refs = [np.conj(self.ref * np.exp(2j * np.pi * k * n / cfg.fft_len)) for k in ks]
        self.energy = float(np.sum(np.abs(self.ref) ** 2))

    def locate(self, raw: np.ndarray, raw_start: int, guess: int, phase: float) -> tuple[int, float]:
        """``raw`` covers absolute indices raw_start.. ; returns (preamble start, peak quality 0..1)."""
        lo = guess - self.search
        a = lo - raw_start
        seg = raw[a:a + 2 * self.search + self.ref.size]
        if a < 0 or seg.size < 2 * self.search + self.ref.size:
            return guess, 0.0
        n = np.arange(seg.size) + lo
        seg = seg * np.exp(-2j * phase * n / self.cfg.fft_len)      # fractional CFO (S&C phase)
        best, best_lag = -1.0, 0
        win_e = np.convolve(np.abs(seg) ** 2, np.ones(self.ref.size), mode="valid")
        for r in self.refs:
            c = np.abs(np.correlate(seg, np.conj(r), mode="valid")) ** 2 / (self.energy * np.maximum(win_e, 1e-30))
            j = int(np.argmax(c))
            if c[j] > best:
                best, best_lag = float(c[j]), j
        return lo + best_lag, best


class ScDetector:
    def __init__(self, threshold: float, min_len: int, gap: int, max_region: int,
                 header_samples: int, margin: int, fine: FineTiming | None = None,
                 coarse_offset: int = 0, start_offset: int = 0):
        """``coarse_offset``: where the region's middle sits after the preamble start (samples);
        ``start_offset``: trigger index minus preamble start wanted downstream (alignment delay
        minus the timing backoff)."""
        self.fine = fine
        self.coarse_offset, self.start_offset = int(coarse_offset), int(start_offset)
        self.history = np.zeros(0, np.complex64)   # raw samples before the current window
        self.pending: tuple[int, float] | None = None   # decided trigger (absolute index, CFO) not yet emitted
        self.threshold = float(threshold)
        self.min_len, self.gap, self.max_region = int(min_len), int(gap), int(max_region)
        self.header_samples, self.margin = int(header_samples), int(margin)
        self.state = SEARCH
        self.freq = 0.0
        self.trigger_at = -1
        self.release_at = -1
        self.accepted = 0
        self.rejected = 0      # regions too short to be a preamble
        self.suppressed = 0    # regions inside a frame or a header

    @property
    def lookahead(self) -> int:
        extra = 0 if self.fine is None else self.fine.search + self.fine.ref.size
        return self.max_region + self.gap + 1 + extra

    def on_header(self, ok: bool, frame_samples: int = 0) -> None:
        if self.state not in (HEADER, WAIT):
            return
        if ok:
            self.state = HOLD
            self.release_at = self.trigger_at + int(frame_samples)
        else:
            self.state = SEARCH

    def release(self) -> None:
        if self.state in (HEADER, WAIT):
            self.state = SEARCH

    def _region_end(self, above: np.ndarray, s0: int) -> int | None:
        """Last above-threshold index of the region starting at s0, or None if undecided."""
        below = (~above[s0:]).astype(np.int64)
        if below.size < self.gap + 1:
            return None
        cs = np.concatenate([[0], np.cumsum(below)])
        runs = cs[self.gap:] - cs[:-self.gap]              # below-count in each gap-long window
        full = np.flatnonzero(runs == self.gap)
        if full.size == 0:
            return None
        return s0 + int(full[0]) - 1

    def _trigger(self, start: int, t: int, phase: float, f_out, t_out) -> None:
        self.freq = phase
        f_out[t] = phase
        t_out[t] = 1
        self.trigger_at = start + t
        self.release_at = self.trigger_at + self.header_samples + self.margin
        self.state = HEADER
        self.accepted += 1

    def process(self, metric: np.ndarray, angle: np.ndarray, start: int, final: bool = False,
                max_out: int | None = None, raw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Gate ``metric``/``angle`` (absolute index of their first item: ``start``). Returns the
        CFO and trigger outputs for the samples that can be decided now (a prefix of at most
        ``max_out``); the rest of the input is look-ahead and must be offered again."""
        n_in = len(metric)
        n = n_in if max_out is None else min(n_in, max_out)
        f_out = np.empty(n, np.float32)
        t_out = np.zeros(n, np.int8)
        above = np.asarray(metric) >= self.threshold      # over the whole input (look-ahead)
        i = 0
        while i < n:
            pos = start + i
            if self.pending is not None:
                tpos = self.pending[0] - start
                if tpos >= n:
                    f_out[i:n] = self.freq
                    i = n
                    break
                f_out[i:tpos] = self.freq
                self._trigger(start, tpos, self.pending[1], f_out, t_out)
                self.pending = None
                i = tpos + 1
                continue
            if self.state == WAIT:
                break
            if self.state in (HEADER, HOLD):
                if self.state == HOLD and pos >= self.release_at:
                    self.state = SEARCH
                    continue
                end = min(n, self.release_at - start)
                if end <= i:
                    self.state = WAIT
                    break
                seg = above[i:end]
                self.suppressed += int(np.count_nonzero(seg[1:] & ~seg[:-1]))
                f_out[i:end] = self.freq
                i = end
                continue
            hits = np.flatnonzero(above[i:])
            if hits.size == 0:
                f_out[i:n] = self.freq
                i = n
                break
            s0 = i + int(hits[0])
            if s0 >= n:                                    # next region starts beyond max_out
                f_out[i:n] = self.freq
                i = n
                break
            f_out[i:s0] = self.freq
            i = s0
            end = self._region_end(above, s0)
            if end is None or end - s0 + 1 > self.max_region:
                if end is None and not final and n_in - s0 < self.lookahead:
                    break                                  # wait for more samples
                last = np.flatnonzero(above[s0:s0 + self.max_region])
                end = s0 + int(last[-1])
            if end - s0 + 1 < self.min_len:
                if end >= n:           # not all of it fits: what is left is rejected next time
                    f_out[s0:n] = self.freq
                    i = n
                    break
                self.rejected += 1
                f_out[s0:end + 1] = self.freq
                i = end + 1
                continue
            t = (s0 + end) // 2
            if t >= n_in:
                break
            phase = float(angle[t])
            if self.fine is not None and raw is not None:
                if not final and n_in - t < self.fine.search + self.fine.ref.size + 1:
                    break                                  # need samples for the correlation
                buf = np.concatenate([self.history, raw])
                buf_start = start - self.history.size
                guess = start + t - self.coarse_offset
                pre, q = self.fine.locate(buf, buf_start, guess, phase)
                t = max(pre + self.start_offset - start, s0)
            self.pending = (start + t, phase)   # emitted at the top of the loop (maybe next call)
            i = s0
        if raw is not None and self.fine is not None:
            keep = 2 * (self.fine.search + self.fine.ref.size) + self.coarse_offset
            self.history = np.concatenate([self.history, np.asarray(raw[:i], np.complex64)])[-keep:]
        return f_out[:i], t_out[:i]
