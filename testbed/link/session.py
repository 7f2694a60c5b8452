"""Long-lived links for ``testbed node``: GNU Radio flowgraphs that stay up while images are sent
one at a time, so the model, the CBR and the encoder's SNR can change at any image boundary
without restarting them.

* :class:`LinkSession`: both ends in one flowgraph (JSCC encoder -> OFDM TX -> front-end -> OFDM
  RX -> JSCC decoder);
* :class:`TxSession` / :class:`RxSession`: the two ends on two nodes. Over the air each uses its
  radio's sink or source; on the loopback channel the transmitter runs the channel and streams
  the samples to the receiver over ZeroMQ (``medium``).

Both the sessions and ``testbed loopback`` / ``testbed ota`` (:mod:`testbed.link.run`) build the
link with :func:`build_link`.

The front-end is any of :mod:`testbed.link.frontend`; a loopback channel's SNR can be changed
while running (``set_channel_snr``). The receiver decodes each image with the model its header
names, among the models it was given.
"""
from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass

import numpy as np

from ..core.metrics import psnr

log = logging.getLogger(__name__)


def _tx_chain(tb, codec, ofdm, flush_samples, **enc_kw):
    """JSCC encoder -> OFDM TX in ``tb``; returns (encoder, tx)."""
    from ..gr.jscc_encoder import jscc_encoder
    from ..gr.ofdm_tx import ofdm_tx

    enc = jscc_encoder(codec, ofdm, **enc_kw)
    if flush_samples:
        enc.flush_samples = int(flush_samples)
    tx = ofdm_tx(ofdm)
    tb.msg_connect(enc, "frames", tx, "frames")
    tb.msg_connect(enc, "flush", tx, "flush")
    return enc, tx


@dataclass
class Link:
    """A built (not started) link flowgraph; ``keep`` holds the medium's blocks, which must stay
    referenced while it runs."""
    tb: object
    enc: object
    tx: object
    rx: object
    dec: object
    keep: object


def build_link(name: str, codec, ofdm, connect, *, on_image, references: dict, flush_samples=None,
               **enc_kw) -> Link:
    """JSCC encoder -> OFDM TX -> medium -> OFDM RX -> JSCC decoder. ``connect(tb, tx, rx)`` wires
    the medium (loopback channel, radio front-end, recording) and returns its blocks; the PHY never
    knows which. ``enc_kw`` go to :class:`testbed.gr.jscc_encoder.jscc_encoder`."""
    from gnuradio import gr

    from ..gr.jscc_decoder import jscc_decoder
    from ..gr.ofdm_rx import ofdm_rx

    tb = gr.top_block(name)
    enc, tx = _tx_chain(tb, codec, ofdm, flush_samples, **enc_kw)
    rx = ofdm_rx(ofdm)
    dec = jscc_decoder(codec, on_image=on_image, references=references)
    keep = connect(tb, tx, rx)
    tb.msg_connect(rx, "frames", dec, "frames")
    return Link(tb, enc, tx, rx, dec, keep)


class _Transmitter:
    """The transmitting end shared by :class:`LinkSession` and :class:`TxSession`."""

    def _find_channel(self) -> None:
        self.channel = next((b for b in self._keep if hasattr(b, "set_snr_db")), None)

    @property
    def codec(self):
        return self.enc.codec

    def set_operating_point(self, codec, cbr: float | None, snr_db: float, mcs: str | None = None) -> None:
        """Switch model/CBR/encoder SNR (and a digital codec's MCS; None: the codec's default, not
        the previous job's); takes effect with the next image."""
        kept, self.enc.mcs = getattr(self.enc, "mcs", None), None
        try:
            self.enc.set_codec(codec, cbr=cbr, **({"mcs": mcs} if mcs else {}))
        except Exception:
            self.enc.mcs = kept
            raise
        self.enc.snr_db = float(snr_db)

    def set_channel_snr(self, snr_db: float) -> None:
        if self.channel is None:
            raise RuntimeError("the channel SNR can only be set on the loopback front-end")
        self.channel.set_snr_db(snr_db)

    def close(self) -> None:
        self.tb.stop()
        self.tb.wait()


