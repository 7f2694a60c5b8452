"""Every .grc in flowgraphs/ compiles with grcc against the installed testbed blocks; the
generated TX/RX hierarchical blocks carry frames like the Python PHY."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gnuradio.digital")
GRCC = shutil.which("grcc")
pytestmark = pytest.mark.skipif(GRCC is None, reason="grcc not installed")

REPO = Path(__file__).resolve().parents[2]
FLOWGRAPHS = sorted((REPO / "flowgraphs").glob("*.grc"))


def _grcc(grc: Path, out: Path) -> subprocess.CompletedProcess:
    from testbed.grc import BLOCKS_DIR

    env = {**os.environ, "GRC_BLOCKS_PATH": str(BLOCKS_DIR), "HOME": str(out)}  # hier blocks land in $HOME/.grc_gnuradio
    # the venv's interpreter, so that grcc can import the testbed package the blocks name
    return subprocess.run([sys.executable, GRCC, "-o", str(out), str(grc)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_there_are_flowgraphs():
    names = {p.name for p in FLOWGRAPHS}
    assert {"jscc_loopback.grc", "jscc_ofdm_tx.grc", "jscc_ofdm_rx.grc", "jscc_pluto.grc"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("grc", FLOWGRAPHS, ids=lambda p: p.name)
def test_grc_compiles(grc, tmp_path):
    p = _grcc(grc, tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert list(tmp_path.glob("*.py"))


@pytest.mark.slow
def test_generated_hier_blocks_carry_frames(tmp_path):
    for name in ("jscc_ofdm_tx.grc", "jscc_ofdm_rx.grc"):
        p = _grcc(REPO / "flowgraphs" / name, tmp_path)
        assert p.returncode == 0, p.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        import pmt
        from gnuradio import gr
        from jscc_ofdm_rx_hier import jscc_ofdm_rx_hier
        from jscc_ofdm_tx_hier import jscc_ofdm_tx_hier

        from testbed.gr.loopback_channel import loopback_channel
        from testbed.gr.phy_link import LinkResult, _collector, random_frames, symbol_snr_db
        from testbed.gr.pmtutil import pdu
        from testbed.phy.config import OfdmConfig

        cfg = OfdmConfig()
        frames, stream, _ = random_frames(2, cfg, seed=4)
        tb = gr.top_block()
        tx, rx, ch, col = jscc_ofdm_tx_hier(), jscc_ofdm_rx_hier(), loopback_channel(cfg, 15.0), _collector()
        tb.connect(tx, ch, rx)
        tb.msg_connect(rx, "frames", col, "in")
        tb.start()
        try:
            for f in frames:
                tx.mod.to_basic_block()._post(pmt.intern("frames"), pdu({}, f))
            deadline = time.time() + 30
            while len(col.got) < 2 and time.time() < deadline:
                time.sleep(0.05)
        finally:
            tb.stop()
            tb.wait()
        assert len(col.got) == 2
        assert min(symbol_snr_db(LinkResult(col.got, {}), stream)) > 14.0
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.slow
def _run_generated(tmp_path, grc: str, code: str) -> dict:
    """Compile ``grc``, then run ``code`` in a process of its own (Qt's application, offscreen; the
    flowgraph's shared memory) with the generated module importable and a QApplication made;
    ``code`` leaves its result, a JSON-able dict, in ``result``."""
    import json
    import textwrap

    p = _grcc(REPO / "flowgraphs" / grc, tmp_path)
    assert p.returncode == 0, p.stderr
    script = tmp_path / "run_generated.py"
    script.write_text("import json, sys, time\n"
                      f"sys.path.insert(0, {str(tmp_path)!r})\n"
                      "from PyQt5 import Qt\n"
                      "qapp = Qt.QApplication(sys.argv[:1])\n"
                      "result = {}\n" + textwrap.dedent(code) + "\nprint(json.dumps(result))\n")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


RUN_LOOPBACK = """
from jscc_loopback import jscc_loopback
from testbed.core.runlog import read_csv_rows
from pathlib import Path

out = Path(OUT)
tb = jscc_loopback(cfo_hz=1000.0, images="", model="jscc-v1", out_dir=str(out), snr_db=15.0, gui=GUI)
tb.start()
try:
    deadline = time.time() + 60
    while time.time() < deadline:
        qapp.processEvents()
        if (out / "qos.csv").exists() and len(read_csv_rows(out / "qos.csv")) >= 3:
            break
        time.sleep(0.05)
    t_end = time.time() + 0.5
    while time.time() < t_end:
        qapp.processEvents()
        time.sleep(0.02)
finally:
    tb.stop()
    tb.wait()
result.update(rows=read_csv_rows(out / "qos.csv"), pngs=len(list(out.glob("image_*.png"))),
              images_shown=tb.image_view.shown, frames_plotted=tb.live_tap.frames)
"""


@pytest.mark.parametrize("gui", [1, 0])
def test_generated_loopback_flowgraph_runs_and_logs_qos(tmp_path, gui):
    """The flowgraph decodes the shipped samples; with gui=1 its QT GUI sinks get every frame and
    the image view every image, with gui=0 nothing (a headless run)."""
    out = tmp_path / "run"
    r = _run_generated(tmp_path, "jscc_loopback.grc", RUN_LOOPBACK.replace("OUT", repr(str(out))).replace("GUI", str(gui)))
    rows = r["rows"]
    assert len(rows) == 3 and r["pngs"] == 3
    for row in rows:
        assert row["frames_decoded"] == row["frames_expected"]
        assert abs(float(row["snr_est_db"]) - 15.0) < 1.0 and abs(float(row["cfo_est_hz"]) - 1000.0) < 50
        assert float(row["psnr_db"]) > 20.0
    if gui:
        assert r["images_shown"] == 3 and r["frames_plotted"] == sum(int(x["frames_decoded"]) for x in rows)
    else:
        assert r["images_shown"] == 0 and r["frames_plotted"] == 0


@pytest.mark.slow
def test_loopback_flowgraph_snr_changes_at_run_time(tmp_path):
    """GRC callbacks: setting the flowgraph's snr_db reaches the channel and the encoder, cfo_hz
    the channel; gui turns the live view's feeds on and off."""
    r = _run_generated(tmp_path, "jscc_loopback.grc", f"""
        from jscc_loopback import jscc_loopback
        from testbed.phy.config import OfdmConfig
        from testbed.phy.impairments import noise_voltage

        tb = jscc_loopback(images="", model="jscc-v1", out_dir={str(tmp_path / "run")!r}, snr_db=10.0)
        tb.set_snr_db(20.0)
        tb.set_cfo_hz(2500.0)
        tb.set_gui(0)
        result.update(enc_snr=tb.encoder.snr_db, noise=tb.channel.noise_voltage, want=noise_voltage(OfdmConfig(), 20.0),
                      cfo=tb.channel.chan.frequency_offset(), want_cfo=2500.0 / OfdmConfig().samp_rate,
                      feeds=[tb.gui_samples.enabled(), tb.live_tap.enabled, tb.image_view.enabled])
        """)
    assert r["enc_snr"] == 20.0
    assert r["noise"] == pytest.approx(r["want"])
    assert r["cfo"] == pytest.approx(r["want_cfo"])   # the channel's CFO follows the flowgraph's cfo_hz too
    assert r["feeds"] == [False, False, False]


def test_pluto_flowgraph_flushes_like_testbed_ota():
    """jscc_pluto.grc's encoder flushes each image with what PlutoFrontEnd computes for its buffer."""
    import yaml

    import testbed.link.factory
    from testbed.link.configs import load_config
    from testbed.link.frontend import PlutoFrontEnd

    g = yaml.safe_load((REPO / "flowgraphs" / "jscc_pluto.grc").read_text())
    blocks = {b["name"]: b for b in g["blocks"]}
    buffer_size = int(blocks["buffer_size"]["parameters"]["value"])
    assert blocks["pluto_tx"]["parameters"]["buffer_size"] == blocks["pluto_rx"]["parameters"]["buffer_size"] \
        == "buffer_size"
    expr = blocks["encoder"]["parameters"]["flush_samples"]
    flush = eval(expr, {"testbed": testbed, "buffer_size": buffer_size})
    cfg = load_config(REPO / "firmware_configs" / "pluto.yaml")
    assert cfg.buffer_size == buffer_size and flush == PlutoFrontEnd(cfg).flush_samples()


def test_pluto_flowgraph_rx_buffer_like_testbed_ota():
    """The Pluto source's output buffer is what PlutoFrontEnd sets (GNU Radio's default overruns
    while the receiver waits for a header verdict)."""
    import yaml

    import testbed.link.factory
    from testbed.link.frontend import rx_buffer_samples

    g = yaml.safe_load((REPO / "flowgraphs" / "jscc_pluto.grc").read_text())
    blocks = {b["name"]: b for b in g["blocks"]}
    samp_rate = float(blocks["samp_rate"]["parameters"]["value"])
    expr = blocks["pluto_rx"]["parameters"].get("minoutbuf", "0")
    assert eval(expr, {"testbed": testbed, "samp_rate": samp_rate}) == rx_buffer_samples(samp_rate) > 32768


ALIASES = {"ofdm_config": "ofdm_config_path"}   # GRC parameter id -> factory argument


def _block_ymls():
    from testbed.grc import BLOCKS_DIR

    return sorted(BLOCKS_DIR.glob("*.block.yml"))


@pytest.mark.parametrize("path", _block_ymls(), ids=lambda p: p.name.split(".")[0])
def test_block_yml_matches_the_python_constructor(path):
    """Each block definition passes its parameters, in order, to arguments of the same name with
    the same defaults, and its callbacks exist on the block it makes."""
    import importlib
    import inspect
    import re

    import yaml

    import testbed
    from testbed.core.paths import DEFAULT_MODEL

    d = yaml.safe_load(path.read_text())
    params = {p["id"]: p for p in d["parameters"]}
    make = [ln.strip() for ln in re.sub(r"<%.*?%>\\?", "", d["templates"]["make"], flags=re.S).splitlines()]
    call = re.fullmatch(r"([\w.]+)\((.*)\)", next(ln for ln in make if ln))   # Qt blocks: then the gui hint
    target, args = call.group(1), [a.strip() for a in call.group(2).split(",") if a.strip()]
    module, name = target.rsplit(".", 1)
    fn = getattr(importlib.import_module(module), name)
    sig = list(inspect.signature(fn).parameters.values())
    assert len(args) <= len(sig), (args, sig)
    for arg, py in zip(args, sig):
        pid = re.fullmatch(r"\$\{(\w+)\}", arg).group(1)
        assert pid in params and ALIASES.get(pid, pid) == py.name, (pid, py.name)
        if py.default is inspect.Parameter.empty:
            continue
        grc_default = eval(str(params[pid]["default"]), {"testbed": testbed})
        py_default = (py.default or DEFAULT_MODEL) if pid == "model" else py.default
        assert grc_default == py_default, (pid, grc_default, py.default)
    # the factory returns testbed.gr.<name>.<name>
    cls = getattr(importlib.import_module(f"testbed.gr.{name}"), name) if module == "testbed.link.factory" else fn
    for cb in d["templates"].get("callbacks", []):
        method = cb.split("(")[0]
        assert callable(getattr(cls, method, None)), (cls, method)
