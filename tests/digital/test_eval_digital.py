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


def test_record_in_card_is_refused_for_a_built_in_codec(tmp_path):
    p = run_cli("eval", "--model", "jpeg-ldpc", "--data", SAMPLES, "--record-in-card", "kodak", "--out", tmp_path / "r",
                check=False)
    assert p.returncode == 2 and "built-in codec" in p.stderr and not (tmp_path / "r").exists()


def test_a_learned_codec_refuses_a_frame_mode():
    from testbed.zoo import open_codec

    codec = open_codec("jscc-v1")
    k = codec.rate(0.0625).symbols_per_location
    with pytest.raises(ValueError, match="frame mode 3"):
        codec.decode(np.zeros(k * 4, np.complex64), 10.0, 32, 32, mode=3)
    assert codec.decoded_fields() == {}
