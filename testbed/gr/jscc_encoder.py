"""JSCC encoder block: image in, framed analog symbols out (adapter of the ONNX codec and
:mod:`testbed.phy.framing`).

Message input ``image``: a PDU whose data is the RGB image (u8vector, H*W*3) and whose metadata
has ``height``, ``width`` and optionally ``image_id`` and ``name``. Message output ``frames``:
one PDU per frame (header BPSK + analog payload symbols) with metadata: image id, frame index
and count, size, symbols per location, CBR, model sha256. :meth:`send` does the same from Python.

The codec is any :class:`testbed.core.codecs.Codec`. A variable-rate one (the AKB codec) works at
a target ``cbr`` and returns side information per image (rate map and KB index, sent after the
header); ``ckb``, ``skb`` and ``allocation`` are its options.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pmt
from gnuradio import gr

from ..phy import framing
from ..phy.config import OfdmConfig
from .pmtutil import image_from_pdu, pdu, to_pmt

log = logging.getLogger(__name__)


class jscc_encoder(gr.basic_block):
    def __init__(self, codec, cfg: OfdmConfig, snr_db: float = 10.0, symbols_per_location: int | None = None,
                 cbr: float | None = None, ckb: bool = True, skb: bool = True, allocation: str = "entropy",
                 mcs: str | None = None):
        gr.basic_block.__init__(self, name="jscc_encoder", in_sig=None, out_sig=None)
        self.cfg = cfg
        self.snr_db = float(snr_db)
        self.set_codec(codec, symbols_per_location=symbols_per_location, cbr=cbr, ckb=ckb, skb=skb,
                       allocation=allocation, mcs=mcs)
        self.next_id = 0
        self.frames_sent = 0
        self.errors = 0            # image messages that could not be encoded (logged, dropped)
        self.flush_samples = cfg.flush_samples()   # zeros after each image (front-ends may ask for more)
        self.message_port_register_in(pmt.intern("image"))
        self.message_port_register_out(pmt.intern("frames"))
        self.message_port_register_out(pmt.intern("flush"))
        self.set_msg_handler(pmt.intern("image"), self._handle)

    def set_snr_db(self, snr_db: float) -> None:
        """The SNR the symbols are encoded for, from the next image on (GRC runtime callback)."""
        self.snr_db = float(snr_db)

    def set_codec(self, codec, symbols_per_location: int | None = None, cbr: float | None = None,
                  ckb: bool | None = None, skb: bool | None = None, allocation: str | None = None,
                  mcs: str | None = None) -> None:
        """Use ``codec`` at ``cbr`` from the next image on (call between images: :meth:`send`
        runs in the caller's thread, so an image is never split between two codecs). ``ckb``,
        ``skb`` (AKB codecs: channel / source KB on or off) and ``allocation`` (where the rate map
        comes from) and ``mcs`` (digital codecs: an MCS name or ``auto``) keep their current
        setting when None; the codec checks them (:meth:`Codec.rate <testbed.core.codecs.Codec.rate>`)."""
        ckb = getattr(self, "ckb", True) if ckb is None else bool(ckb)
        skb = getattr(self, "skb", True) if skb is None else bool(skb)
        allocation = getattr(self, "allocation", "entropy") if allocation is None else str(allocation)
        mcs = getattr(self, "mcs", None) if mcs is None else str(mcs)
        # checked before anything changes: a refused call leaves the block as it was
        rate = codec.rate(cbr, symbols_per_location=symbols_per_location, ckb=ckb, skb=skb, allocation=allocation,
                          **({"mcs": mcs} if mcs is not None else {}))
        self.codec, self.rate = codec, rate
        self.variable_rate, self.k, self.cbr = codec.variable_rate, rate.symbols_per_location, rate.cbr
        self.ckb, self.skb, self.allocation, self.mcs = ckb, skb, allocation, mcs
        self.previous = None       # the last image sent (the channel-KB policy sees its rate offsets)

    def _handle(self, msg):
        try:
            meta, img = image_from_pdu(msg)
        except Exception as e:
            log.warning("jscc_encoder: bad image message dropped (%s)", e)
            self.errors += 1
            return
        try:   # an exception would stop this block's message handling for good
            self.send(img, image_id=meta.get("image_id"), name=meta.get("name", ""))
        except Exception as e:
            self.errors += 1
            log.warning("jscc_encoder: image %s not sent (%s: %s)", meta.get("image_id"), type(e).__name__, e)

    def send(self, img: np.ndarray, image_id: int | None = None, name: str = "") -> dict:
        """Encode ``img`` and publish its frames; returns what was sent (id, frames, timing)."""
        if image_id is None:
            image_id = self.next_id
        self.next_id = int(image_id) + 1
        h, w = img.shape[:2]
        t0 = time.perf_counter()
        enc = self.codec.encode(img, self.snr_db, self.rate, self.previous)
        self.previous = enc
        s, side, cbr = enc.symbols, enc.side, enc.cbr
        enc_ms = (time.perf_counter() - t0) * 1e3
        frames = framing.make_frames(s, image_id=int(image_id), height=h, width=w,
                                     symbols_per_location=enc.symbols_per_location, model_sha256=self.codec.sha256,
                                     cfg=self.cfg, side=side, mode=enc.mode)
        for fh, payload in frames:
            meta = {"image_id": fh.image_id, "frame_index": fh.frame_index, "frame_count": fh.frame_count,
                    "height": h, "width": w, "symbols_per_location": enc.symbols_per_location, "cbr": cbr,
                    "model_sha256": self.codec.sha256, "name": name}
            self.message_port_pub(pmt.intern("frames"),
                                  pdu(meta, framing.frame_symbols(fh, payload, self.cfg, side)))
        self.frames_sent += len(frames)
        # after the image's last burst, zeros that fill the receiver's look-ahead
        self.message_port_pub(pmt.intern("flush"), to_pmt({"after": self.frames_sent,
                                                            "samples": self.flush_samples}))
        return {"image_id": int(image_id) & 0xFFFF, "frames": len(frames), "encode_ms": enc_ms,
                "n_symbols": int(s.size), "cbr": cbr, "fields": enc.fields}
