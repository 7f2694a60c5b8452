"""Image sink: writes each decoded image (PNG) and its QoS record (``qos.csv``, one flushed row
per image) into a run folder. In a folder that holds an earlier run's, the rows are appended and
the PNG numbering continues after the earlier images (never overwritten)."""
from __future__ import annotations

import datetime as dt
import io
import logging
import re
from pathlib import Path

import pmt
from gnuradio import gr

from .pmtutil import image_from_pdu

log = logging.getLogger(__name__)
FIELDS = ["time", "image_id", "height", "width", "frames_expected", "frames_decoded", "missing_frames",
          "snr_est_db", "snr_eff_db", "cfo_est_hz", "psnr_db", "decode_ms"]


def next_image_index(out: Path) -> int:
    """The number after the highest ``image_NNNNN_id*.png`` already in ``out`` (0 if none)."""
    idx = [int(m.group(1)) for p in out.glob("image_*_id*.png") if (m := re.match(r"image_(\d+)_id", p.name))]
    return max(idx) + 1 if idx else 0


class image_sink(gr.basic_block):
    def __init__(self, out_dir: str = "runs/grc"):
        gr.basic_block.__init__(self, name="image_sink", in_sig=None, out_sig=None)
        from ..core.runlog import CsvLog

        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = CsvLog(self.out / "qos.csv", FIELDS, resume=(self.out / "qos.csv").exists())
        self.count = next_image_index(self.out)
        self.errors = 0            # messages dropped or not written (logged)
        self.message_port_register_in(pmt.intern("images"))
        self.set_msg_handler(pmt.intern("images"), self._handle)

    def _handle(self, msg):
        from PIL import Image

        from ..core.runlog import write_bytes_atomic

        try:
            meta, img = image_from_pdu(msg)
        except Exception as e:
            log.warning("image_sink: malformed message dropped (%s)", e)
            self.errors += 1
            return
        try:   # an exception would stop this block's message handling for good
            buf = io.BytesIO()   # written atomically: a killed run leaves no truncated PNG
            Image.fromarray(img).save(buf, format="PNG")
            write_bytes_atomic(self.out / f"image_{self.count:05d}_id{int(meta.get('image_id', -1))}.png",
                               buf.getvalue())
            self.log.append({"time": dt.datetime.now().isoformat(timespec="milliseconds"),
                             **{k: meta.get(k) for k in FIELDS if k != "time"}})
        except Exception as e:   # e.g. a full disk
            self.errors += 1
            log.warning("image_sink: image %s not written (%s: %s)", meta.get("image_id"), type(e).__name__, e)
            return
        finally:
            self.count += 1
        log.info("image %d: %s", self.count, {k: meta.get(k) for k in ("snr_est_db", "psnr_db", "frames_decoded")})
