"""MCS names, the AWGN simulation behind the measured table, and link adaptation."""
import json

import numpy as np
import pytest

from testbed.digital import mcs as M


def test_names_and_rates():
    assert M.NAMES[0] == "qpsk-1/2" and M.NAMES[-1] == "64qam-5/6"
    eff = [m.payload_bits_per_symbol for m in M.MCS_TABLE]
    assert eff == sorted(eff)                                  # ordered by payload rate
    assert M.mcs("16qam-3/4").symbols_per_block == 486
    assert abs(M.mcs("qpsk-1/2").payload_bits_per_symbol - 2 * 940 / 1944) < 1e-12
    with pytest.raises(ValueError, match="known: qpsk-1/2"):
        M.mcs("qpsk-7/8")


def test_simulation_shows_the_cliff():
    rng = np.random.default_rng(0)
    m = M.mcs("qpsk-1/2")
    good = M.simulate(m, 2.5, 40, rng)
    bad = M.simulate(m, 0.0, 20, rng)
    assert good["bler"] == 0 and good["coded_ber"] == 0 and 0.07 < good["uncoded_ber"] < 0.11     # Q(sqrt(Es/N0)) = 0.091
    assert bad["bler"] > 0.5 and bad["coded_ber"] > 1e-3 and bad["uncoded_ber"] > good["uncoded_ber"]


def test_the_shipped_table_is_measured_and_meets_the_rate_half_target():
    table = M.load_table()
    raw = json.loads(M.TABLE.read_text())
    assert raw["command"].startswith("python scripts/measure_mcs.py") and raw["blocks_per_point"] >= 100
    thresholds = [M.threshold_db(table[name]) for name in M.NAMES]
    assert all(t is not None for t in thresholds)
    assert thresholds == sorted(thresholds)            # faster MCSs need more SNR
    rows = table["qpsk-1/2"]
    assert any(r["snr_db"] <= 2.5 and r["coded_ber"] < 1e-4 for r in rows)


def test_auto_picks_the_fastest_mcs_below_the_bler_target():
    table = {name: [{"snr_db": 0.0, "bler": 1.0}, {"snr_db": 5.0 + 3 * i, "bler": 0.05}]
             for i, name in enumerate(M.NAMES)}
    assert M.choose(-3.0, table).name == "qpsk-1/2"          # nothing good: the most robust
    assert M.choose(5.0, table).name == "qpsk-1/2"
    assert M.choose(10.9, table).name == "qpsk-3/4"          # 11.0 is needed for 16qam-1/2 ...
    assert M.choose(11.0, table).name == "16qam-1/2"
    assert M.choose(40.0, table).name == "64qam-5/6"
    with pytest.raises(ValueError, match="not a number"):
        M.choose(float("nan"), table)


def test_a_broken_table_is_named(tmp_path):
    p = tmp_path / "t.json"
    p.write_text('{"mcs": {"qpsk-1/2": []}}')
    with pytest.raises(ValueError, match="t.json.*measure_mcs"):
        M.load_table(p)
