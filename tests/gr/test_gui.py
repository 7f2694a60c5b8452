"""``--gui``: the live view (QT GUI sinks, the latest image) on Qt's offscreen platform; each run
in a process of its own (Qt's application and the flowgraphs' shared memory live per process)."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pmt
import pytest
from PIL import Image

from testbed.core.runlog import read_csv_rows
from tests.helpers import SAMPLES, run_entry_point

REPO = Path(__file__).resolve().parents[2]

qt = pytest.importorskip("PyQt5")
pytest.importorskip("gnuradio.qtgui")


def _env(**kw):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    return {**env, **kw}


def test_gui_loopback_shows_every_image_and_stops_cleanly(tmp_path):
    """Two SNRs (two flowgraphs, the same sinks): every decoded image reaches the window, the
    window is saved at the end, and the run's results are those of a run without --gui."""
    out, snap = tmp_path / "run", tmp_path / "view.png"
    p = run_entry_point("loopback", "-v", "--gui", "--gui-snapshot", snap, "--snr-db", "8,20", "--no-ms-ssim",
                        "--images", SAMPLES / "kodim23.png", "--out", out, "--json",
                        env=_env(QT_QPA_PLATFORM="offscreen"), timeout=600)
    j = json.loads(p.stdout)
    rows = read_csv_rows(out / "results.csv")
    assert len(rows) == 2 and all(int(r["frames_decoded"]) == int(r["frames_sent"]) > 0 for r in rows)
    assert [r["snr_db"] for r in j["results"]] == [8.0, 20.0]
    m = re.search(r"live view: (\d+) image\(s\) shown, (\d+) frame\(s\) plotted", p.stderr)
    assert m, p.stderr[-2000:]
    assert int(m.group(1)) == 2
    assert int(m.group(2)) == sum(int(r["frames_decoded"]) for r in rows)
    img = np.asarray(Image.open(snap).convert("RGB"), np.float32)
    assert img.shape[0] >= 400 and img.shape[1] >= 600
    assert img.std() > 10          # plots and the image, not an empty window
    assert not list(tmp_path.glob("*.part.png"))


def test_gui_ota_on_the_loopback_front_end(tmp_path):
    out, snap = tmp_path / "run", tmp_path / "ota.png"
    p = run_entry_point("ota", "-v", "--config", REPO / "firmware_configs" / "loopback.yaml", "--images",
                        SAMPLES / "kodim23.png", "--gui", "--gui-snapshot", snap, "--out", out, "--json",
                        env=_env(QT_QPA_PLATFORM="offscreen"), timeout=600)
    (row,) = read_csv_rows(out / "results.csv")
    assert int(row["frames_decoded"]) == int(row["frames_sent"]) > 0
    assert f"live view: 1 image(s) shown, {row['frames_decoded']} frame(s) plotted" in p.stderr
    assert snap.stat().st_size > 10_000 and json.loads(p.stdout)


def test_ctrl_c_with_gui_keeps_the_finished_rows(tmp_path):
    out = tmp_path / "run"
    exe = Path(sys.executable).parent / "testbed"
    proc = subprocess.Popen([str(exe), "loopback", "--gui", "--snr-db", "10", "--no-ms-ssim", "--images",
                             str(SAMPLES), "--out", str(out)], env=_env(QT_QPA_PLATFORM="offscreen"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t_end = time.monotonic() + 300
        while time.monotonic() < t_end and proc.poll() is None:
            if (out / "results.csv").exists() and len(read_csv_rows(out / "results.csv")) >= 1:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]          # as Ctrl-C without --gui
    assert "stopping the flowgraph" in err and "finished results were kept" in err and "Traceback" not in err
    rows = read_csv_rows(out / "results.csv")
    assert 1 <= len(rows) <= 3
    assert json.loads((out / "summary.json").read_text())["interrupted"] is True


def test_gui_without_a_display_says_how_to_run_headless(tmp_path):
    p = run_entry_point("loopback", "--gui", "--images", SAMPLES / "kodim23.png", "--out", tmp_path / "r",
                        env=_env(), check=False, timeout=300)
    assert p.returncode == 2
    assert "DISPLAY" in p.stderr and "QT_QPA_PLATFORM=offscreen" in p.stderr
    assert "Traceback" not in p.stderr


def test_gui_snapshot_needs_gui(tmp_path):
    p = run_entry_point("loopback", "--gui-snapshot", tmp_path / "v.png", "--images", SAMPLES / "kodim23.png",
                        "--out", tmp_path / "r", check=False, timeout=300)
    assert p.returncode == 2 and "--gui-snapshot needs --gui" in p.stderr


def test_live_tap_turns_frames_into_plots():
    from testbed.gr.live_tap import live_tap
    from testbed.gr.pmtutil import pdu

    tap = live_tap(max_symbols=4, history=3)
    sent = []
    tap.message_port_pub = lambda port, msg: sent.append((pmt.symbol_to_string(port), msg))
    sym = (np.arange(6) + 1j).astype(np.complex64)
    for snr in (5.0, 6.0, float("nan"), 7.0, 8.0):
        tap._handle(pdu({"snr_db": snr}, sym))
    tap._handle(pmt.intern("not a pdu"))
    assert tap.frames == 5
    syms = [m for port, m in sent if port == "symbols"]
    snrs = [m for port, m in sent if port == "snr"]
    assert len(syms) == 5 and len(snrs) == 4            # a NaN estimate is not plotted
    np.testing.assert_array_equal(pmt.c32vector_elements(pmt.cdr(syms[0])), sym[:4])
    assert list(pmt.f32vector_elements(pmt.cdr(snrs[-1]))) == [6.0, 7.0, 8.0]   # the latest 3, oldest first
    tap.set_enabled(False)
    tap._handle(pdu({"snr_db": 9.0}, sym))
    assert tap.frames == 5 and len(sent) == 9
    with pytest.raises(ValueError, match="history"):
        live_tap(history=1)
