"""``testbed loopback --realtime``: the air paced at the sample rate, every sample the receiver
missed counted in summary.json and on the images whose frames it hit (a process of its own per
run: in-process flowgraphs keep shared-memory segments until the process ends)."""
import json

import pytest

from testbed.core.runlog import read_csv_rows
from testbed.gr import cpp_blocks
from tests.helpers import SAMPLES, run_entry_point

pytestmark = pytest.mark.skipif(cpp_blocks.module() is None, reason="gr-testbedphy not built")


def _run(tmp_path, rate: str, image: str, *extra):
    out = tmp_path / "run"
    p = run_entry_point("loopback", "--realtime", "--samp-rate", rate, "--snr-db", "12", "--no-ms-ssim",
                        "--images", SAMPLES / image, "--out", out, "--json", *extra)
    return json.loads(p.stdout), json.loads((out / "summary.json").read_text()), read_csv_rows(out / "results.csv"), p


def _consistent(summary, rows):
    """summary.json's counts add up, and each row's frames_hit is what the summary says of its image."""
    (pc,) = summary["phy_counters"]
    assert summary["realtime"] is True and pc["realtime"] is True
    assert pc["air_samples"] > 0 and 0 <= pc["air_dropped_tx_samples"] <= pc["air_dropped_samples"]
    assert (pc["air_overflows"] > 0) == (pc["air_dropped_samples"] > 0)
    assert summary["results"][0]["dropped_samples"] == pc["air_dropped_samples"]
    assert summary["results"][0]["images_hit"] == len(pc["images_hit"])
    for i, row in enumerate(rows):
        hit = pc["images_hit"].get(str(i), [])
        assert row["frames_hit"] == " ".join(map(str, hit))
    return pc


def test_realtime_loopback_records_the_air(tmp_path):
    j, summary, rows, _ = _run(tmp_path, "1e6", "kodim23.png")
    _consistent(summary, rows)
    (r,) = j["results"]
    assert {"dropped_samples", "underflow_samples", "images_hit"} <= set(r)
    assert r["frames_sent"] > 0 and len(rows) == 1


@pytest.mark.slow
def test_an_overloaded_receiver_reports_its_drops(tmp_path):
    """40 MS/s with the smallest receive buffer (65 536 samples, 1.6 ms): the receiver pauses
    longer than that at every header verdict and image, on any machine; the samples it misses
    must be dropped and counted."""
    j, summary, rows, p = _run(tmp_path, "4e7", "kodim23.png", "--rx-buffer-ms", "0.001")
    pc = _consistent(summary, rows)
    assert pc["air_dropped_samples"] > 0 and j["results"][0]["dropped_samples"] > 0
    assert "samples dropped" in p.stderr


def test_the_receive_buffer_is_emulated_only_when_paced(tmp_path):
    from tests.helpers import run_cli

    r = run_cli("loopback", "--rx-buffer-ms", "10", "--images", SAMPLES / "kodim23.png", "--out", tmp_path / "r",
                check=False)
    assert r.returncode == 2 and "--rx-buffer-ms" in r.stderr and "--realtime" in r.stderr
    assert not (tmp_path / "r" / "summary.json").exists()
