"""Typed radio configs: ADALM-Pluto, USRP (B2xx, N2xx, X3xx) and SigMF-file front-ends.

Every value is checked against the device's range when the file is loaded, before any hardware
is touched; errors read ``FILE: key=value: problem``. The PHY's sample rate (``ofdm.samp_rate``)
must equal the radio's.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..core.configfile import ConfigError
from ..phy.config import OfdmConfig

# ADALM-Pluto: AD9363 as shipped; AD9364 once the firmware is told so (see firmware_configs/README.md)
PLUTO_LO = {"ad9363": (325e6, 3.8e9), "ad9364": (70e6, 6.0e9)}
PLUTO_BW = {"ad9363": (200e3, 20e6), "ad9364": (200e3, 56e6)}
PLUTO_RATE = (521e3, 61.44e6)       # below 2.083 MS/s the AD9361 FIR decimates (pyadi-iio/libiio set it up)
PLUTO_TX_ATT = (0.0, 89.75)         # dB of attenuation
PLUTO_RX_GAIN = (-3.0, 71.0)        # dB, manual gain (the upper limit falls above 4 GHz)
PLUTO_GAIN_MODES = ("manual", "slow_attack", "fast_attack", "hybrid")
PLUTO_XO = (39.9e6, 40.1e6)         # xo_correction around the 40 MHz reference (0: leave as is)
_URI = re.compile(r"^(ip:[\w.\-]+|usb:[\d.]+|local:|serial:.+)$")


@dataclass(frozen=True)
class PlutoConfig:
    kind: str
    uri: str = "ip:192.168.2.1"
    rx_uri: str = ""                 # a second Pluto as receiver ("" = the same one, full duplex)
    sample_rate: float = 1e6
    rf_bandwidth: float = 1e6
    tx_lo: float = 2.4e9
    rx_lo: float = 2.4e9
    tx_attenuation_db: float = 30.0
    rx_gain_mode: str = "manual"
    rx_gain_db: float = 30.0
    buffer_size: int = 32768
    xo_correction: float = 0.0
    min_firmware: str = "v0.38"
    ad9364: bool = False
    ofdm: OfdmConfig = field(default_factory=OfdmConfig)
    description: str = ""

    @property
    def chip(self) -> str:
        return "ad9364" if self.ad9364 else "ad9363"

    def validate(self) -> None:
        for key in ("uri", "rx_uri"):
            v = getattr(self, key)
            if (v or key == "uri") and not _URI.match(v):
                raise ConfigError(f"{key}={v!r}: expected ip:ADDRESS, usb:BUS.DEV.IF, local: or serial:...")
        lo, hi = PLUTO_RATE
        if not lo <= self.sample_rate <= hi:
            raise ConfigError(f"sample_rate={self.sample_rate:g}: the Pluto supports {lo:g}..{hi:g} S/s")
        blo, bhi = PLUTO_BW[self.chip]
        if not blo <= self.rf_bandwidth <= bhi:
            raise ConfigError(f"rf_bandwidth={self.rf_bandwidth:g}: the {self.chip.upper()} supports {blo:g}..{bhi:g} Hz"
                              + ("" if self.ad9364 else " (more with ad9364: true)"))
        flo, fhi = PLUTO_LO[self.chip]
        for key in ("tx_lo", "rx_lo"):
            v = getattr(self, key)
            if not flo <= v <= fhi:
                raise ConfigError(f"{key}={v:g}: outside the {self.chip.upper()} tuning range {flo:g}..{fhi:g} Hz"
                                  + ("" if self.ad9364 else " (70 MHz..6 GHz with ad9364: true)"))
        if not PLUTO_TX_ATT[0] <= self.tx_attenuation_db <= PLUTO_TX_ATT[1]:
            raise ConfigError(f"tx_attenuation_db={self.tx_attenuation_db:g}: must be in 0..89.75 dB")
        if self.rx_gain_mode not in PLUTO_GAIN_MODES:
            raise ConfigError(f"rx_gain_mode={self.rx_gain_mode!r}: one of {', '.join(PLUTO_GAIN_MODES)}")
        if not PLUTO_RX_GAIN[0] <= self.rx_gain_db <= PLUTO_RX_GAIN[1]:
            raise ConfigError(f"rx_gain_db={self.rx_gain_db:g}: must be in -3..71 dB")
        if not 1024 <= self.buffer_size <= 2 ** 24 or self.buffer_size & (self.buffer_size - 1):
            raise ConfigError(f"buffer_size={self.buffer_size}: a power of two in 1024..16777216 samples")
        if self.xo_correction and not PLUTO_XO[0] <= self.xo_correction <= PLUTO_XO[1]:
            raise ConfigError(f"xo_correction={self.xo_correction:g}: 0 (leave) or within {PLUTO_XO[0]:g}..{PLUTO_XO[1]:g} Hz")
        if not re.match(r"^v\d+\.\d+$", self.min_firmware):
            raise ConfigError(f"min_firmware={self.min_firmware!r}: expected vMAJOR.MINOR, e.g. v0.38")
        if self.ofdm.samp_rate != self.sample_rate:
            raise ConfigError(f"ofdm.samp_rate={self.ofdm.samp_rate:g} differs from sample_rate={self.sample_rate:g}")
        if self.rf_bandwidth < 0.8 * self.ofdm.occupied_bandwidth_hz():
            raise ConfigError(f"rf_bandwidth={self.rf_bandwidth:g}: narrower than the OFDM signal "
                              f"({self.ofdm.occupied_bandwidth_hz():g} Hz occupied)")


# USRP families: master clock rate (range, or the allowed values), LO, gains (B2xx: the AD9361;
# N2xx/X3xx: a UBX daughterboard), antennas and reference sources. The sample rate must divide
# the master clock rate (an integer decimation); on the B2xx only when master_clock_rate is set,
# otherwise UHD picks one that fits.
USRP_DEVICES = {
    "b200": {"mcr": (5e6, 61.44e6), "lo": (70e6, 6e9), "tx_gain": (0, 89.8), "rx_gain": (0, 76),
             "tx_ant": ("TX/RX",), "rx_ant": ("TX/RX", "RX2"), "ref": ("internal", "external", "gpsdo")},
    "b210": {"mcr": (5e6, 61.44e6), "lo": (70e6, 6e9), "tx_gain": (0, 89.8), "rx_gain": (0, 76),
             "tx_ant": ("TX/RX",), "rx_ant": ("TX/RX", "RX2"), "ref": ("internal", "external", "gpsdo")},
    "b200mini": {"mcr": (5e6, 61.44e6), "lo": (70e6, 6e9), "tx_gain": (0, 89.8), "rx_gain": (0, 76),
                 "tx_ant": ("TX/RX",), "rx_ant": ("TX/RX", "RX2"), "ref": ("internal", "external")},
    "n200": {"mcr": (100e6,), "lo": (10e6, 6e9), "tx_gain": (0, 31.5), "rx_gain": (0, 31.5),
             "tx_ant": ("TX/RX",), "rx_ant": ("TX/RX", "RX2"), "ref": ("internal", "external", "mimo", "gpsdo")},
    "n210": {"mcr": (100e6,), "lo": (10e6, 6e9), "tx_gain": (0, 31.5), "rx_gain": (0, 31.5),
             "tx_ant": ("TX/RX",), "rx_ant": ("TX/RX", "RX2"), "ref": ("internal", "external", "mimo", "gpsdo")},
    "x300": {"mcr": (184.32e6, 200e6), "lo": (10e6, 6e9), "tx_gain": (0, 31.5), "rx_gain": (0, 31.5),
             "tx_ant": ("TX/RX",), "rx_ant": ("TX/RX", "RX2"), "ref": ("internal", "external", "gpsdo")},
    "x310": {"mcr": (184.32e6, 200e6), "lo": (10e6, 6e9), "tx_gain": (0, 31.5), "rx_gain": (0, 31.5),
             "tx_ant": ("TX/RX",), "rx_ant": ("TX/RX", "RX2"), "ref": ("internal", "external", "gpsdo")},
}


@dataclass(frozen=True)
class UsrpConfig:
    kind: str
    device: str = "b210"
    device_args: str = ""            # e.g. "type=b200", "addr=192.168.10.2"
    rx_device_args: str = ""         # a second USRP as receiver ("" = the same one)
    clock_source: str = "internal"
    time_source: str = "internal"
    master_clock_rate: float = 0.0   # 0: the device's default (B2xx: chosen by UHD from the sample rate)
    sample_rate: float = 1e6
    tx_lo: float = 2.4e9
    rx_lo: float = 2.4e9
    tx_gain_db: float = 40.0
    rx_gain_db: float = 30.0
    tx_antenna: str = "TX/RX"
    rx_antenna: str = "RX2"
    ofdm: OfdmConfig = field(default_factory=OfdmConfig)
    description: str = ""

    def validate(self) -> None:
        if self.device not in USRP_DEVICES:
            raise ConfigError(f"device={self.device!r}: one of {', '.join(USRP_DEVICES)}")
        d = USRP_DEVICES[self.device]
        for key in ("clock_source", "time_source"):
            if getattr(self, key) not in d["ref"]:
                raise ConfigError(f"{key}={getattr(self, key)!r}: the {self.device} takes {', '.join(d['ref'])}")
        mcr = self.master_clock_rate
        if mcr:
            ok = (d["mcr"][0] <= mcr <= d["mcr"][1]) if len(d["mcr"]) == 2 and self.device.startswith("b") \
                else mcr in d["mcr"]
            if not ok:
                raise ConfigError(f"master_clock_rate={mcr:g}: the {self.device} supports "
                                  + ("..".join(f"{v:g}" for v in d["mcr"]) if self.device.startswith("b")
                                     else " or ".join(f"{v:g}" for v in d["mcr"])))
        # 0: UHD's default (N2xx 100 MHz, X3xx 200 MHz; B2xx: chosen from the sample rate)
        eff = mcr or (d["mcr"][-1] if not self.device.startswith("b") else d["mcr"][1])
        if not (math.isfinite(self.sample_rate) and 0 < self.sample_rate <= eff):
            raise ConfigError(f"sample_rate={self.sample_rate:g}: must be in (0, {eff:g}] (master clock rate)")
        if not self.device.startswith("b") or mcr:
            ratio = eff / self.sample_rate
            if abs(ratio - round(ratio)) > 1e-6:
                raise ConfigError(f"sample_rate={self.sample_rate:g}: the {self.device} needs an integer decimation "
                                  f"of the {eff:g} master clock (ratio {ratio:.4g})")
        elif not mcr and self.sample_rate < 200e3:
            raise ConfigError(f"sample_rate={self.sample_rate:g}: below 200 kS/s set master_clock_rate explicitly")
        flo, fhi = d["lo"]
        for key in ("tx_lo", "rx_lo"):
            v = getattr(self, key)
            if not flo <= v <= fhi:
                raise ConfigError(f"{key}={v:g}: outside the {self.device} tuning range {flo:g}..{fhi:g} Hz")
        for key, rng in (("tx_gain_db", d["tx_gain"]), ("rx_gain_db", d["rx_gain"])):
            v = getattr(self, key)
            if not rng[0] <= v <= rng[1]:
                raise ConfigError(f"{key}={v:g}: the {self.device} supports {rng[0]:g}..{rng[1]:g} dB")
        if self.tx_antenna not in d["tx_ant"]:
            raise ConfigError(f"tx_antenna={self.tx_antenna!r}: one of {', '.join(d['tx_ant'])}")
        if self.rx_antenna not in d["rx_ant"]:
            raise ConfigError(f"rx_antenna={self.rx_antenna!r}: one of {', '.join(d['rx_ant'])}")
        if self.ofdm.samp_rate != self.sample_rate:
            raise ConfigError(f"ofdm.samp_rate={self.ofdm.samp_rate:g} differs from sample_rate={self.sample_rate:g}")
