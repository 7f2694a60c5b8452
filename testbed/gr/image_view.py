"""``image_view``: a Qt widget block that shows the latest reconstructed image.

In: ``images``, the JSCC decoder's image PDUs (metadata ``height``, ``width``, and what the
decoder knows: ``image_id``, ``frames_decoded``, ``psnr_db``, ``snr_est_db``). Build it in the Qt
GUI thread (as GRC's generated ``qt_gui`` flowgraphs do); :meth:`show` may be called from any
thread. ``widget`` is the QWidget to lay out.
"""
from __future__ import annotations

import numpy as np
import pmt
from gnuradio import gr

from .pmtutil import image_from_pdu


def _num(v, fmt: str) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "-"
    return format(v, fmt) if np.isfinite(v) else "-"


def caption_of(meta: dict) -> str:
    name = meta.get("name") or f"image {meta.get('image_id', '?')}"
    return (f"{name}: {meta.get('frames_decoded', '?')} frames, PSNR {_num(meta.get('psnr_db'), '.2f')} dB, "
            f"SNR est. {_num(meta.get('snr_est_db'), '.1f')} dB")


class image_view(gr.basic_block):
    def __init__(self, enabled: bool = True):
        gr.basic_block.__init__(self, name="image_view", in_sig=None, out_sig=None)
        from PyQt5 import Qt, QtCore

        self.enabled = bool(enabled)
        self.shown = 0
        self._Qt = Qt
        self.widget = Qt.QWidget()
        box = Qt.QVBoxLayout(self.widget)
        self.label = Qt.QLabel("waiting for the first image ...")
        self.label.setAlignment(QtCore.Qt.AlignCenter)
        self.label.setMinimumSize(320, 240)
        self.caption = Qt.QLabel("")
        box.addWidget(self.label, 1)
        box.addWidget(self.caption)

        class _Bridge(QtCore.QObject):     # hands images from any thread to the GUI thread
            image = QtCore.pyqtSignal(object, str)

        self._bridge = _Bridge()
        self._bridge.image.connect(self._show)
        self.message_port_register_in(pmt.intern("images"))
        self.set_msg_handler(pmt.intern("images"), self._handle)

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = bool(enabled)

    def show(self, img: np.ndarray | None, caption: str) -> None:
        """Show ``img`` ([H, W, 3] uint8; None: the caption only)."""
        self._bridge.image.emit(None if img is None else np.ascontiguousarray(img, np.uint8), caption)

    def _handle(self, msg) -> None:
        if not self.enabled:
            return
        try:
            meta, img = image_from_pdu(msg)
        except (ValueError, KeyError, TypeError):
            return                  # not an image PDU: nothing to show
        self.show(img, caption_of(meta))

    def _show(self, img, caption: str) -> None:
        Qt = self._Qt
        if img is not None:
            h, w = img.shape[:2]
            pix = Qt.QPixmap.fromImage(Qt.QImage(img.data, w, h, 3 * w, Qt.QImage.Format_RGB888).copy())
            self.label.setPixmap(pix.scaled(self.label.size(), 1, 1))   # keep the aspect ratio, smooth
            self.shown += 1
        self.caption.setText(caption)
