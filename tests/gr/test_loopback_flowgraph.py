"""The full loopback flowgraph with the shipped codec: PSNR against `testbed eval`, impairments,
lost frames, the CLI and Ctrl-C."""
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gnuradio.digital")

import pmt  # noqa: E402
from gnuradio import gr  # noqa: E402

from tests.helpers import SAMPLES, run_cli, write_png  # noqa: E402
from testbed.experiments.evaluate import EvalOptions, run_eval  # noqa: E402
from testbed.experiments.loopback import ROW_FIELDS, LoopbackOptions, run_loopback  # noqa: E402
from testbed.phy.config import OfdmConfig  # noqa: E402
from testbed.core.runlog import read_csv_rows  # noqa: E402

CFG = OfdmConfig()


@pytest.fixture(scope="module")
def two_images(tmp_path_factory):
    """Two crops of the shipped samples (smaller, so the tests stay quick)."""
    from testbed.core.images import load_rgb

    d = tmp_path_factory.mktemp("imgs")
    for name in ("kodim05.png", "kodim23.png"):
        a = load_rgb(SAMPLES / name)
        write_png(d / name, np.ascontiguousarray(a[64:320, 128:512]))
    return d


@pytest.fixture(scope="module")
def awgn_loopback(two_images, tmp_path_factory, shipped_model):
    out = tmp_path_factory.mktemp("lb")
    return run_loopback(LoopbackOptions(model=str(shipped_model), images=str(two_images), snrs_db=[5.0, 10.0, 15.0, 20.0],
                                        out=str(out), ms_ssim=False))


@pytest.mark.slow
def test_loopback_matches_eval_within_half_a_db(awgn_loopback, two_images, tmp_path, shipped_model):
    ev = run_eval(EvalOptions(model=str(shipped_model), data=str(two_images), snrs_db=[5.0, 10.0, 15.0, 20.0],
                              out=str(tmp_path / "ev"), separation=False))
    for lb, e in zip(awgn_loopback["results"], ev["results"]):
        assert lb["snr_db"] == e["snr_db"]
        assert lb["frames_decoded"] == lb["frames_sent"]
        assert abs(lb["psnr_db"] - e["psnr_db"]) < 0.5, (lb, e)
        assert abs(lb["snr_est_db"] - lb["snr_db"]) < 1.0
    psnrs = [r["psnr_db"] for r in awgn_loopback["results"]]
    assert psnrs == sorted(psnrs)


def test_run_folder_has_the_documented_files(awgn_loopback):
    out = Path(awgn_loopback["run_dir"])
    rows = read_csv_rows(out / "results.csv")
    assert len(rows) == 8 and list(rows[0]) == ROW_FIELDS
    assert (out / "psnr_vs_snr.png").stat().st_size > 1000
    s = json.loads((out / "summary.json").read_text())
    assert s["ofdm"]["fft_len"] == CFG.fft_len and len(s["phy_counters"]) == 4
    # where the CPU went: the decoder block's thread is named after it
    pc = s["phy_counters"][0]
    assert pc["cpu_s"] > 0 and s["results"][0]["cpu_s"] == pc["cpu_s"]
    assert any(n.startswith("jscc_decoder") and t > 0 for n, t in pc["cpu_by_thread"].items())
    assert sum(pc["cpu_by_thread"].values()) <= pc["cpu_s"] * 1.05 + 0.05


IMPAIRED = {
    "cfo 1.5 sub-carriers": dict(cfo_hz=1.5 * CFG.subcarrier_spacing_hz),
    "cfo -1.5 sub-carriers": dict(cfo_hz=-1.5 * CFG.subcarrier_spacing_hz),
    "timing offset": dict(delay_samples=4321),
    "sco 20 ppm": dict(sco_ppm=20.0),
    "tdl-a": dict(multipath="tdl-a", seed=1),
    "tdl-c": dict(multipath="tdl-c", seed=1),
}


@pytest.fixture(scope="module")
def awgn15(two_images, tmp_path_factory, shipped_model):
    out = tmp_path_factory.mktemp("lb15")
    return run_loopback(LoopbackOptions(model=str(shipped_model), images=str(two_images), snrs_db=[15.0], out=str(out),
                                        ms_ssim=False))["results"][0]


