"""`testbed eval` with the digital codecs (jpeg2000-ldpc, jpeg-ldpc) on the ideal symbol
channel: the cliff in the rows, the MCS, bit and block error rates, and the errors users meet."""
import json

import numpy as np
import pytest

from tests.helpers import SAMPLES, run_cli
from testbed.core.runlog import read_csv_rows
from testbed.experiments.evaluate import ROW_FIELDS


def test_eval_shows_the_cliff_and_logs_the_errors(tmp_path):
    out = tmp_path / "run"
    p = run_cli("eval", "--model", "jpeg2000-ldpc", "--data", SAMPLES, "--snr-db=-1,4", "--mcs", "qpsk-1/2",
                "--cbr", "0.0625", "--no-separation", "--out", out, "--json")
    js = json.loads(p.stdout)
    low, high = js["results"]
    assert js["model"] == "jpeg2000-ldpc" and low["mcs"] == high["mcs"] == ["qpsk-1/2"]
    assert low["bler"] == 1.0 and low["coded_ber"] > 0.05 and low["psnr_db"] < 15      # below: gray images
    assert high["bler"] == 0.0 and high["coded_ber"] == 0.0 and high["psnr_db"] > 20    # above: every bit
    assert high["uncoded_ber"] > 0.005                        # the channel did flip bits; the code fixed them
    rows = read_csv_rows(out / "results.csv")
    assert len(rows) == 6 and list(rows[0].keys()) == ROW_FIELDS       # a row per image, never skipped
    for r in rows:
        assert r["mcs"] == "qpsk-1/2" and int(r["code_blocks"]) > 0 and int(r["bits_sent"]) == 1944 * int(r["code_blocks"])
        assert int(r["codestream_bytes"]) > 0 and float(r["cbr"]) == pytest.approx(0.0625, rel=0.01)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mcs"] == "qpsk-1/2"


def test_auto_picks_faster_mcs_at_higher_snr(tmp_path):
    p = run_cli("eval", "--model", "jpeg-ldpc", "--data", SAMPLES, "--snr-db", "3,20", "--no-separation",
                "--out", tmp_path / "run", "--json")
    low, high = json.loads(p.stdout)["results"]
    assert low["mcs"] == ["qpsk-1/2"] and high["mcs"] == ["64qam-5/6"]
    assert low["bler"] == 0 and high["bler"] == 0 and high["psnr_db"] > low["psnr_db"]


def test_bad_input_is_named(tmp_path):
    p = run_cli("eval", "--model", "jpeg2000-ldpc", "--data", SAMPLES, "--mcs", "8psk-1/2", "--out", tmp_path / "a",
                check=False)
    assert p.returncode == 2 and "--mcs '8psk-1/2'" in p.stderr and "64qam-5/6" in p.stderr
    p = run_cli("eval", "--model", "jscc-v1", "--data", SAMPLES, "--mcs", "qpsk-1/2", "--out", tmp_path / "b",
                check=False)
    assert p.returncode == 2 and "--mcs qpsk-1/2: need a digital codec" in p.stderr
    p = run_cli("eval", "--model", "jpeg-ldpc", "--data", SAMPLES, "--cbr", "0.0013", "--mcs", "qpsk-1/2",
                "--no-separation", "--out", tmp_path / "c", check=False)
    assert p.returncode == 2
    assert "kodim" in p.stderr and "carry 109 bytes of jpeg at qpsk-1/2" in p.stderr and "smallest jpeg" in p.stderr


