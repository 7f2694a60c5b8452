"""OFDM parameters (typed, validated) and the carrier layout derived from them.

Carrier indices are relative to DC (negative below), as in GNU Radio's OFDM blocks with
``fft shift``. Frequency-domain vectors here are in *shifted* order: index ``fft_len//2 + k``
holds carrier ``k`` (what ``ofdm_carrier_allocator_cvc`` produces and ``fft_vcc(shift=True)``
consumes).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from ..core.configfile import ConfigError, from_mapping


@dataclass(frozen=True)
class OfdmConfig:
    fft_len: int = 256
    cp_len: int = 32
    occupied: int = 104            # carriers -occupied..-1 and 1..occupied are used (DC is empty)
    pilot_spacing: int = 16        # one pilot every pilot_spacing carriers, symmetric around DC
    samp_rate: float = 1e6
    header_repetition: int = 2     # copies of the convolutionally coded header
    payload_symbols_per_frame: int = 9700   # analog symbols per frame (the last frame may be shorter)
    backoff_db: float = 20.0       # TX RMS below full scale (JSCC symbols are heavy-tailed: PAPR)
    clip: float = 1.0              # TX magnitude clipping level (full scale = 1.0)
    gap_samples: int = 600         # zeros after each burst
    sync_threshold: float = 0.15   # Schmidl & Cox plateau threshold (0..1)
    timing_backoff: int = 8        # the FFT window starts this many samples inside the cyclic prefix
    max_carrier_offset: int = 4    # integer CFO search range of the channel estimator (carriers, even)

    def validate(self) -> None:
        if not 16 <= self.fft_len <= 65536 or self.fft_len & (self.fft_len - 1):
            raise ConfigError(f"fft_len={self.fft_len}: must be a power of two in 16..65536")
        if not 0 < self.cp_len < self.fft_len:
            raise ConfigError(f"cp_len={self.cp_len}: must be in 1..fft_len-1")
        if not 4 <= self.occupied < self.fft_len // 2 - 1:
            raise ConfigError(f"occupied={self.occupied}: must be in 4..{self.fft_len // 2 - 2} "
                              f"(leave guard carriers at the band edges)")
        if not 2 <= self.pilot_spacing <= self.occupied:
            raise ConfigError(f"pilot_spacing={self.pilot_spacing}: must be in 2..occupied")
        if not (math.isfinite(self.samp_rate) and 0 < self.samp_rate <= 1e9):
            raise ConfigError(f"samp_rate={self.samp_rate}: must be a positive finite number, at most 1e9 S/s")
        if not 1 <= self.header_repetition <= 16:
            raise ConfigError(f"header_repetition={self.header_repetition}: must be in 1..16")
        if not 1 <= self.payload_symbols_per_frame <= 65535:
            raise ConfigError(f"payload_symbols_per_frame={self.payload_symbols_per_frame}: must be in 1..65535")
        if not 0 <= self.backoff_db <= 40:
            raise ConfigError(f"backoff_db={self.backoff_db}: must be in 0..40 dB")
        if not 0 < self.clip <= 1.0:
            raise ConfigError(f"clip={self.clip}: must be in (0, 1]")
        if self.gap_samples > 10_000_000:
            raise ConfigError(f"gap_samples={self.gap_samples}: must be at most 10000000")
        if self.gap_samples < self.fft_len + self.cp_len:
            raise ConfigError(f"gap_samples={self.gap_samples}: must be at least fft_len+cp_len "
                              f"({self.fft_len + self.cp_len}) so the receiver flushes each frame")
        if not 0 <= self.timing_backoff <= self.cp_len // 2:
            raise ConfigError(f"timing_backoff={self.timing_backoff}: must be in 0..cp_len/2")
        if not 0 <= self.max_carrier_offset <= self.fft_len // 4:
            raise ConfigError(f"max_carrier_offset={self.max_carrier_offset}: must be in 0..fft_len/4")
        if self.max_carrier_offset % 2:
            raise ConfigError(f"max_carrier_offset={self.max_carrier_offset}: must be even (Schmidl & Cox "
                              f"resolves the integer CFO in steps of 2 sub-carriers)")
        if not 0 < self.sync_threshold < 1:
            raise ConfigError(f"sync_threshold={self.sync_threshold}: must be in (0, 1)")
        if self.payload_symbols_per_frame < self.n_data:
            raise ConfigError(f"payload_symbols_per_frame={self.payload_symbols_per_frame}: must be at least one "
                              f"OFDM symbol's data carriers ({self.n_data})")

    @classmethod
    def from_dict(cls, d: dict, where: str = "config", path: str = "ofdm.") -> "OfdmConfig":
        """``where``: the file ``d`` was read from; kept as :attr:`source` (not a field: not
        compared, not saved, not kept by ``dataclasses.replace``) so that users of the config can
        point at the file, e.g. about its other sections."""
        cfg = from_mapping(cls, d, where, path)
        object.__setattr__(cfg, "source", str(where))
        return cfg

    @classmethod
    def from_file(cls, path: str) -> "OfdmConfig":
        """The ``ofdm:`` section of a YAML file (a firmware config or an OFDM-only file)."""
        from ..core.configfile import load_yaml

        data = load_yaml(path)
        if "ofdm" not in data:
            raise ConfigError(f"{path}: no 'ofdm' section")
        return cls.from_dict(data["ofdm"], where=str(path))

    def to_dict(self) -> dict:
        return asdict(self)

    # -- layout -----------------------------------------------------------------------------
    @cached_property
    def carriers(self) -> np.ndarray:
        """All used carriers (pilots and data), ascending, DC excluded."""
        return np.array([k for k in range(-self.occupied, self.occupied + 1) if k != 0])

    @cached_property
    def pilot_carriers(self) -> np.ndarray:
        half = self.pilot_spacing // 2
        pos = np.arange(half, self.occupied + 1, self.pilot_spacing)
        return np.sort(np.concatenate([-pos[::-1], pos]))

    @cached_property
    def data_carriers(self) -> np.ndarray:
        return np.setdiff1d(self.carriers, self.pilot_carriers)

    @cached_property
    def pilot_symbols(self) -> np.ndarray:
        """BPSK pilot values, one per pilot carrier (same on every OFDM symbol)."""
        rng = np.random.default_rng(7)
        return (1 - 2 * rng.integers(0, 2, self.pilot_carriers.size)).astype(np.complex64)

    @property
    def n_data(self) -> int:
        return int(self.data_carriers.size)

    def bins(self, carriers: np.ndarray) -> np.ndarray:
        """Positions of ``carriers`` in a shifted FFT vector."""
        return np.asarray(carriers) + self.fft_len // 2

    @cached_property
    def sync_word1(self) -> np.ndarray:
        """Schmidl & Cox symbol: BPSK*sqrt(2) on even carriers only (two equal halves in time)."""
        rng = np.random.default_rng(42)
        v = np.zeros(self.fft_len, np.complex64)
        even = self.carriers[self.carriers % 2 == 0]
        v[self.bins(even)] = np.sqrt(2) * (1 - 2 * rng.integers(0, 2, even.size))
        return v

    @cached_property
    def sync_word2(self) -> np.ndarray:
        """Full BPSK symbol for integer CFO and channel estimation."""
        rng = np.random.default_rng(43)
        v = np.zeros(self.fft_len, np.complex64)
        v[self.bins(self.carriers)] = 1 - 2 * rng.integers(0, 2, self.carriers.size)
        return v

    def flush_samples(self) -> int:
        """Zeros after an image's last frame that push it through the receiver's look-ahead
        (Schmidl & Cox plateau detector, alignment delay, demux)."""
        return 2 * self.sync_plateau_len + 4 * self.symbol_len

    @property
    def sync_plateau_len(self) -> int:
        """Maximum plateau length for GNU Radio's Schmidl & Cox plateau detector."""
        return self.fft_len + self.cp_len

    @property
    def symbol_len(self) -> int:
        return self.fft_len + self.cp_len

    def occupied_bandwidth_hz(self) -> float:
        """Width of the used carriers (-occupied..occupied), Hz."""
        return (2 * self.occupied + 1) * self.samp_rate / self.fft_len

    @property
    def subcarrier_spacing_hz(self) -> float:
        return self.samp_rate / self.fft_len

    def tx_gain(self) -> float:
        """Scale after GNU Radio's (unnormalised) inverse FFT so the RMS is ``-backoff_db`` dBFS.

        With unit-power carriers, the unnormalised IFFT gives per-sample power ``n_used``.
        """
        return 10 ** (-self.backoff_db / 20) / np.sqrt(self.carriers.size)

    def max_payload_ofdm_symbols(self) -> int:
        """OFDM symbols after the header in the longest frame (side information included): what
        the receiver's buffers are sized for."""
        return -(-self.payload_symbols_per_frame // self.n_data)

    def max_frame_symbols(self) -> int:
        """Symbols handed to the carrier allocator for the longest frame (header + payload)."""
        from .header import header_ofdm_symbols

        n_pay = -(-self.payload_symbols_per_frame // self.n_data)
        return (header_ofdm_symbols(self.header_repetition, self.n_data) + n_pay) * self.n_data