@pytest.mark.parametrize("name", list(IMPAIRED))
def test_impairment_psnr_within_one_db_of_awgn(two_images, tmp_path, shipped_model, awgn15, name):
    s = run_loopback(LoopbackOptions(model=str(shipped_model), images=str(two_images), snrs_db=[15.0], out=str(tmp_path),
                                     ms_ssim=False, **IMPAIRED[name]))
    r = s["results"][0]
    assert r["frames_decoded"] == r["frames_sent"] and r["headers_failed"] == 0, r
    assert r["psnr_db"] > awgn15["psnr_db"] - 1.0, (r, awgn15)


def test_receiver_with_another_model_refuses_to_decode(tiny_model_dir, shipped_model):
    """Frames name the model (hash prefix in the header); a receiver with another model says so."""
    from gnuradio import gr

    from testbed.codec.runtime import OnnxCodec
    from testbed.gr.jscc_decoder import jscc_decoder
    from testbed.gr.jscc_encoder import jscc_encoder
    from testbed.gr.loopback_channel import loopback_channel
    from testbed.gr.ofdm_rx import ofdm_rx
    from testbed.gr.ofdm_tx import ofdm_tx

    got = []
    tb = gr.top_block()
    enc = jscc_encoder(OnnxCodec(shipped_model), CFG, snr_db=15.0)
    tx, ch, rx = ofdm_tx(CFG), loopback_channel(CFG, 15.0), ofdm_rx(CFG)
    dec = jscc_decoder(OnnxCodec(tiny_model_dir), on_image=lambda r, i: got.append(r))
    tb.msg_connect(enc, "frames", tx, "frames")
    tb.connect(tx, ch, rx)
    tb.msg_connect(rx, "frames", dec, "frames")
    tb.start()
    try:
        enc.send(np.full((64, 96, 3), 128, np.uint8), image_id=5)
        _wait_until(lambda: dec.frames_received >= 1, 20)
        dec.flush()
    finally:
        tb.stop()
        tb.wait()
    assert dec.frames_received == 1 and dec.wrong_model == 1 and got == []


def test_cli_json(two_images, tmp_path):
    p = run_cli("loopback", "--images", two_images / "kodim05.png", "--snr-db", "10", "--cfo-hz", "3000",
                "--out", tmp_path / "run", "--json", "--no-ms-ssim")
    j = json.loads(p.stdout)
    (r,) = j["results"]
    assert set(r) >= {"snr_db", "psnr_db", "snr_est_db", "frames_sent", "frames_decoded", "n_images"}
    assert r["n_images"] == 1 and r["frames_decoded"] == r["frames_sent"] > 0
    assert math.isfinite(r["psnr_db"]) and abs(r["snr_est_db"] - 10) < 1


def test_cli_rejects_bad_arguments(two_images, tmp_path):
    p = run_cli("loopback", "--images", two_images, "--multipath", "tdl-z", check=False)
    assert p.returncode == 2 and "tdl-z" in p.stderr
    bad = tmp_path / "taps.txt"
    bad.write_text("1 0\nnot a number\n")
    p = run_cli("loopback", "--images", two_images, "--multipath", bad, check=False)
    assert p.returncode == 2 and "taps.txt:2" in p.stderr
    cfg = tmp_path / "ofdm.yaml"
    cfg.write_text("ofdm:\n  fft_len: 100\n")
    p = run_cli("loopback", "--images", two_images, "--ofdm-config", cfg, check=False)
    assert p.returncode == 2 and "ofdm.yaml" in p.stderr and "fft_len" in p.stderr


