"""Radio helpers without hardware: link-check analysis, Pluto/USRP settings, config.txt, burst tags."""
import configparser

import numpy as np
import pytest

from testbed.link.configs import load_config
from testbed.radio import analysis
from testbed.radio.config import PlutoConfig, UsrpConfig
from testbed.link.frontend import pluto_flush_samples, pluto_settings, usrp_settings


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
        assert cp["SYSTEM"]["xo_correction"] == ""      # factory calibration kept
    assert len(set(ips)) == 3 and len(set(hosts)) == 3
    assert hosts[1] == "192.168.3.10"
    with pytest.raises(ValueError, match="collides"):
        render("192.168.5.10")
    with pytest.raises(ValueError, match="IPv4"):
        render("pluto.local")
    cp = configparser.ConfigParser()
    cp.read_string(render("192.168.2.1", xo_correction=39_999_120.4))
    assert cp["SYSTEM"]["xo_correction"] == "39999120"


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


class _FakeAttr:
    def __init__(self, log, uri, name, value="40000000"):
        self.log, self.uri, self.name, self._v = log, uri, name, value

    @property
    def value(self):
        return self._v

    @value.setter
    def value(self, v):
        self.log.append((self.uri, self.name, v))
        self._v = v


class _FakeCtx:
    """libiio context of one Pluto: only ad9361-phy's xo_correction, writes logged as (uri, attr, value)."""

    def __init__(self, uri, log):
        self.attrs = {"fw_version": "v0.38", "hw_serial": "fake-" + uri}
        self._phy = type("phy", (), {"attrs": {"xo_correction": _FakeAttr(log, uri, "xo_correction")}})()

    def find_device(self, name):
        return self._phy if name == "ad9361-phy" else None


def _fake_iio(monkeypatch, log):
    import sys
    import types

    ctxs = {}
    mod = types.SimpleNamespace(Context=lambda uri: ctxs.setdefault(uri, _FakeCtx(uri, log)))
    monkeypatch.setitem(sys.modules, "iio", mod)
    return ctxs


def test_calibrate_applies_xo_correction_to_the_rx_pluto_only(monkeypatch):
    import sys
    import types

    from testbed.radio import pluto

    log = []
    ctxs = _fake_iio(monkeypatch, log)
    ref = analysis.reference()

    class FakePluto:
        def __init__(self, uri):
            self.uri, self._ctx = uri, ctxs.setdefault(uri, _FakeCtx(uri, log))

        def __setattr__(self, key, v):
            if key not in ("uri", "_ctx") and hasattr(self, "_ctx"):
                log.append((self.uri, key, v))
            object.__setattr__(self, key, v)

        def __getattr__(self, key):   # settings read back
            return dict(pluto.settings(cfg)).get(key)

        def tx(self, x):
            pass

        def tx_destroy_buffer(self):
            pass

        def rx(self):
            return np.tile(ref, 2) * 2 ** 11 * 0.3

    monkeypatch.setitem(sys.modules, "adi", types.SimpleNamespace(Pluto=FakePluto))
    cfg = PlutoConfig(kind="pluto", uri="ip:192.168.2.1", rx_uri="ip:192.168.3.1", xo_correction=40_000_123.0)
    r = pluto.calibrate(cfg, seconds=0.1)
    xo = [(u, v) for u, k, v in log if k == "xo_correction"]
    assert xo == [("ip:192.168.3.1", "40000123")]
    assert r["rx_xo_correction_now"] == 40_000_123.0 and r["captures"] >= 1
    # the receiver gets it before its LO and sample rate
    rx_keys = [k for u, k, _ in log if u == "ip:192.168.3.1"]
    assert rx_keys.index("xo_correction") < rx_keys.index("rx_lo")
    # one Pluto (full duplex): it is the receiver
    log.clear()
    pluto.apply_config(PlutoConfig(kind="pluto", xo_correction=39_999_000.0))
    assert [(u, v) for u, k, v in log if k == "xo_correction"] == [("ip:192.168.2.1", "39999000")]


