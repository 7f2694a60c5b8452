"""Image source: posts the images of a folder as PDUs (RGB u8vector; metadata height, width,
image_id, name) on ``image``, one every ``period_s`` seconds, ``repeat`` times over."""
from __future__ import annotations

import logging
import threading

import pmt
from gnuradio import gr

from .pmtutil import pdu

log = logging.getLogger(__name__)


class image_source(gr.basic_block):
    def __init__(self, folder: str = "", period_s: float = 1.0, repeat: int = 1):
        gr.basic_block.__init__(self, name="image_source", in_sig=None, out_sig=None)
        from ..core.images import load_images
        from ..core.paths import samples_dir

        self.images, _ = load_images(folder or str(samples_dir()))
        self.period_s, self.repeat = float(period_s), int(repeat)
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.message_port_register_out(pmt.intern("image"))

    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return True

    def stop(self):
        self._stop.set()
        return True

    def _run(self):
        i = 0
        for _ in range(self.repeat):
            for path, img in self.images:
                if self._stop.wait(self.period_s if i else 0.2):
                    return
                h, w = img.shape[:2]
                self.message_port_pub(pmt.intern("image"), pdu(
                    {"height": h, "width": w, "image_id": i & 0xFFFF, "name": path.name}, img.reshape(-1)))
                self.sent += 1
                i += 1
