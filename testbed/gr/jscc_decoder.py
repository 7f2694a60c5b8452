"""JSCC decoder block: equalised frames in, images and QoS records out (adapter of
:class:`testbed.phy.framing.Reassembler` and any :class:`testbed.core.codecs.Codec`).

Message input ``frames`` (from ``ofdm_rx``); optional ``reference``: the transmitted image as an
image PDU (metadata ``image_id``, ``height``, ``width``), for PSNR in the QoS record. Message output ``images``: a PDU per image whose
data is the RGB image and whose metadata is the QoS record (PSNR when the reference is known,
estimated SNR and CFO, frames decoded and missing, latency). ``on_image`` (a callable) receives
the same record and the image, e.g. to write the run log. Missing frames are zero-filled.

An image is decoded when its last frame arrives or the next image's first one does. With
``idle_flush_s`` > 0 (the GRC default), an image whose last frames were lost is decoded after that
many seconds without frames, and when the flowgraph stops; images still waiting for their
reference are then published without PSNR. Without it, the caller calls :meth:`flush`
(``testbed loopback``/``ota`` do, on their own idle timer).
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pmt
from gnuradio import gr

from ..core.metrics import psnr
from ..core.wire import SideInfo
from ..phy import framing
from ..phy.header import FrameHeader
from .pmtutil import image_from_pdu, pdu, split_pdu

log = logging.getLogger(__name__)


class jscc_decoder(gr.basic_block):
    def __init__(self, codec, on_image=None, references: dict | None = None, idle_flush_s: float = 0.0):
        gr.basic_block.__init__(self, name="jscc_decoder", in_sig=None, out_sig=None)
        idle_flush_s = float(idle_flush_s)
        if not (np.isfinite(idle_flush_s) and idle_flush_s >= 0):
            raise ValueError(f"jscc_decoder: idle_flush_s must be >= 0 seconds, got {idle_flush_s}")
        self.idle_flush_s = idle_flush_s
        self._idle_stop = threading.Event()
        self._idle_thread: threading.Thread | None = None
        self._busy = False
        self.last_activity = time.monotonic()   # end of the last frame's handling (decoding included)
        # model hash (32 bit, in every header) -> codec; every codec ever added stays known: an
        # image is decoded with the codec its header names, so the transmitter may switch at any image
        self.codecs: dict[int, object] = {}
        self.add_codec(codec)
        self.on_image = on_image
        self.references = references if references is not None else {}
        self.reasm = framing.Reassembler(self._symbol_count)
        self.lock = threading.Lock()
        # decoding and publishing run in the message handler, in flush() (the caller's or the idle
        # timer's thread) and for deferred references: one at a time
        self.decode_lock = threading.RLock()
        self.frames_received = 0
        self.images_decoded = 0
        self.last_snr_db = float("nan")
        self.wrong_model = 0
        self.wrong_kb = 0          # images whose side information this receiver cannot use (another source KB)
        self.decode_errors = 0     # images the codec failed on (logged, dropped)
        self.callback_errors = 0   # exceptions raised by on_image (logged; the image is still published)
        self.malformed = 0         # frame messages that could not be read or placed (logged, dropped)
        self.expect_references = False   # set once a reference message arrives
        self.deferred: dict[int, tuple[dict, np.ndarray]] = {}
        self.message_port_register_in(pmt.intern("frames"))
        self.message_port_register_out(pmt.intern("images"))
        self.set_msg_handler(pmt.intern("frames"), self._handle)
        self.message_port_register_in(pmt.intern("reference"))
        self.set_msg_handler(pmt.intern("reference"), self._reference)

    def add_codec(self, codec) -> None:
        self.codecs[framing.model_hash32(codec.sha256)] = codec

    def _symbol_count(self, h: FrameHeader, side: SideInfo | None) -> int:
        """Symbols of the image a frame belongs to, as its codec counts them. An image of a model
        this receiver lacks is not decoded (``wrong_model``); a codec of the same rate kind sizes it."""
        codec = self.codecs.get(h.model_hash)
        if codec is None:
            codec = next((c for c in self.codecs.values() if c.variable_rate == (side is not None)), None)
        if codec is None:
            return framing.fixed_rate_symbols(h) if side is None else h.n_payload * h.frame_count
        return codec.n_symbols(h.symbols_per_location, side, h.height, h.width)

    def _reference(self, msg):
        try:
            meta, img = image_from_pdu(msg)
            iid = int(meta["image_id"]) & 0xFFFF
            self.references[iid] = img
        except Exception as e:
            log.warning("jscc_decoder: bad reference message dropped (%s)", e)
            return
        self.expect_references = True
        with self.decode_lock:
            if iid in self.deferred:      # decoded before its reference was read: finish it now
                record, rec = self.deferred.pop(iid)
                self._finish(record, rec)
        while len(self.references) > 64:          # keep the recent ones only
            self.references.pop(next(iter(self.references)))

    def _handle(self, msg):
        self._busy = True           # the idle timer must not flush while a frame is being handled
        try:
            self._handle_frame(msg)
        finally:
            self.last_activity = time.monotonic()
            self._busy = False

    def _handle_frame(self, msg):
        try:
            meta, data = split_pdu(msg)
            h = FrameHeader(**{k[2:]: int(v) for k, v in meta.items() if k.startswith("h_")})
            h = FrameHeader.from_bytes(h.to_bytes())   # field ranges and consistency, as on air
            side = None
            if "side_levels" in meta:
                side = SideInfo(kb_index=int(meta["side_kb_index"]), kb_hash=int(meta.get("side_kb_hash", 0)),
                                levels=np.asarray(meta["side_levels"], np.int64).reshape(
                                    int(meta["side_hb"]), int(meta["side_wb"])))
            fr = framing.FrameRx(header=h, symbols=np.asarray(data, np.complex64),
                                 snr_db=float(meta.get("snr_eff_db", meta.get("snr_db"))),
                                 cfo_hz=float(meta.get("cfo_hz", float("nan"))),
                                 extra={"snr_db": float(meta.get("snr_db", float("nan")))}, side=side)
        except Exception as e:
            self.malformed += 1
            log.warning("jscc_decoder: malformed frame dropped (%s)", e)
            return
        with self.lock:
            self.frames_received += 1
            self.last_snr_db = fr.extra["snr_db"]
            try:   # an exception would stop this block's message handling for good
                done = self.reasm.add(fr)
            except Exception as e:
                self.malformed += 1
                log.warning("jscc_decoder: frame %s dropped (%s: %s)", h, type(e).__name__, e)
                return
        with self.decode_lock:
            for img in done:
                self._decode(img)

    def flush(self) -> None:
        """Decode the image being received, with its missing frames zero-filled."""
        with self.decode_lock:
            with self.lock:
                done = self.reasm.flush()
            for img in done:
                self._decode(img)

    def finish_deferred(self) -> None:
        """Publish the images still waiting for their reference, without PSNR."""
        with self.decode_lock:
            while self.deferred:
                self._finish(*self.deferred.pop(next(iter(self.deferred))))

    # -- idle flush (idle_flush_s > 0) ---------------------------------------------------------
    def start(self) -> bool:
        if self.idle_flush_s > 0 and self._idle_thread is None:
            self._idle_stop.clear()
            self._idle_thread = threading.Thread(target=self._idle_loop, name="jscc_decoder-idle", daemon=True)
            self._idle_thread.start()
        return True

    def stop(self) -> bool:
        if self._idle_thread is not None:
            self._idle_stop.set()
            self._idle_thread.join()
            self._idle_thread = None
            self.flush()
            self.finish_deferred()
        return True

    def _idle_loop(self) -> None:
        # quiet = no frame handled for idle_flush_s: measured from the end of the last handling, so
        # that frames queued behind a slow decode (a loaded machine) are not cut off from their image
        flushed_at = None     # last_activity of the last flush: one flush per quiet spell
        while not self._idle_stop.wait(min(0.1, self.idle_flush_s / 4)):
            t = self.last_activity
            if not self._busy and t != flushed_at and time.monotonic() - t > self.idle_flush_s:
                flushed_at = t
                try:
                    self.flush()
                    self.finish_deferred()
                except Exception as e:    # never let the timer die silently
                    log.warning("jscc_decoder: idle flush failed (%s: %s)", type(e).__name__, e)

    def _decode(self, img: framing.ImageRx) -> None:
        # runs in the message handler: an exception would stop this block's message handling for good
        try:
            self._decode_image(img)
        except Exception as e:
            self.decode_errors += 1
            log.warning("image %d not decoded (%s: %s)", img.image_id, type(e).__name__, e)

    def _decode_image(self, img: framing.ImageRx) -> None:
        codec = self.codecs.get(img.model_hash)
        if codec is None:
            self.wrong_model += 1
            log.warning("image %d was sent with model %08x, this receiver has %s; not decoded",
                        img.image_id, img.model_hash, ", ".join(c.sha256[:8] for c in self.codecs.values()))
            return
        if img.missing_frames:
            log.warning("image %d: frames %s of %d missing; their symbols are zero-filled",
                        img.image_id, img.missing_frames, img.frame_count)
        snr_eff = img.snr_db()
        t0 = time.perf_counter()
        snr_dec = snr_eff if np.isfinite(snr_eff) else 10.0
        why = codec.check_side(img.side)
        if why is not None:
            self.wrong_kb += 1
            log.warning("image %d: %s; not decoded", img.image_id, why)
            return
        # an exception (e.g. a KB index this receiver's KB does not have) is logged by _decode
        rec = codec.decode(img.stream, snr_dec, img.height, img.width, side=img.side, mode=img.mode,
                           symbol_snr_db=img.symbol_snr_db())
        dec_ms = (time.perf_counter() - t0) * 1e3
        ch_snr = [f.extra["snr_db"] for f in img.frames.values()]
        record = {
            "image_id": img.image_id, "height": img.height, "width": img.width,
            **codec.received_fields(img.symbols_per_location, img.side, img.height, img.width),
            "frames_expected": img.frame_count, "frames_decoded": img.frames_decoded,
            "missing_frames": img.missing_frames,
            "snr_est_db": float(10 * np.log10(np.mean([10 ** (s / 10) for s in ch_snr]))) if ch_snr else float("nan"),
            "snr_eff_db": snr_eff, "cfo_est_hz": img.cfo_hz(), "decode_ms": dec_ms,
            "decoded_at": time.monotonic(), "model_sha256": codec.sha256, **codec.decoded_fields(),
        }
        ref = self.references.get(img.image_id)
        if ref is not None:         # (after the timing: a digital codec re-encodes the image sent)
            record.update(codec.reference_fields(ref, img.symbols_per_location, img.mode))
        if img.image_id not in self.references and self.expect_references:
            # the reference travels on another port and may be read after the frames
            self.deferred[img.image_id] = (record, rec)
            while len(self.deferred) > 4:   # never arrived: give up on the oldest
                old_id = next(iter(self.deferred))
                self._finish(*self.deferred.pop(old_id))
            return
        self._finish(record, rec)

    def _finish(self, record: dict, rec: np.ndarray) -> None:
        ref = self.references.get(record["image_id"])
        if ref is not None and ref.shape == rec.shape:
            record["psnr_db"] = psnr(ref, rec)
        self.images_decoded += 1
        if self.on_image is not None:
            try:
                self.on_image(record, rec)
            except Exception as e:   # the caller's bug must not stop the receiver
                self.callback_errors += 1
                log.warning("image %d: on_image failed (%s: %s)", record["image_id"], type(e).__name__, e)
        meta = {k: v for k, v in record.items() if k != "missing_frames"}
        meta["missing_frames"] = ",".join(map(str, record["missing_frames"]))
        self.message_port_pub(pmt.intern("images"), pdu(meta, rec.reshape(-1)))

