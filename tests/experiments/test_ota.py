"""`testbed ota` and `testbed replay` without hardware: loopback and SigMF front-ends, the log
schema, recordings that replay to the same PSNR, and configs rejected before any device opens."""
import csv
import json

import numpy as np
import pytest

from tests.helpers import SAMPLES, run_cli, smooth_image, write_png
from testbed.experiments.ota import OTA_FIELDS


@pytest.fixture(scope="module")
def imgs(tmp_path_factory):
    d = tmp_path_factory.mktemp("ota-images")
    write_png(d / "a.png", smooth_image(128, 192, seed=1))
    write_png(d / "b.png", smooth_image(96, 128, seed=2))
    return d


def _rows(path):
    return list(csv.DictReader(open(path)))


def test_ota_loopback_with_record_then_replay(imgs, tmp_path):
    out = tmp_path / "ota"
    s = json.loads(run_cli("ota", "--config", "firmware_configs/loopback.yaml", "--images", imgs,
                           "--tx-gain-db", "0,10", "--record", "--out", out, "--json").stdout)
    assert [r["tx_gain_db"] for r in s["results"]] == [0.0, 10.0]
    rows = _rows(out / "results.csv")
    assert list(rows[0].keys()) == OTA_FIELDS and len(rows) == 4
    for r in rows:
        assert r["radio"] == "loopback" and r["source"] == "live" and r["timestamp"]
        assert int(r["frames_lost"]) == 0 and float(r["psnr_db"]) > 15
    hi = [r for r in rows if float(r["tx_gain_db"]) == 10]
    lo = [r for r in rows if float(r["tx_gain_db"]) == 0]
    assert np.mean([float(r["snr_est_db"]) for r in hi]) == pytest.approx(20.0, abs=1.0)  # channel 10 dB + 10 dB gain
    assert np.mean([float(r["psnr_db"]) for r in hi]) > np.mean([float(r["psnr_db"]) for r in lo])
    assert (out / "psnr_vs_gain.png").stat().st_size > 0
    assert len(s["recordings"]) == 2
    meta = json.loads(open(s["recordings"][1]).read())
    st = meta["global"]["testbed:settings"]
    assert st["model_name"] == "jscc-v1" and st["radio"]["tx_gain_db"] == 10.0 and len(st["images"]) == 2
    assert meta["global"]["core:datatype"] == "cf32_le" and meta["global"]["core:sample_rate"] == 1e6
    r = json.loads(run_cli("replay", s["recordings"][1], "--out", tmp_path / "replay", "--json").stdout)
    rep = _rows(tmp_path / "replay" / "results.csv")
    assert list(rep[0].keys()) == OTA_FIELDS and {x["source"] for x in rep} == {"replay"}
    by = {x["image"]: float(x["psnr_db"]) for x in rep}
    for x in hi:
        assert by[x["image"]] == pytest.approx(float(x["psnr_db"]), abs=0.1)
    assert r["results"][0]["frames_lost"] == 0


def test_ota_with_a_sigmf_file_front_end(imgs, tmp_path):
    cfg = tmp_path / "sigmf.yaml"
    cfg.write_text("kind: sigmf\npath: rec\nchannel: {snr_db: 12.0}\n")
    out = tmp_path / "ota"
    s = json.loads(run_cli("ota", "--config", cfg, "--images", imgs, "--out", out, "--json").stdout)
    rows = _rows(out / "results.csv")
    assert len(rows) == 2 and {r["source"] for r in rows} == {"replay"}
    assert all(float(r["psnr_db"]) > 15 and int(r["frames_lost"]) == 0 for r in rows)
    assert s["recordings"] and (out / "rec-gaindefault.sigmf-data").stat().st_size > 0