def test_record_in_card_keeps_a_built_in_codecs_table_in_the_digital_table(tmp_path, monkeypatch):
    import json
    import os

    from testbed.zoo import open_codec

    table = tmp_path / "digital_eval.json"
    env = {**os.environ, "TESTBED_DIGITAL_EVAL": str(table)}
    run_cli("eval", "--model", "jpeg2000-ldpc", "--data", SAMPLES, "--snr-db", "5,20", "--record-in-card", "kodak",
            "--no-separation", "--out", tmp_path / "r", env=env)
    run_cli("eval", "--model", "jpeg2000-ldpc", "--data", SAMPLES, "--snr-db", "20", "--mcs", "qpsk-1/2",
            "--record-in-card", "kodak", "--no-separation", "--out", tmp_path / "q", env=env)
    data = json.loads(table.read_text())
    sha = open_codec("jpeg2000-ldpc").sha256
    assert data["jpeg2000-ldpc"]["sha256"] == sha
    ev = data["jpeg2000-ldpc"]["evaluation"]
    assert sorted(ev) == ["kodak/awgn/cbr=0.0625", "kodak/awgn/cbr=0.0625/mcs=qpsk-1/2"]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert ev["kodak/awgn/cbr=0.0625"]["psnr_db"] == {f"{r['snr_db']:g}": round(r["psnr_db"], 2)
                                                     for r in summary["results"]}
    monkeypatch.setenv("TESTBED_DIGITAL_EVAL", str(table))
    assert open_codec("jpeg2000-ldpc").card.evaluation == ev          # what the controller plans with
    p = run_cli("eval", "--model", "jpeg2000-ldpc", "--data", SAMPLES, "--snr-db", "20", "--record-in-card", "kodak",
                "--no-separation", "--out", tmp_path / "s", env=env, check=False)
    assert p.returncode == 2 and "lacks SNR 5 dB" in p.stderr and "digital codecs' table" in p.stderr
    data["jpeg2000-ldpc"]["sha256"] = "0" * 64                         # recorded for another version
    table.write_text(json.dumps(data))
    assert open_codec("jpeg2000-ldpc").card.evaluation == {}


def test_a_learned_codec_refuses_a_frame_mode():
    from testbed.zoo import open_codec

    codec = open_codec("jscc-v1")
    k = codec.rate(0.0625).symbols_per_location
    with pytest.raises(ValueError, match="frame mode 3"):
        codec.decode(np.zeros(k * 4, np.complex64), 10.0, 32, 32, mode=3)
    assert codec.decoded_fields() == {}


def test_lost_frames_are_erasures_for_the_demapper():
    """A receiver that lost one frame of eight: with the per-symbol SNR (NaN where lost) the
    64-QAM blocks still decode; with one SNR for every symbol the zeros mislead the demapper."""
    from testbed.core.paths import samples_dir
    from testbed.core.images import load_rgb
    from testbed.phy import framing
    from testbed.phy import header as hdr
    from testbed.zoo import open_codec

    img = np.ascontiguousarray(load_rgb(sorted(samples_dir().glob("*.png"))[0])[:256, :384])
    codec = open_codec("jpeg2000-ldpc")
    enc = codec.encode(img, 22.0, codec.rate(0.0625, mcs="64qam-2/3"))
    rng = np.random.default_rng(0)
    n0 = 10 ** (-22.0 / 10)
    y = enc.symbols + np.sqrt(n0 / 2) * (rng.standard_normal(enc.symbols.size) + 1j * rng.standard_normal(enc.symbols.size))
    # the receiver's view: frames 0..7, frame 3 missing (its symbols zero-filled)
    rx = framing.ImageRx(image_id=0, height=256, width=384, symbols_per_location=48, model_hash=0,
                         n_symbols=y.size, frame_count=8, stream=y.astype(np.complex64))
    for i in range(8):
        if i != 3:
            h = hdr.FrameHeader(image_id=0, frame_index=i, frame_count=8, height=256, width=384,
                                symbols_per_location=48, n_payload=1, payload_offset=i, model_hash=0)
            rx.frames[i] = framing.FrameRx(header=h, symbols=np.zeros(1, np.complex64), snr_db=22.0 + 0.1 * i)
    rx.stream[3::8] = 0
    per_symbol = rx.symbol_snr_db()
    assert np.isnan(per_symbol[3::8]).all() and np.allclose(per_symbol[5::8], 22.5)
    codec.decode(rx.stream, 22.0, 256, 384, mode=enc.mode, symbol_snr_db=per_symbol)
    assert codec.decoded_fields()["blocks_failed"] == 0
    codec.decode(rx.stream, 22.0, 256, 384, mode=enc.mode)
    assert codec.decoded_fields()["blocks_failed"] > 0
