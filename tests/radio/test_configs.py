"""Radio configs: every shipped file loads; values outside the device's range are rejected
with the file and key named, before any hardware is touched."""
from pathlib import Path

import pytest

from testbed.core.configfile import ConfigError
from testbed.link.configs import KINDS, load_config
from testbed.radio.config import PlutoConfig, UsrpConfig

FC = Path(__file__).resolve().parents[2] / "firmware_configs"


def test_registry_has_every_kind_and_files_exist_for_each():
    assert set(KINDS) == {"loopback", "sigmf", "pluto", "usrp"}
    kinds = {type(load_config(p)) for p in FC.glob("*.yaml")}
    assert kinds == set(KINDS.values())


def _w(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


PLUTO = "kind: pluto\n"
USRP = "kind: usrp\n"


@pytest.mark.parametrize("text, words", [
    (PLUTO + "sample_rate: 500.0e3\nofdm: {samp_rate: 500.0e3}\n", ["sample_rate=500000", "521000"]),
    (PLUTO + "tx_lo: 6.0e9\n", ["tx_lo=6e+09", "AD9363", "ad9364"]),
    (PLUTO + "rx_lo: 100.0e6\n", ["rx_lo=1e+08"]),
    (PLUTO + "rf_bandwidth: 40.0e6\n", ["rf_bandwidth"]),
    (PLUTO + "tx_attenuation_db: 95\n", ["tx_attenuation_db=95"]),
    (PLUTO + "rx_gain_mode: auto\n", ["rx_gain_mode='auto'", "slow_attack"]),
    (PLUTO + "rx_gain_db: 80\n", ["rx_gain_db=80"]),
    (PLUTO + "buffer_size: 3000\n", ["buffer_size=3000", "power of two"]),
    (PLUTO + "xo_correction: 12345\n", ["xo_correction"]),
    (PLUTO + "uri: 192.168.2.1\n", ["uri='192.168.2.1'", "ip:"]),
    (PLUTO + "min_firmware: latest\n", ["min_firmware"]),
    (PLUTO + "sample_rate: 2.0e6\n", ["ofdm.samp_rate", "sample_rate=2e+06"]),
    (PLUTO + "rf_bandwidth: 300.0e3\n", ["rf_bandwidth=300000", "narrower"]),
    (PLUTO + "tx_gain: 3\n", ["unknown key 'tx_gain'"]),
    (USRP + "device: b300\n", ["device='b300'", "b210"]),
    (USRP + "device: n210\nsample_rate: 3.0e6\nofdm: {samp_rate: 3.0e6}\n", ["integer decimation"]),
    (USRP + "device: x310\nmaster_clock_rate: 100.0e6\n", ["master_clock_rate=1e+08", "1.8432e+08"]),
    (USRP + "tx_gain_db: 95\n", ["tx_gain_db=95", "0..89.8"]),
    (USRP + "device: n210\ntx_gain_db: 10\nrx_gain_db: 40\n", ["rx_gain_db=40", "0..31.5"]),
    (USRP + "rx_antenna: RX3\n", ["rx_antenna='RX3'"]),
    (USRP + "clock_source: mimo\n", ["clock_source='mimo'"]),
    (USRP + "tx_lo: 7.0e9\n", ["tx_lo=7e+09"]),
    ("kind: sigmf\npath: ''\n", ["path"]),
    (USRP + "master_clock_rate: 16.0e6\nsample_rate: 3.0e6\nofdm: {samp_rate: 3.0e6}\n",
     ["sample_rate=3e+06", "integer decimation", "1.6e+07"]),
])
def test_out_of_range_values_are_rejected(tmp_path, text, words):
    with pytest.raises(ConfigError) as e:
        load_config(_w(tmp_path, text))
    msg = str(e.value)
    assert "r.yaml" in msg
    for w in words:
        assert w in msg, msg


def test_ad9364_mode_widens_the_ranges(tmp_path):
    c = load_config(_w(tmp_path, PLUTO + "ad9364: true\ntx_lo: 5.8e9\nrx_lo: 100.0e6\n"))
    assert isinstance(c, PlutoConfig) and c.chip == "ad9364"


def test_usrp_sample_rate_checked_against_the_master_clock_actually_used(tmp_path):
    # X3xx default master clock: 200 MHz (UHD), which 1 MS/s divides; B2xx without
    # master_clock_rate: UHD picks one that fits the sample rate
    c = load_config(_w(tmp_path, USRP + "device: x310\ntx_gain_db: 10\nrx_gain_db: 10\n"))
    assert c.sample_rate == 1e6
    c = load_config(_w(tmp_path, USRP + "sample_rate: 3.0e6\nofdm: {samp_rate: 3.0e6}\n"))
    assert c.master_clock_rate == 0.0


def test_defaults_are_valid():
    assert isinstance(load_config(FC / "usrp_b210.yaml"), UsrpConfig)
    PlutoConfig(kind="pluto").validate()
    UsrpConfig(kind="usrp").validate()
