"""One transmission run through a real GNU Radio flowgraph: JSCC encoder -> OFDM TX -> medium ->
OFDM RX -> JSCC decoder, over a list of images. The medium (loopback channel, a radio front-end,
a recording) is wired by the caller's ``connect(tb, tx, rx)``; the PHY never knows which.
Used by ``testbed loopback`` and ``testbed ota``.
"""
from __future__ import annotations

import logging
import queue
import time

import numpy as np

log = logging.getLogger(__name__)


def queued(q: "queue.Queue", block: bool = False, timeout_s: float = 0.2):
    """Everything waiting in ``q``; with ``block``, first wait up to ``timeout_s`` for one item."""
    while True:
        try:
            yield q.get(timeout=timeout_s) if block else q.get_nowait()
        except queue.Empty:
            return
        block = False


def run_link(codec, rate, images, *, cfg, tx_snr_db: float, connect, make_row, emit,
             idle_s: float = 3.0, check=None, adapt_snr: bool = False, flush_samples: int | None = None,
             on_sent=None, view=None) -> dict:
    """Send every image of ``images`` [(path, array)] with ``codec`` at ``rate`` (its
    :meth:`~testbed.core.codecs.Codec.rate`), emit one row per image, return PHY counters.

    ``make_row(path, ref, img_or_None, record, sent_info)`` builds a row; ``adapt_snr``: the
    encoder is told the SNR the receiver last estimated (closed loop), starting from ``tx_snr_db``;
    each image is then encoded only once the previous one is decoded (or no frame came for
    ``idle_s``), so that its estimate is known. Without it, every image is queued at once.
    ``on_sent(sent_info)``: called as each image is queued (image_id, frames, cbr, tx_snr_db, ...).
    ``view``: a :class:`testbed.link.gui.LiveView` (``--gui``), shown the signals and each image.
    """
    from ..core.cputime import Snapshot, format_usage, usage
    from .session import build_link

    check = check or (lambda: None)
    if view is not None:
        connect, user_check = view.wrap(connect, cfg.samp_rate), check

        def check():
            user_check()
            view.check()
    refs: dict[int, np.ndarray] = {}
    done_q: "queue.Queue[tuple[dict, np.ndarray]]" = queue.Queue()
    link = build_link("jscc_link", codec, cfg, connect, references=refs,
                      on_image=lambda rec, img: done_q.put((rec, img)), flush_samples=flush_samples,
                      snr_db=tx_snr_db, symbols_per_location=rate.symbols_per_location or None, cbr=rate.cbr,
                      **rate.options)
    tb, enc, tx, rx, dec = link.tb, link.enc, link.tx, link.rx, link.dec
    sent: dict[int, dict] = {}
    by_id = {}
    finished = 0
    t_start = time.monotonic()

    def drain(block: bool = False):
        nonlocal finished
        for rec, img in queued(done_q, block):
            s = sent.get(rec["image_id"])
            if s is None:
                log.warning("decoded image id %d that was not sent in this run; ignored", rec["image_id"])
                continue
            path, ref = by_id[rec["image_id"]]
            emit(make_row(path, ref, img, rec, s))
            if view is not None:
                view.show_image(img, _caption(path, rec, s))
            s["done"] = True
            finished += 1
            if adapt_snr and np.isfinite(rec.get("snr_est_db", float("nan"))):
                enc.snr_db = float(rec["snr_est_db"])
            check()

    def wait_decoded(iid: int) -> None:
        """Until image ``iid`` is decoded, or no frame came for ``idle_s`` (then what arrived of it
        is decoded, if anything)."""
        flushed = False
        while not sent[iid]["done"]:
            check()
            drain(block=True)
            if not sent[iid]["done"] and time.monotonic() - max(dec.last_activity, sent[iid]["t_queued"]) > idle_s:
                if flushed:
                    return
                dec.flush()
                flushed = True

    cpu0 = Snapshot()
    tb.start()
    try:
        prev = None
        for i, (path, img) in enumerate(images):
            check()
            if adapt_snr and prev is not None:
                wait_decoded(prev)
            refs[i & 0xFFFF] = img
            by_id[i & 0xFFFF] = (path, img)
            t0 = time.monotonic()
            info = enc.send(img, image_id=i, name=path.name)
            prev = info["image_id"]
            sent[prev] = {**info, "t_sent": t0, "t_queued": time.monotonic(), "done": False, "tx_snr_db": enc.snr_db}
            if on_sent is not None:
                on_sent(sent[prev])
            drain()
        # wait for the receiver: all images back, or no frame for idle_s
        while finished < len(images):
            check()
            drain(block=True)
            if time.monotonic() - max(dec.last_activity, sent[max(sent)]["t_sent"]) > idle_s:
                break
        dec.flush()
        drain()
        cpu = usage(cpu0)   # before the stop ends the blocks' threads
    finally:
        tb.stop()
        tb.wait()
    for iid, s in sent.items():   # images of which not one frame arrived
        if not s["done"]:
            path, ref = by_id[iid]
            emit(make_row(path, ref, None, {"frames_decoded": 0, "missing_frames": list(range(s["frames"]))}, s))
    wall = time.monotonic() - t_start
    log.info("%s", format_usage(cpu, wall))
    tx_samples = tx.samples_sent()
    return {**rx.counters(), "frames_sent": enc.frames_sent, "frames_delivered": dec.frames_received,
            "tx_samples": tx_samples, "samples_per_s": tx_samples / wall,
            "real_time_factor": tx_samples / wall / cfg.samp_rate,
            "wrong_model": dec.wrong_model, "wrong_kb": dec.wrong_kb, "late_frames": dec.reasm.late,
            "tx_bursts": tx.bursts_sent(),
            "tx_clipped_samples": tx.clipped_samples(), "wall_s": wall,
            **cpu}


def _caption(path, rec: dict, sent: dict) -> str:
    from ..gr.image_view import caption_of

    return caption_of({**rec, "name": path.name, "frames_decoded": f"{rec.get('frames_decoded', 0)}/{sent['frames']}"})