@pytest.mark.slow
def test_ctrl_c_leaves_valid_rows(tmp_path):
    exe = Path(sys.executable).parent / "testbed"
    out = tmp_path / "run"
    proc = subprocess.Popen([str(exe), "loopback", "--images", str(SAMPLES), "--snr-db", "5,10,15,20,25",
                             "--out", str(out), "--no-ms-ssim"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if (out / "results.csv").exists() and len(read_csv_rows(out / "results.csv")) >= 2:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    rows = read_csv_rows(out / "results.csv")
    assert 2 <= len(rows) < 15
    assert all(math.isfinite(float(r["psnr_db"])) for r in rows)
    s = json.loads((out / "summary.json").read_text())
    assert s["interrupted"] is True and sum(r["n_images"] for r in s["results"]) == len(rows)


def _frame_pdus(codec, img, image_id, cfg=CFG):
    """What ofdm_rx would publish for ``img``'s frames over a perfect channel."""
    from testbed.gr.pmtutil import pdu
    from testbed.phy import framing

    h, w = img.shape[:2]
    k = codec.symbols_for_cbr(None)
    frames = framing.make_frames(codec.encode_k(img, 20.0, k), image_id=image_id, height=h, width=w,
                                 symbols_per_location=k, model_sha256=codec.sha256, cfg=cfg)
    return [pdu({**{f"h_{n}": v for n, v in fh.as_dict().items()}, "snr_db": 20.0, "snr_eff_db": 20.0,
                 "cfo_hz": 0.0}, pay) for fh, pay in frames]


def _wait_until(cond, timeout: float, poll: float = 0.05) -> None:
    """Poll ``cond()`` until it holds or ``timeout`` seconds pass (the caller asserts after)."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(poll)


class _poster(gr.basic_block):
    """A message source to post into a running flowgraph from the test's thread."""

    def __init__(self):
        gr.basic_block.__init__(self, name="poster", in_sig=None, out_sig=None)
        self.message_port_register_out(pmt.intern("out"))

    def post(self, msg):
        self.message_port_pub(pmt.intern("out"), msg)


def test_decoder_keeps_working_after_on_image_raises(tiny_model_dir):
    """A Python exception in a GNU Radio message handler stops that block's message handling for
    good: the decoder logs and counts it, and the next image is still delivered."""
    from testbed.codec.runtime import OnnxCodec
    from testbed.gr.jscc_decoder import jscc_decoder

    codec = OnnxCodec(tiny_model_dir)
    got = []

    def on_image(rec, img):
        got.append(rec["image_id"])
        if len(got) == 1:
            raise KeyError("a bug in the caller")

    tb = gr.top_block()
    src, dec = _poster(), jscc_decoder(codec, on_image=on_image)
    tb.msg_connect(src, "out", dec, "frames")
    tb.start()
    try:
        for iid in (1, 2):
            for m in _frame_pdus(codec, np.full((32, 48, 3), 40 * iid, np.uint8), iid):
                src.post(m)
        _wait_until(lambda: len(got) >= 2, 10)
    finally:
        tb.stop()
        tb.wait()
    assert got == [1, 2] and dec.callback_errors == 1


def test_encoder_and_image_sink_handlers_survive_failures(tiny_model_dir, tmp_path):
    from testbed.codec.runtime import OnnxCodec
    from testbed.gr.image_sink import image_sink
    from testbed.gr.jscc_encoder import jscc_encoder
    from testbed.gr.pmtutil import pdu

    class Flaky(OnnxCodec):
        calls = 0

        def encode(self, *a, **kw):
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("onnxruntime failed")
            return super().encode(*a, **kw)

    enc = jscc_encoder(Flaky(tiny_model_dir), CFG)
    msg = pdu({"height": 32, "width": 48, "image_id": 3}, np.zeros(32 * 48 * 3, np.uint8))
    enc._handle(msg)                        # logged and counted, not raised
    enc._handle(msg)
    assert enc.errors == 1 and enc.frames_sent >= 1
    sink = image_sink(str(tmp_path / "sink"))
    sink.log.close()                        # writing the QoS row fails
    sink._handle(pdu({"height": 2, "width": 2, "image_id": 0}, np.zeros(12, np.uint8)))
    assert sink.errors == 1


def test_image_sink_in_a_used_folder_appends_and_never_overwrites(tmp_path):
    from PIL import Image

    from testbed.gr.image_sink import image_sink
    from testbed.gr.pmtutil import pdu

    for run, val in ((1, 10), (2, 200)):
        s = image_sink(str(tmp_path))
        s._handle(pdu({"height": 4, "width": 4, "image_id": 0, "psnr_db": 30.0 + run}, np.full(48, val, np.uint8)))
        s.log.close()
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["image_00000_id0.png", "image_00001_id0.png"]
    assert np.asarray(Image.open(tmp_path / "image_00000_id0.png"))[0, 0, 0] == 10   # the first run's image
    assert [r["psnr_db"] for r in read_csv_rows(tmp_path / "qos.csv")] == ["31", "32"]


def test_ofdm_config_with_a_channel_section_is_not_silently_ignored(tmp_path, caplog):
    """`testbed loopback --ofdm-config FILE` reads only FILE's ofdm: section; a channel: section that
    differs from the run's channel is warned about, naming the file and the keys."""
    import argparse
    import logging

    from testbed.cli.link import _ofdm_from_args
    from testbed.experiments.loopback import _check

    cfg = tmp_path / "exp.yaml"
    cfg.write_text("kind: loopback\nofdm: {fft_len: 256}\nchannel: {snr_db: 25.0, cfo_hz: 1000.0, seed: 0}\n")
    ofdm = _ofdm_from_args(argparse.Namespace(ofdm_config=str(cfg), samp_rate=None))
    with caplog.at_level(logging.INFO, logger="testbed.experiments.loopback"):
        _check(LoopbackOptions(model="m", images="i", snrs_db=[10.0], ofdm=ofdm))
    warn = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warn) == 1 and "exp.yaml" in warn[0] and "channel.snr_db=25.0" in warn[0] \
        and "channel.cfo_hz=1000.0" in warn[0] and "channel.seed" not in warn[0], warn
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="testbed.experiments.loopback"):   # the same channel: no warning
        _check(LoopbackOptions(model="m", images="i", snrs_db=[25.0], cfo_hz=1000.0, ofdm=ofdm))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_decoder_drops_frames_with_an_inconsistent_header_and_keeps_working(tiny_model_dir):
    """A frame PDU whose header no receiver would accept (frame_count 0) is counted and dropped;
    before, it raised in the message handler, which stops the block's message handling for good."""
    from testbed.codec.runtime import OnnxCodec
    from testbed.gr.jscc_decoder import jscc_decoder
    from testbed.gr.pmtutil import pdu, split_pdu

    codec = OnnxCodec(tiny_model_dir)
    got = []
    dec = jscc_decoder(codec, on_image=lambda r, i: got.append(r["image_id"]))
    good = _frame_pdus(codec, np.full((32, 48, 3), 90, np.uint8), 7)
    meta, data = split_pdu(good[0])
    dec._handle(pdu({**meta, "h_frame_count": 0}, data))
    assert dec.malformed == 1 and got == []
    for m in good:
        dec._handle(m)
    dec.flush()
    assert got == [7] and dec.malformed == 1


