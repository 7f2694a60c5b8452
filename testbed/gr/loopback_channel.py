"""The loopback front-end: a software channel in place of the radio.

delay (timing offset, zeros before the first burst) -> ``channels.channel_model`` (AWGN at the
requested Es/N0 per sub-carrier, CFO, sample-clock offset, multipath taps).
"""
from __future__ import annotations

import numpy as np
from gnuradio import blocks, channels, gr

from ..phy.config import OfdmConfig
from ..phy.impairments import multipath_taps, noise_voltage


class loopback_channel(gr.hier_block2):
    def __init__(self, cfg: OfdmConfig, snr_db: float, cfo_hz: float = 0.0, sco_ppm: float = 0.0,
                 delay_samples: int = 0, multipath: str = "none", seed: int = 0,
                 delay_spread_s: float | None = None):
        gr.hier_block2.__init__(self, "loopback_channel", gr.io_signature(1, 1, gr.sizeof_gr_complex),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.cfg = cfg
        rng = np.random.default_rng(seed)
        self.taps = multipath_taps(multipath, cfg, rng, delay_spread_s)
        self.noise_voltage = noise_voltage(cfg, snr_db)
        self.delay = blocks.delay(gr.sizeof_gr_complex, int(delay_samples))
        self.chan = channels.channel_model(
            noise_voltage=self.noise_voltage, frequency_offset=cfo_hz / cfg.samp_rate,
            epsilon=1.0 + sco_ppm * 1e-6, taps=self.taps.tolist(), noise_seed=int(seed) % (2 ** 31 - 1) + 1,
            block_tags=False)
        self.connect(self, self.delay, self.chan, self)

    def set_snr_db(self, snr_db: float) -> None:
        """Change the channel SNR while the flowgraph runs (e.g. a simulated fade)."""
        self.noise_voltage = noise_voltage(self.cfg, snr_db)
        self.chan.set_noise_voltage(self.noise_voltage)

    def set_cfo_hz(self, cfo_hz: float) -> None:
        """Change the carrier frequency offset while the flowgraph runs (GRC runtime callback)."""
        self.chan.set_frequency_offset(float(cfo_hz) / self.cfg.samp_rate)

    def set_sco_ppm(self, sco_ppm: float) -> None:
        """Change the sample-clock offset while the flowgraph runs (GRC runtime callback)."""
        self.chan.set_timing_offset(1.0 + float(sco_ppm) * 1e-6)
