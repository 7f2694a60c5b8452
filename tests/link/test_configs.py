from pathlib import Path

import pytest

from testbed.core.configfile import ConfigError
from testbed.link.configs import KINDS, LoopbackConfig, load_config
from testbed.phy.config import OfdmConfig

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "firmware_configs").glob("*.yaml"))


def test_there_are_configs():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_loads(path):
    cfg = load_config(path)
    assert type(cfg) in KINDS.values()
    if isinstance(cfg, LoopbackConfig):
        cfg.ofdm.validate()
        assert cfg.ofdm == OfdmConfig()   # the shipped loopback file spells out the defaults


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, words", [
    ("kind: loopback\nofdm: {fft_len: 100}\n", ["c.yaml", "ofdm.fft_len", "power of two"]),
    ("kind: loopback\nofdm: {fft_lenn: 256}\n", ["c.yaml", "unknown key 'ofdm.fft_lenn'"]),
    ("kind: loopback\nchannel: {snr_db: high}\n", ["c.yaml", "channel.snr_db", "number"]),
    ("kind: loopback\nchannel: {multipath: tdl-q}\n", ["c.yaml", "multipath", "tdl-a"]),
    ("kind: loopback\nofdm: {cp_len: 300}\n", ["c.yaml", "cp_len=300"]),
    ("kind: pluto9000\n", ["c.yaml", "kind", "loopback"]),
    ("kind: loopback\nofdm: [1, 2]\n", ["c.yaml", "mapping"]),
    ("kind: loopback\nchannel: {cfo_hz: 900000.0}\n", ["c.yaml", "cfo_hz"]),
    (": : :\n", ["c.yaml", "YAML"]),
    ("kind: loopback\nofdm: {max_carrier_offset: 3}\n", ["c.yaml", "ofdm.max_carrier_offset=3", "even"]),
    ("kind: loopback\nofdm: {samp_rate: .nan}\n", ["c.yaml", "ofdm.samp_rate=nan", "finite"]),
    ("kind: loopback\nchannel: {sco_ppm: .nan}\n", ["c.yaml", "channel.sco_ppm=nan", "finite"]),
    ("kind: loopback\nchannel: {delay_spread_ns: .nan}\n", ["c.yaml", "channel.delay_spread_ns=nan", "finite"]),
    ("kind: loopback\nchannel: {cfo_hz: .nan}\n", ["c.yaml", "channel.cfo_hz=nan", "finite"]),
    ("kind: sigmf\nchannel: {cfo_hz: 5.0e6}\n", ["c.yaml", "channel.cfo_hz=5000000.0", "sample rate"]),
    ("kind: loopback\nchannel: {multipath: /does/not/exist.txt}\n",
     ["c.yaml", "channel.multipath='/does/not/exist.txt'", "not found"]),
    ("kind: sigmf\nchannel: {multipath: taps.txt}\n", ["c.yaml", "channel.multipath='taps.txt'", "not found"]),
    ("kind: loopback\nchannel: {seed: -1}\n", ["c.yaml", "channel.seed=-1", ">= 0"]),
    ("kind: loopback\nofdm: {payload_symbols_per_frame: 100}\n",
     ["c.yaml", "ofdm.payload_symbols_per_frame=100", "194"]),
])
def test_bad_configs_name_file_and_key(tmp_path, text, words):
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, text))
    for w in words:
        assert w in str(e.value), str(e.value)


def test_bool_is_not_an_int(tmp_path):
    with pytest.raises(ConfigError, match="integer"):
        load_config(_write(tmp_path, "kind: loopback\nofdm: {fft_len: true}\n"))


def test_an_existing_taps_file_is_accepted(tmp_path):
    taps = tmp_path / "taps.txt"
    taps.write_text("1 0\n0.3 0.1\n")
    cfg = load_config(_write(tmp_path, f"kind: loopback\nchannel: {{multipath: {taps}}}\n"))
    assert cfg.channel.multipath == str(taps)
