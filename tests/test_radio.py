"""Radio helpers without hardware: link-check analysis, Pluto/USRP settings, config.txt, burst tags."""
import configparser

import numpy as np
import pytest

from testbed.configs import load_config
from testbed.radio import analysis
from testbed.radio.config import PlutoConfig, UsrpConfig
from testbed.radio.frontend import pluto_flush_samples, pluto_settings, usrp_settings


@pytest.mark.parametrize("cfo, snr", [(0.0, 20.0), (23_456.0, 10.0), (-17_000.0, 3.0)])
def test_cfo_and_snr_from_a_capture(cfo, snr):
    fs = 1e6
    ref = np.tile(analysis.reference(), 2)
    rng = np.random.default_rng(1)
    n = np.arange(ref.size)
    x = ref * np.exp(2j * np.pi * cfo / fs * n + 0.7j) * 0.3
    sigma = 0.3 * 10 ** (-snr / 20)
    x = x + sigma * (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size)) / np.sqrt(2)
    r = analysis.estimate_cfo_snr(x[123:], fs)   # any starting point: the reference is cyclic
    assert abs(r["cfo_hz"] - cfo) < 20
    assert abs(r["snr_db"] - snr) < 1.0
    with pytest.raises(ValueError, match="too short"):
        analysis.estimate_cfo_snr(x[:100], fs)


def test_xo_correction_cancels_the_measured_offset():
    lo, xo = 2.4e9, 40e6
    err = -8e-6   # the receiver's reference runs 8 ppm slow, so its LO is low and it sees +CFO
    cfo = lo - lo * (1 + err)
    fixed = analysis.suggest_xo_correction(cfo, lo, xo)
    assert fixed == pytest.approx(xo * (1 + err), rel=1e-9)
    assert analysis.suggest_xo_correction(0.0, lo, xo) == xo


def test_pluto_settings_order_and_ranges():
    cfg = load_config("firmware_configs/pluto.yaml")
    s = pluto_settings(cfg)
    names = [n for n, _ in s["source"]]
    assert names.index("set_gain_mode") < names.index("set_gain")   # mode first
    assert ("set_attenuation", (0, 30.0)) in s["sink"]
    assert ("set_frequency", (2400000000,)) in s["sink"]
    assert pluto_settings(cfg, tx_gain_db=-10)["tx_attenuation_db"] == 10.0
    with pytest.raises(ValueError, match="tx-gain-db"):
        pluto_settings(cfg, tx_gain_db=5)
    assert pluto_flush_samples(32768, 1000) == 33768


def test_pyadi_settings_and_readback_comparison():
    from testbed.radio.pluto import compare, firmware_ok, settings

    cfg = PlutoConfig(kind="pluto", rx_gain_mode="slow_attack")
    st = settings(cfg)
    keys = [k for k, _ in st]
    assert "rx_hardwaregain_chan0" not in keys   # no manual gain in AGC mode
    assert keys.index("gain_control_mode_chan0") < keys.index("tx_hardwaregain_chan0")
    read = dict(st)
    assert compare(st, read) == []
    read["rx_lo"] = read["rx_lo"] + 5000
    read["gain_control_mode_chan0"] = "manual"
    bad = compare(st, read)
    assert len(bad) == 2 and "rx_lo" in bad[0] + bad[1]
    assert firmware_ok("v0.38", "v0.38") and firmware_ok("v0.39-dirty", "v0.38") and not firmware_ok("v0.31", "v0.38")


def test_usrp_settings():
    cfg = load_config("firmware_configs/usrp_b210.yaml")
    s = usrp_settings(cfg)
    assert "master_clock_rate=1.6e+07" in s["device_args"] and s["rx_device_args"] == s["device_args"]
    assert usrp_settings(cfg, 60)["tx_gain_db"] == 60
    with pytest.raises(ValueError, match="b210"):
        usrp_settings(cfg, 95)
    assert isinstance(load_config("firmware_configs/usrp_x310.yaml"), UsrpConfig)


def test_pluto_config_txt_for_several_plutos():
    from testbed.radio.pluto_config_txt import render

    ips, hosts = [], []
    for ip in ("192.168.2.1", "192.168.3.1", "192.168.4.1"):
        cp = configparser.ConfigParser()
        cp.read_string(render(ip))
        ips.append(cp["NETWORK"]["ipaddr"])
        hosts.append(cp["NETWORK"]["ipaddr_host"])
        assert cp["SYSTEM"]["xo_correction"] == "40000000"
    assert len(set(ips)) == 3 and len(set(hosts)) == 3
    assert hosts[1] == "192.168.3.10"
    with pytest.raises(ValueError, match="collides"):
        render("192.168.5.10")
    with pytest.raises(ValueError, match="IPv4"):
        render("pluto.local")


def test_burst_shaper_marks_bursts_for_the_usrp():
    import pmt
    from gnuradio import blocks, gr

    from testbed.gr.burst_shaper import burst_shaper

    tags = []
    data = []
    for n in (50, 30):
        t = gr.tag_t()
        t.offset, t.key, t.value = len(data), pmt.intern("packet_len"), pmt.from_long(n)
        tags.append(t)
        data += [1 + 0j] * n
    tb = gr.top_block()
    src = blocks.vector_source_c(data, False, 1, tags)
    sh = burst_shaper(gain=1.0, clip=2.0, gap=10)
    snk = blocks.vector_sink_c()
    tb.connect(src, sh, snk)
    tb.run()
    out = snk.tags()
    sob = [t.offset for t in out if pmt.symbol_to_string(t.key) == "tx_sob"]
    eob = [t.offset for t in out if pmt.symbol_to_string(t.key) == "tx_eob"]
    assert sob == [0, 60] and eob == [59, 99]   # each burst ends after its 10 gap zeros
    assert len(snk.data()) == 100
