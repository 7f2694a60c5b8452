"""The digital codecs through the loopback flowgraph (OFDM PHY, the MCS in each frame header):
above the MCS's threshold the receiver decodes the very codestream that was sent, below it every
block is lost and the row still says so.

The flowgraphs run in subprocesses (:func:`run_entry_point`): GNU Radio keeps each in-process
flowgraph's shared-memory buffers until the process ends, and the suite's process is near the
system's limit of segments."""
import json

import numpy as np
import pytest

pytest.importorskip("gnuradio.digital")

from tests.helpers import SAMPLES, run_cli, run_entry_point, write_png  # noqa: E402
from testbed.core.runlog import read_csv_rows  # noqa: E402


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    from testbed.core.images import load_rgb

    d = tmp_path_factory.mktemp("imgs")
    for name in ("kodim05.png", "kodim23.png"):
        write_png(d / name, np.ascontiguousarray(load_rgb(SAMPLES / name)[64:320, 128:512]))
    return d


def test_loopback_decodes_the_sent_codestream_above_threshold_and_logs_the_cliff(crops, tmp_path):
    from testbed.core.images import load_rgb
    from testbed.core.metrics import psnr
    from testbed.digital import link, source
    from testbed.digital.mcs import mcs

    lb = json.loads(run_entry_point("loopback", "--model", "jpeg2000-ldpc", "--images", crops, "--snr-db", "1,6",
                            "--mcs", "qpsk-1/2", "--no-ms-ssim", "--out", tmp_path / "lb", "--json").stdout)
    rows = read_csv_rows(tmp_path / "lb" / "results.csv")
    assert len(rows) == 4 and {r["mcs"] for r in rows} == {"qpsk-1/2"}
    # 1 dB: below the code's threshold, yet the frames' headers are found (at 0 dB one frame of an
    # image is missed now and then, by channel_model's noise as by the light channel's)
    low = [r for r in rows if float(r["snr_db"]) == 1]
    high = [r for r in rows if float(r["snr_db"]) == 6]
    for r in high:
        assert int(r["blocks_failed"]) == 0 and float(r["bler"]) == 0
        # the receiver re-encoded the reference: the channel flipped bits, the code corrected them all
        assert float(r["uncoded_ber"]) > 0.001 and float(r["coded_ber"]) == 0
        img = load_rgb(crops / r["image"])
        # the image a receiver shows from the whole codestream, sent at this budget
        n = int(r["code_blocks"]) * mcs("qpsk-1/2").symbols_per_block
        sent = link.transmit(img, int(round(float(r["cbr"]) * img.size)), "jpeg2000", mcs("qpsk-1/2"))
        assert len(sent.codestream) == int(r["codestream_bytes"]) and n <= sent.symbols.size
        full, _ = source.decode_prefix("jpeg2000", sent.codestream, len(sent.codestream), *img.shape[:2])
        assert float(r["psnr_db"]) == pytest.approx(psnr(img, full), abs=1e-3)     # bit-identical codestream
    for r in low:             # every row is there, the loss logged
        assert int(r["frames_decoded"]) > 0 and float(r["bler"]) > 0.5 and r["psnr_db"] != ""
        assert float(r["coded_ber"]) > 0.01 and float(r["uncoded_ber"]) > float(high[0]["uncoded_ber"])
    res = {r["snr_db"]: r for r in lb["results"]}
    assert res[6.0]["psnr_db"] > res[1.0]["psnr_db"] + 5


def test_loopback_refuses_an_mcs_for_a_learned_codec(crops, tmp_path):
    p = run_cli("loopback", "--model", "jscc-v1", "--images", crops, "--mcs", "16qam-1/2", "--out", tmp_path / "x",
                check=False)
    assert p.returncode == 2 and "--mcs 16qam-1/2: need a digital codec" in p.stderr


def test_ota_loopback_radio_records_and_replays_a_digital_codec(crops, tmp_path):
    out = tmp_path / "ota"
    s = json.loads(run_entry_point("ota", "--config", "firmware_configs/loopback.yaml", "--images", crops, "--model",
                           "jpeg-ldpc", "--mcs", "16qam-1/2", "--tx-gain-db", "10", "--record", "--out", out,
                           "--json").stdout)
    rows = read_csv_rows(out / "results.csv")
    assert len(rows) == 2 and {r["mcs"] for r in rows} == {"16qam-1/2"}
    assert all(int(r["blocks_failed"]) == 0 and float(r["psnr_db"]) > 20 for r in rows)
    meta = json.loads(open(s["recordings"][0]).read())
    assert meta["global"]["testbed:settings"]["mcs"] == "16qam-1/2"
    run_entry_point("replay", s["recordings"][0], "--out", tmp_path / "replay", "--json")
    rep = {r["image"]: r for r in read_csv_rows(tmp_path / "replay" / "results.csv")}
    for r in rows:      # the receiver alone, on the recorded samples, decodes the same codestream
        assert rep[r["image"]]["mcs"] == "16qam-1/2" and float(rep[r["image"]]["psnr_db"]) == pytest.approx(
            float(r["psnr_db"]), abs=1e-3)
        assert float(r["coded_ber"]) == 0 and float(rep[r["image"]]["uncoded_ber"]) == pytest.approx(
            float(r["uncoded_ber"]))