@pytest.mark.parametrize("rx_uri, xo, expect", [
    ("ip:192.168.3.1", 40_000_050.0, [("ip:192.168.3.1", "40000050")]),
    ("", 40_000_050.0, [("ip:192.168.2.1", "40000050")]),
    ("ip:192.168.3.1", 0.0, []),
])
def test_gnuradio_pluto_front_end_applies_xo_correction_to_the_receiver(monkeypatch, rx_uri, xo, expect):
    import sys
    import types

    import gnuradio

    from testbed.link.frontend import PlutoFrontEnd

    log = []
    _fake_iio(monkeypatch, log)

    class Block:
        def __init__(self, uri, *a):
            log.append((uri, "create", type(self).__name__))

        def __getattr__(self, name):    # set_frequency, set_gain, ...
            return lambda *a: None

    class fmcomms2_source_fc32(Block):
        pass

    class fmcomms2_sink_fc32(Block):
        pass

    fake = types.SimpleNamespace(fmcomms2_source_fc32=fmcomms2_source_fc32, fmcomms2_sink_fc32=fmcomms2_sink_fc32)
    monkeypatch.setattr(gnuradio, "iio", fake, raising=False)
    monkeypatch.setitem(sys.modules, "gnuradio.iio", fake)
    class fmcomms2_source_fc32(Block):
        def set_min_output_buffer(self, n):
            log.append(("source", "min_output_buffer", n))

    fake.fmcomms2_source_fc32 = fmcomms2_source_fc32
    tb = types.SimpleNamespace(connect=lambda *a: None)
    cfg = PlutoConfig(kind="pluto", uri="ip:192.168.2.1", rx_uri=rx_uri, xo_correction=xo)
    PlutoFrontEnd(cfg).connect(tb, object(), object())
    assert [(u, v) for u, k, v in log if k == "xo_correction"] == expect
    # the receiver may pause reading for a header verdict: the source buffers a quarter second
    (n,) = [v for u, k, v in log if k == "min_output_buffer"]
    assert n >= 0.25 * cfg.sample_rate and n & (n - 1) == 0
    if expect:   # written before the receiver's source block exists
        assert log.index((expect[0][0], "xo_correction", expect[0][1])) < log.index(
            ((rx_uri or cfg.uri), "create", "fmcomms2_source_fc32"))


def test_sigmf_recorder_refuses_to_overwrite_a_recording(tmp_path):
    from testbed.core.sigmf_io import Recording, RecordingError, SigmfRecorder

    r = SigmfRecorder(tmp_path / "rec", 1e6, 2.4e9, {"model": "m"})
    r.write(np.ones(100, np.complex64))
    r.close()
    with pytest.raises(RecordingError, match="rec.sigmf-data.*already exists"):
        SigmfRecorder(tmp_path / "rec", 1e6, 2.4e9, {"model": "m"})
    assert Recording(tmp_path / "rec").samples == 100          # untouched
    SigmfRecorder(tmp_path / "rec", 1e6, 2.4e9, {"model": "m"}, overwrite=True).close()
    assert Recording(tmp_path / "rec").samples == 0


@pytest.mark.parametrize("chunk", [7, 1000])
def test_sigmf_source_reads_a_recording_in_chunks_then_zeros(tmp_path, monkeypatch, chunk):
    """Recordings longer than stream_mux's 32-bit lengths are read in chunks (here made small)."""
    from gnuradio import blocks, gr

    from testbed.gr import sigmf_source as mod
    from testbed.core.sigmf_io import SigmfRecorder

    monkeypatch.setattr(mod, "CHUNK", chunk)
    x = (np.arange(40) + 1j * np.arange(40, 80)).astype(np.complex64)
    r = SigmfRecorder(tmp_path / "rec", 1e6, 2.4e9, {"model": "m"})
    r.write(x)
    r.close()
    tb = gr.top_block()
    src = mod.sigmf_source(tmp_path / "rec", tail=5)
    sink = blocks.vector_sink_c()
    tb.connect(src, sink)
    tb.run()
    assert len(src.files) == -(-40 // chunk)
    np.testing.assert_array_equal(np.array(sink.data()), np.concatenate([x, np.zeros(5, np.complex64)]))
