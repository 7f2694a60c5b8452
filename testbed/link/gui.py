"""``--gui``: a live view of a running link in one window, built from GNU Radio's QT GUI sinks.

* the spectrum of the samples entering the receiver (``qtgui.freq_sink_c``);
* the equalised payload symbols of each received frame (``qtgui.const_sink_c``): a Gaussian-like
  cloud for analog JSCC, QAM points for a digital codec;
* the per-frame SNR estimates over time (``qtgui.time_sink_f``);
* the latest reconstructed image, with its name, frames and PSNR.

:meth:`LiveView.wrap` puts the sinks into a link's flowgraph (the medium's ``connect`` is given
a pass-through in place of the receiver, and the sinks and the receiver both read from it), so
every front-end gets the same view. :meth:`LiveView.run` runs the experiment on a worker thread
while the Qt event loop runs on the main one; closing the window or Ctrl-C stops the run at its
next safe point, as Ctrl-C does without ``--gui``.

Qt needs a display: with none (no ``DISPLAY``/``WAYLAND_DISPLAY``) set
``QT_QPA_PLATFORM=offscreen`` (headless, e.g. for tests or ``--gui-snapshot``).
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class GuiUnavailable(RuntimeError):
    """``--gui`` cannot open a window here (no display, no Qt)."""


def check_display() -> None:
    if os.environ.get("QT_QPA_PLATFORM") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    raise GuiUnavailable("--gui needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set; "
                         "for a headless run set QT_QPA_PLATFORM=offscreen")


class LiveView:
    def __init__(self, samp_rate: float, *, title: str = "testbed", center_hz: float = 0.0,
                 snapshot: str | Path | None = None):
        check_display()
        try:
            from gnuradio import qtgui
            from gnuradio.fft import window
            from PyQt5 import Qt, QtCore, sip
        except ImportError as e:
            raise GuiUnavailable(f"--gui needs GNU Radio's QT GUI and PyQt5 ({e})") from e
        from ..gr.image_view import image_view
        from ..gr.live_tap import live_tap

        self._Qt = Qt
        self.app = Qt.QApplication.instance() or Qt.QApplication([sys.argv[0] if sys.argv else "testbed"])
        self.snapshot = Path(snapshot) if snapshot else None
        self.stop_requested = threading.Event()
        self.tap = live_tap()

        self.spectrum = qtgui.freq_sink_c(1024, window.WIN_BLACKMAN_hARRIS, float(center_hz), float(samp_rate),
                                          "received spectrum", 1, None)
        self.spectrum.set_update_time(0.1)
        self.spectrum.enable_autoscale(True)
        self.constellation = qtgui.const_sink_c(self.tap.max_symbols, "equalised payload", 0, None)   # 0 inputs: PDUs on "in"
        self.constellation.set_update_time(0.1)
        self.constellation.set_x_axis(-2.0, 2.0)
        self.constellation.set_y_axis(-2.0, 2.0)
        self.snr_plot = qtgui.time_sink_f(self.tap.snr_db.maxlen, 1.0, "per-frame SNR estimate (dB) vs frame", 0, None)
        self.snr_plot.set_update_time(0.1)
        self.snr_plot.enable_autoscale(True)
        self.snr_plot.set_y_label("SNR", "dB")

        for sink in (self.spectrum, self.constellation, self.snr_plot):
            sink.disable_legend()
        self.window = w = Qt.QWidget()
        w.setWindowTitle(title)
        grid = Qt.QGridLayout(w)
        for i, sink in enumerate((self.spectrum, self.constellation, self.snr_plot)):
            grid.addWidget(sip.wrapinstance(sink.qwidget(), Qt.QWidget), i // 2, i % 2)
        self.image = image_view()
        grid.addWidget(self.image.widget, 1, 1)
        w.resize(1100, 760)

        view = self

        class _Bridge(QtCore.QObject):          # hands events from the worker to the GUI thread
            done = QtCore.pyqtSignal()
            rate = QtCore.pyqtSignal(float)

        self._bridge = _Bridge()
        self._bridge.done.connect(self._finish)
        self._bridge.rate.connect(lambda fs: self.spectrum.set_frequency_range(self._center_hz, fs))
        self._center_hz = float(center_hz)

        def close_event(ev, _orig=w.closeEvent):
            if not view.stop_requested.is_set() and not view._finished:
                log.warning("window closed: stopping the run")
            view.stop_requested.set()
            _orig(ev)

        w.closeEvent = close_event
        self._finished = False

    # -- the flowgraph side (any thread) --------------------------------------------------------
    def wrap(self, connect, samp_rate: float | None = None):
        """``connect(tb, tx, rx)`` of a medium -> the same with the view's sinks attached
        (``samp_rate``: the link's, for the spectrum's axis)."""
        from gnuradio import blocks, gr

        if samp_rate is not None:
            self._bridge.rate.emit(float(samp_rate))

        def wired(tb, tx, rx):
            tap = blocks.copy(gr.sizeof_gr_complex)
            keep = connect(tb, tx, tap)
            tb.connect(tap, rx)
            tb.connect(tap, self.spectrum)
            tb.msg_connect(rx, "frames", self.tap, "frames")
            tb.msg_connect(self.tap, "symbols", self.constellation, "in")
            tb.msg_connect(self.tap, "snr", self.snr_plot, "in")
            return [*(keep or []), tap]
        return wired

    def show_image(self, img: np.ndarray | None, caption: str) -> None:
        """Show a reconstructed image ([H, W, 3] uint8; None: the caption only)."""
        self.image.show(img, caption)

    def check(self) -> None:
        """Raise KeyboardInterrupt once the window was closed or Ctrl-C was pressed."""
        if self.stop_requested.is_set():
            raise KeyboardInterrupt

    # -- the GUI thread -------------------------------------------------------------------------
    def _finish(self) -> None:
        self._finished = True
        if self.snapshot is not None:
            t_end = time.monotonic() + 0.3          # the sinks redraw every 0.1 s: show the last frames
            while time.monotonic() < t_end:
                self.app.processEvents()
                time.sleep(0.01)
            self.snapshot.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.snapshot.with_name(self.snapshot.name + ".part.png")
            if self.window.grab().save(str(tmp), "PNG"):
                os.replace(tmp, self.snapshot)
                log.info("live view saved to %s", self.snapshot)
            else:
                log.warning("could not save the live view to %s", self.snapshot)
        self.window.close()
        self.app.quit()

    def run(self, work):
        """``work()`` on a worker thread while the window is shown; returns its result (or raises
        its exception) once it has finished and the window is closed."""
        Qt = self._Qt
        result: dict = {}

        def target():
            try:
                result["value"] = work()
            except BaseException as e:   # handed to the main thread
                result["error"] = e
            finally:
                self._bridge.done.emit()

        def on_sigint(signum, frame):
            if self.stop_requested.is_set():
                log.warning("second Ctrl-C: aborting")
                os._exit(130)
            log.warning("interrupted: stopping the flowgraph (Ctrl-C again to abort)")
            self.stop_requested.set()

        prev = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() else None
        timer = Qt.QTimer()
        timer.timeout.connect(lambda: None)    # lets Python run its signal handlers while Qt waits
        timer.start(100)
        self.window.show()
        worker = threading.Thread(target=target, name="testbed-run", daemon=True)
        worker.start()
        try:
            self.app.exec_()
        finally:
            timer.stop()
            if prev is not None:
                signal.signal(signal.SIGINT, prev)
        worker.join()
        log.info("live view: %d image(s) shown, %d frame(s) plotted", self.image.shown, self.tap.frames)
        if "error" in result:
            raise result["error"]
        return result.get("value")
