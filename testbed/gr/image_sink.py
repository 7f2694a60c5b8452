"""Image sink: writes each decoded image (PNG) and its QoS record (``qos.csv``, one flushed row
per image) into a run folder."""
from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np
import pmt
from gnuradio import gr

from .pmtutil import split_pdu

log = logging.getLogger(__name__)
FIELDS = ["time", "image_id", "height", "width", "frames_expected", "frames_decoded", "missing_frames",
          "snr_est_db", "snr_eff_db", "cfo_est_hz", "psnr_db", "decode_ms"]


class image_sink(gr.basic_block):
    def __init__(self, out_dir: str = "runs/grc"):
        gr.basic_block.__init__(self, name="image_sink", in_sig=None, out_sig=None)
        from ..runlog import CsvLog

        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = CsvLog(self.out / "qos.csv", FIELDS, resume=(self.out / "qos.csv").exists())
        self.count = 0
        self.message_port_register_in(pmt.intern("images"))
        self.set_msg_handler(pmt.intern("images"), self._handle)

    def _handle(self, msg):
        from PIL import Image

        try:
            meta, data = split_pdu(msg)
            img = np.asarray(data, np.uint8).reshape(int(meta["height"]), int(meta["width"]), 3)
        except Exception as e:
            log.warning("image_sink: malformed message dropped (%s)", e)
            return
        Image.fromarray(img).save(self.out / f"image_{self.count:05d}_id{int(meta['image_id'])}.png")
        self.log.append({"time": dt.datetime.now().isoformat(timespec="milliseconds"),
                         **{k: meta.get(k) for k in FIELDS if k != "time"}})
        self.count += 1
        log.info("image %d: %s", self.count, {k: meta.get(k) for k in ("snr_est_db", "psnr_db", "frames_decoded")})