def test_invalid_radio_config_fails_before_any_device(imgs, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: pluto\nsample_rate: 300000.0\nofdm: {samp_rate: 300000.0}\n")
    p = run_cli("ota", "--config", bad, "--images", imgs, "--out", tmp_path / "o", check=False)
    assert p.returncode == 2 and "bad.yaml" in p.stderr and "sample_rate" in p.stderr
    assert not (tmp_path / "o").exists()
    p = run_cli("ota", "--config", "firmware_configs/pluto.yaml", "--images", imgs, "--tx-gain-db", "3",
                "--out", tmp_path / "o2", check=False)
    assert p.returncode == 2 and "tx-gain-db" in p.stderr and not (tmp_path / "o2").exists()


def test_replay_bad_inputs(tmp_path):
    p = run_cli("replay", tmp_path / "nothing.sigmf-meta", check=False)
    assert p.returncode == 2 and "nothing.sigmf-meta" in p.stderr
    m = tmp_path / "x.sigmf-meta"
    m.write_text(json.dumps({"global": {"core:datatype": "ci16_le", "core:sample_rate": 1e6}, "captures": []}))
    (tmp_path / "x.sigmf-data").write_bytes(b"\0" * 16)
    p = run_cli("replay", m, check=False)
    assert p.returncode == 2 and "ci16_le" in p.stderr


def test_radios_command_runs_without_hardware():
    p = run_cli("radios", "--json")
    assert "radios" in json.loads(p.stdout)


def test_closed_loop_encoder_snr_follows_the_receivers_estimate(imgs, tmp_path):
    """The encoder is told the SNR the receiver estimated for the previous image (closed loop):
    channel 10 dB + 10 dB TX gain, so from the second image on it encodes for ~20 dB, not the
    10 dB hint it starts with."""
    from testbed.experiments.ota import OtaOptions, run_ota

    run_ota(OtaOptions(config="firmware_configs/loopback.yaml", images=str(imgs), tx_gains_db=[10.0],
                       out=str(tmp_path / "ota"), ms_ssim=False))
    rows = _rows(tmp_path / "ota" / "results.csv")
    assert len(rows) == 2
    assert float(rows[0]["tx_snr_db"]) == 10.0                       # the hint: nothing estimated yet
    assert float(rows[0]["snr_est_db"]) == pytest.approx(20.0, abs=1.0)
    assert float(rows[1]["tx_snr_db"]) == pytest.approx(float(rows[0]["snr_est_db"]), abs=1e-6)


@pytest.fixture(scope="module")
def long_recording(imgs, tmp_path_factory):
    """An ota recording of the two images, then 30 M samples of silence (a sparse file), then the
    same two images again: a replay that takes seconds between its first and last rows."""
    import shutil

    d = tmp_path_factory.mktemp("long-rec")
    s = json.loads(run_cli("ota", "--config", "firmware_configs/loopback.yaml", "--images", imgs, "--record",
                           "--out", d / "ota", "--json").stdout)
    meta = s["recordings"][0]
    data = open(meta.replace(".sigmf-meta", ".sigmf-data"), "rb").read()
    with open(d / "long.sigmf-data", "wb") as f:
        f.write(data)
        f.truncate(len(data) + 8 * 30_000_000)
        f.seek(0, 2)
        f.write(data)
    shutil.copy(meta, d / "long.sigmf-meta")
    return d / "long.sigmf-meta"


@pytest.mark.slow
def test_ctrl_c_in_replay_keeps_finished_rows_and_says_interrupted(long_recording, tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "replay"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "testbed"), "replay", str(long_recording),
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "results.csv").exists() and len(_rows(out / "results.csv")) >= 2:
            break                        # the first copy is decoded, the silence is being read
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err, err[-2000:]
    rows = _rows(out / "results.csv")
    assert len(rows) == 2 and all(int(r["frames_lost"]) == 0 for r in rows)   # finished rows only
    s = json.loads((out / "summary.json").read_text())
    assert s["interrupted"] is True and s["n_images"] == 2


def test_interrupted_record_leaves_a_replayable_recording(imgs, tmp_path, monkeypatch):
    """Ctrl-C after the first image of `testbed ota --record`: the recording is closed with the
    images that were sent, and replays."""
    from testbed.experiments.loopback import _Interrupt
    from testbed.experiments.ota import OtaOptions, run_ota, run_replay
    from testbed.core.sigmf_io import Recording

    out = tmp_path / "ota"

    def check(self):
        if (out / "results.csv").exists() and len(_rows(out / "results.csv")) >= 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(_Interrupt, "check", check)
    with pytest.raises(KeyboardInterrupt):
        run_ota(OtaOptions(config="firmware_configs/loopback.yaml", images=str(imgs), record=True, out=str(out),
                           ms_ssim=False))
    live = _rows(out / "results.csv")
    assert len(live) == 1 and json.loads((out / "summary.json").read_text())["interrupted"] is True
    rec = Recording(out / "rx-gaindefault.sigmf-meta")
    assert rec.samples > 0 and rec.samples == rec.global_info["testbed:samples"]
    assert [im["file"] for im in rec.settings["images"]] == [live[0]["image"]]   # only what was sent
    assert rec.settings["images"][0]["frames"] == int(live[0]["frames_sent"])
    monkeypatch.undo()
    s = run_replay(str(rec.meta_path), out=str(tmp_path / "replay"), ms=False)
    rep = _rows(tmp_path / "replay" / "results.csv")
    assert s["n_images"] == 1 and rep[0]["image"] == live[0]["image"]
    assert float(rep[0]["psnr_db"]) == pytest.approx(float(live[0]["psnr_db"]), abs=0.1)


def test_radio_that_cannot_be_opened_is_one_clear_error_and_leaves_no_run(imgs, tmp_path, monkeypatch):
    """No Pluto at the configured address: a ConnectionError naming it (exit 2 on the CLI), no
    traceback, and no empty run folder that would make a rerun with the same --out refuse."""
    import sys
    import types

    import gnuradio

    from testbed.experiments.ota import OtaOptions, run_ota

    def no_device(uri, *a):
        raise RuntimeError("Unable to create context")

    fake = types.SimpleNamespace(fmcomms2_sink_fc32=no_device, fmcomms2_source_fc32=no_device)
    monkeypatch.setattr(gnuradio, "iio", fake, raising=False)
    monkeypatch.setitem(sys.modules, "gnuradio.iio", fake)
    monkeypatch.setitem(sys.modules, "iio", types.SimpleNamespace(Context=no_device))   # no network access
    cfg = tmp_path / "pluto.yaml"
    cfg.write_text((SAMPLES.parent / "firmware_configs" / "pluto.yaml").read_text()
                   .replace("ip:192.168.2.1", "usb:9.9.9"))
    out = tmp_path / "o"
    with pytest.raises(ConnectionError, match="cannot open the Pluto at 'usb:9.9.9'"):
        run_ota(OtaOptions(config=str(cfg), images=str(imgs), out=str(out), record=True, ms_ssim=False))
    assert not out.exists()