def test_burst_shaper_ignores_bad_flush_messages():
    """A flush message it cannot read is logged and counted; raising in the handler would stop the
    shaper and with it the whole TX stream."""
    from testbed.gr.burst_shaper import burst_shaper
    from testbed.gr.pmtutil import to_pmt

    sh = burst_shaper(gap=10)
    sh._flush(to_pmt({"after": 1, "samples": "many"}))
    sh._flush(to_pmt({"after": 1, "samples": -100}))
    assert sh.bad_flushes == 2 and sh.flushes == []
    sh._flush(to_pmt({"after": 1, "samples": 50}))
    sh._flush(pmt.intern("flush"))              # not a dict: the default, as documented
    assert sh.flushes == [(1, 50), (0, 10)] and sh.bad_flushes == 2


def test_burst_shaper_untagged_samples_do_not_swallow_the_next_burst():
    from gnuradio import blocks

    from testbed.gr.burst_shaper import burst_shaper

    t = gr.tag_t()
    t.offset, t.key, t.value = 20, pmt.intern("packet_len"), pmt.from_long(30)
    tb = gr.top_block()
    src = blocks.vector_source_c([0.5 + 0j] * 50, False, 1, [t])
    sh, snk = burst_shaper(gain=1.0, clip=2.0, gap=5), blocks.vector_sink_c()
    tb.connect(src, sh, snk)
    tb.run()
    tags = {pmt.symbol_to_string(x.key): x.offset for x in snk.tags()}
    assert tags == {"tx_sob": 20, "tx_eob": 54} and sh.bursts == 1 and len(snk.data()) == 55


def test_image_sink_killed_while_writing_leaves_no_truncated_png(tmp_path, monkeypatch):
    from PIL import Image

    from testbed.gr.image_sink import image_sink, next_image_index
    from testbed.gr.pmtutil import pdu

    def killed(im, fp, filename):   # the process dies half-way through the PNG
        fp.write(b"\x89PNG\r\n\x1a\n")
        raise SystemExit("killed")

    sink = image_sink(str(tmp_path))
    Image.preinit()                               # registers the PNG plugin, then replace its writer
    monkeypatch.setitem(Image.SAVE, "PNG", killed)
    with pytest.raises(SystemExit):
        sink._handle(pdu({"height": 4, "width": 4, "image_id": 3}, np.zeros(48, np.uint8)))
    sink.log.close()
    assert list(tmp_path.glob("*.png")) == [] and next_image_index(tmp_path) == 0


