"""Typed experiment configs (``firmware_configs/*.yaml``) and the registry of their kinds.

Every file has a ``kind`` key naming its dataclass in :data:`KINDS`; :func:`load_config`
validates it before anything is opened, with errors naming the file and the key.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..core.configfile import ConfigError, from_mapping, load_yaml
from ..phy.config import OfdmConfig
from ..phy.impairments import MULTIPATH, TDL, load_taps_file, tdl_taps


@dataclass(frozen=True)
class ChannelConfig:
    """The loopback channel: AWGN at Es/N0 per sub-carrier plus impairments."""
    snr_db: float = 10.0
    cfo_hz: float = 0.0
    sco_ppm: float = 0.0
    delay_samples: int = 0
    multipath: str = "none"          # none | tdl-a | tdl-c | path of a taps file
    delay_spread_ns: float = 0.0     # 0: the profile's longest tap at half the cyclic prefix
    seed: int = 0

    def validate(self) -> None:
        for key in ("snr_db", "cfo_hz", "sco_ppm", "delay_spread_ns"):
            if not math.isfinite(getattr(self, key)):
                raise ConfigError(f"{key}={getattr(self, key)}: must be a finite number")
        if not -10 <= self.snr_db <= 60:
            raise ConfigError(f"snr_db={self.snr_db}: must be in -10..60 dB")
        if abs(self.sco_ppm) > 1000:
            raise ConfigError(f"sco_ppm={self.sco_ppm}: must be within +-1000")
        if not 0 <= self.delay_samples <= 10_000_000:
            raise ConfigError(f"delay_samples={self.delay_samples}: must be in 0..10000000")
        if self.multipath not in MULTIPATH:
            try:    # a taps file (relative paths: to the working directory, as when the run reads it)
                load_taps_file(self.multipath)
            except ValueError as e:
                raise ConfigError(f"multipath={self.multipath!r}: one of {', '.join(MULTIPATH)} or a taps file "
                                  f"({e})") from None
        if not 0 <= self.delay_spread_ns <= 1e6:
            raise ConfigError(f"delay_spread_ns={self.delay_spread_ns}: must be in 0..1e6 (1 ms)")
        if not 0 <= self.seed <= 2 ** 32 - 1:
            raise ConfigError(f"seed={self.seed}: must be >= 0 and at most {2 ** 32 - 1}")

    def check_rate(self, ofdm: OfdmConfig) -> None:
        """Rules that need the sample rate (the ``channel.`` prefix is the caller's)."""
        if abs(self.cfo_hz) > 0.45 * ofdm.samp_rate:
            raise ConfigError(f"channel.cfo_hz={self.cfo_hz}: beyond the sample rate {ofdm.samp_rate:g}")
        if self.multipath in TDL and self.delay_spread_ns:
            import numpy as np

            try:
                tdl_taps(self.multipath, self.delay_spread_ns * 1e-9, ofdm.samp_rate, np.random.default_rng(0))
            except ValueError as e:
                raise ConfigError(f"channel.delay_spread_ns={self.delay_spread_ns:g}: {e}") from None


@dataclass(frozen=True)
class LoopbackConfig:
    kind: str
    ofdm: OfdmConfig = field(default_factory=OfdmConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    description: str = ""

    def validate(self) -> None:
        self.channel.check_rate(self.ofdm)


@dataclass(frozen=True)
class SigmfFileConfig:
    """A SigMF recording as the "radio": the transmitter writes it (through the software channel),
    the receiver reads it back. ``path``: the recording's base name; ``testbed ota`` writes
    ``RUN/<name>-gain<G>.sigmf-data``/``.sigmf-meta`` in its run folder (a folder part is ignored)."""
    kind: str
    path: str = "ota-recording"
    ofdm: OfdmConfig = field(default_factory=OfdmConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    description: str = ""

    def validate(self) -> None:
        if not self.path:
            raise ConfigError("path: must not be empty")
        self.channel.check_rate(self.ofdm)


from ..radio.config import PlutoConfig, UsrpConfig  # noqa: E402

KINDS = {"loopback": LoopbackConfig, "sigmf": SigmfFileConfig, "pluto": PlutoConfig, "usrp": UsrpConfig}
RADIO_KINDS = ("pluto", "usrp")   # kinds that open hardware


def load_config(path: str | Path):
    p = Path(path)
    data = load_yaml(p)
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ConfigError(f"{p}: key 'kind' is {kind!r}; valid kinds: {', '.join(KINDS)}")
    return from_mapping(KINDS[kind], data, str(p))