class LinkSession(_Transmitter):
    def __init__(self, codec, *, cbr: float | None, snr_db: float, frontend, ofdm, idle_s: float = 3.0,
                 mcs: str | None = None):
        self.idle_s = idle_s
        self.refs: dict[int, np.ndarray] = {}
        self.done_q: "queue.Queue[tuple[dict, np.ndarray]]" = queue.Queue()
        link = build_link("jscc_link_session", codec, ofdm, frontend.connect, references=self.refs,
                          on_image=lambda rec, img: self.done_q.put((rec, img)),
                          flush_samples=frontend.flush_samples(), snr_db=snr_db, cbr=cbr, mcs=mcs)
        self.tb, self.enc, self.tx, self.rx, self.dec, self._keep = (link.tb, link.enc, link.tx, link.rx, link.dec,
                                                                      link.keep)
        self._find_channel()
        self.next_id = 0
        self.tb.start()

    def set_operating_point(self, codec, cbr: float | None, snr_db: float, mcs: str | None = None) -> None:
        super().set_operating_point(codec, cbr, snr_db, mcs)
        self.dec.add_codec(codec)

    def send(self, img: np.ndarray, name: str = "", check=None) -> dict:
        """Send one image and wait for it (or until no frame came for ``idle_s``)."""
        iid = self.next_id & 0xFFFF
        self.next_id += 1
        self.refs.clear()
        self.refs[iid] = img
        while not self.done_q.empty():       # late leftovers of an earlier (lost) image
            self.done_q.get_nowait()
        t0 = time.monotonic()
        info = self.enc.send(img, image_id=iid, name=name)
        row = {"image": name, "frames_sent": info["frames"], "encode_ms": info["encode_ms"], "cbr": info["cbr"],
               "frames_decoded": 0, "psnr_db": None, "snr_est_db": None, "latency_ms": None, "decode_ms": None}
        flushed = False
        while True:
            if check is not None:
                check()
            try:
                rec, out = self.done_q.get(timeout=0.1)
            except queue.Empty:
                quiet = time.monotonic() - max(self.dec.last_activity, t0)
                if quiet > self.idle_s:
                    if flushed:
                        log.warning("image %s (id %d): nothing decoded; reported as lost", name, iid)
                        return row
                    self.dec.flush()      # decode what arrived of an incomplete image
                    flushed = True
                continue
            if rec["image_id"] != iid:
                continue
            row.update(frames_decoded=rec.get("frames_decoded", 0), snr_est_db=_finite(rec.get("snr_est_db")),
                       decode_ms=rec.get("decode_ms"), latency_ms=(rec["decoded_at"] - t0) * 1e3,
                       psnr_db=psnr(img, out) if out.shape == img.shape else None)
            return row


def _finite(v):
    return float(v) if v is not None and np.isfinite(v) else None


class TxSession(_Transmitter):
    """The transmitting end: encoder -> OFDM TX -> radio sink (or loopback channel -> ZeroMQ)."""

    def __init__(self, codec, *, cbr: float | None, snr_db: float, frontend, ofdm, medium: str = "",
                 mcs: str | None = None):
        from gnuradio import gr

        self.tb = gr.top_block("jscc_tx_session")
        self.enc, self.tx = _tx_chain(self.tb, codec, ofdm, frontend.flush_samples(), snr_db=snr_db, cbr=cbr, mcs=mcs)
        self._keep = frontend.connect_tx(self.tb, self.tx, medium)
        self._find_channel()
        self.tb.start()

    def send(self, img: np.ndarray, image_id: int, name: str = "", check=None) -> dict:
        """Queue one image's frames, after the previous image's have gone out (at most one image
        waits in the transmitter, whatever the medium's pace)."""
        while self.tx.bursts_sent() < self.enc.frames_sent:
            if check is not None:
                check()
            time.sleep(0.01)
        t_sent = time.time()
        info = self.enc.send(img, image_id=image_id & 0xFFFF, name=name)
        return {**info, "t_sent": t_sent}

    def drain(self, timeout_s: float = 30.0) -> None:
        t_end = time.monotonic() + timeout_s
        while self.tx.bursts_sent() < self.enc.frames_sent and time.monotonic() < t_end:
            time.sleep(0.02)


class RxSession:
    """The receiving end: radio source (or ZeroMQ) -> OFDM RX -> decoder; ``on_image(record, image)``
    for every decoded image (the record names the model the image was decoded with)."""

    def __init__(self, codec, *, frontend, ofdm, on_image, medium: str = ""):
        from gnuradio import gr

        from ..gr.jscc_decoder import jscc_decoder
        from ..gr.ofdm_rx import ofdm_rx

        self.tb = gr.top_block("jscc_rx_session")
        self.rx = ofdm_rx(ofdm)
        self.dec = jscc_decoder(codec, on_image=on_image)
        self._keep = frontend.connect_rx(self.tb, self.rx, medium)
        self.tb.msg_connect(self.rx, "frames", self.dec, "frames")
        self.tb.start()

    def add_codec(self, codec) -> None:
        self.dec.add_codec(codec)

    @property
    def last_activity(self) -> float:
        """When the decoder last finished handling a frame (its decode included): the clock of
        the idle timeouts, so that frames queued behind a slow decode do not count as silence."""
        return self.dec.last_activity

    def flush(self) -> None:
        self.dec.flush()

    def close(self) -> None:
        self.tb.stop()
        self.tb.wait()