def _running_decoder(codec, got, idle_flush_s):
    from testbed.gr.jscc_decoder import jscc_decoder

    tb = gr.top_block()
    src = _poster()
    dec = jscc_decoder(codec, on_image=lambda r, i: got.append(r), idle_flush_s=idle_flush_s)
    tb.msg_connect(src, "out", dec, "frames")
    tb.start()
    return tb, src, dec


def test_decoder_idle_flush_decodes_an_image_whose_last_frame_was_lost(tiny_model_dir):
    """In a GRC flowgraph nobody calls flush(): with idle_flush_s the decoder itself decodes an image
    whose last frame never came, after that many quiet seconds, with the frame counted missing."""
    import dataclasses
    import time

    from testbed.codec.runtime import OnnxCodec

    codec = OnnxCodec(tiny_model_dir)
    cfg = dataclasses.replace(CFG, payload_symbols_per_frame=CFG.n_data)
    pdus = _frame_pdus(codec, np.full((128, 192, 3), 90, np.uint8), 5, cfg)
    assert len(pdus) >= 2
    got = []
    tb, src, dec = _running_decoder(codec, got, idle_flush_s=0.3)
    try:
        for m in pdus[:-1]:
            src.post(m)
        _wait_until(lambda: got, 10)
        assert [r["image_id"] for r in got] == [5]
        assert got[0]["missing_frames"] == [len(pdus) - 1] and got[0]["frames_decoded"] == len(pdus) - 1
        time.sleep(0.5)                      # one flush per quiet spell: nothing more
        assert len(got) == 1
    finally:
        tb.stop()
        tb.wait()


@pytest.mark.parametrize("idle_flush_s, expect", [(30.0, [9]), (0.0, [])])
def test_decoder_flushes_when_the_flowgraph_stops_if_idle_flush_is_on(tiny_model_dir, idle_flush_s, expect):
    import dataclasses

    from testbed.codec.runtime import OnnxCodec

    codec = OnnxCodec(tiny_model_dir)
    cfg = dataclasses.replace(CFG, payload_symbols_per_frame=CFG.n_data)
    pdus = _frame_pdus(codec, np.full((128, 192, 3), 90, np.uint8), 9, cfg)
    got = []
    tb, src, dec = _running_decoder(codec, got, idle_flush_s=idle_flush_s)
    for m in pdus[:-1]:
        src.post(m)
    _wait_until(lambda: dec.frames_received >= len(pdus) - 1, 10, poll=0.02)
    tb.stop()
    tb.wait()
    assert [r["image_id"] for r in got] == expect


def test_decoder_refuses_a_negative_idle_flush(tiny_model_dir):
    from testbed.codec.runtime import OnnxCodec
    from testbed.gr.jscc_decoder import jscc_decoder

    with pytest.raises(ValueError, match="idle_flush_s"):
        jscc_decoder(OnnxCodec(tiny_model_dir), idle_flush_s=-1)


@pytest.mark.slow
def test_decoder_idle_flush_does_not_cut_an_image_while_a_slow_decode_holds_its_frames(tiny_model_dir):
    """Image 1 loses its last frame, so image 2's first frame releases it; decoding it takes longer
    than the idle timeout (a loaded machine) while image 2's frames wait in the queue. The idle
    timer used to flush image 2 with one frame; quiet now counts from the end of a frame's handling."""
    import dataclasses

    from testbed.codec.runtime import OnnxCodec

    class SlowCodec(OnnxCodec):
        def decode(self, *a, **k):
            time.sleep(0.8)
            return super().decode(*a, **k)

    codec = SlowCodec(tiny_model_dir)
    cfg = dataclasses.replace(CFG, payload_symbols_per_frame=CFG.n_data)
    img = np.full((128, 192, 3), 90, np.uint8)
    one, two = _frame_pdus(codec, img, 1, cfg), _frame_pdus(codec, img, 2, cfg)
    got = []
    tb, src, dec = _running_decoder(codec, got, idle_flush_s=0.3)
    try:
        for m in one[:-1] + two:
            src.post(m)
        _wait_until(lambda: len(got) >= 2, 15)
    finally:
        tb.stop()
        tb.wait()
    assert [(r["image_id"], r["frames_decoded"]) for r in got] == [(1, len(one) - 1), (2, len(two))]
    assert dec.reasm.late == 0
