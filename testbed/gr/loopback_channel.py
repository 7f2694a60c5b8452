"""The loopback front-end: a software channel in place of the radio.

delay (timing offset, zeros before the first burst) -> ``channels.channel_model`` (AWGN at the
requested Es/N0 per sub-carrier, CFO, sample-clock offset, multipath taps).

Without sample-clock offset and multipath the same channel is built lighter, as channel_model
would compute it minus its identity stages (resampler at ratio 1, one-tap filter): a rotator
for the CFO and Gaussian noise of the same power (statistically the same channel; not the same
noise samples for a seed). It costs a third of the CPU, which matters
when the PHY runs at radio rates. ``dynamic=True`` always builds channel_model, so that the
sample-clock offset can also be changed while the flowgraph runs (the GRC block does this).
"""
from __future__ import annotations

import numpy as np
from gnuradio import analog, blocks, channels, gr

from ..phy.config import OfdmConfig
from ..phy.impairments import multipath_taps, noise_voltage


class loopback_channel(gr.hier_block2):
    def __init__(self, cfg: OfdmConfig, snr_db: float, cfo_hz: float = 0.0, sco_ppm: float = 0.0,
                 delay_samples: int = 0, multipath: str = "none", seed: int = 0,
                 delay_spread_s: float | None = None, dynamic: bool = False):
        gr.hier_block2.__init__(self, "loopback_channel", gr.io_signature(1, 1, gr.sizeof_gr_complex),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.cfg = cfg
        rng = np.random.default_rng(seed)
        self.taps = multipath_taps(multipath, cfg, rng, delay_spread_s)
        self.noise_voltage = noise_voltage(cfg, snr_db)
        self.delay = blocks.delay(gr.sizeof_gr_complex, int(delay_samples))
        seed = int(seed) % (2 ** 31 - 1) + 1
        self.light = not dynamic and sco_ppm == 0 and self.taps.size == 1 and self.taps[0] == 1
        if self.light:
            self.chan = None
            self.rot = blocks.rotator_cc(2 * np.pi * cfo_hz / cfg.samp_rate)
            # Gaussian noise of the same power from the same kind of source as channel_model
            self.noise = analog.fastnoise_source_c(analog.GR_GAUSSIAN, self.noise_voltage, seed, 8192)
            self.add = blocks.add_cc()
            if delay_samples:
                self.connect(self, self.delay, self.rot, (self.add, 0))
            else:
                self.connect(self, self.rot, (self.add, 0))
            self.connect(self.noise, (self.add, 1))
            self.connect(self.add, self)
            # fewer, longer calls at radio rates; not the noise source, whose pre-generated samples
            # would carry the old SNR that long after set_snr_db
            for b in (self.rot, self.add):
                b.set_min_output_buffer(1 << 16)
            return
        self.chan = channels.channel_model(
            noise_voltage=self.noise_voltage, frequency_offset=cfo_hz / cfg.samp_rate,
            epsilon=1.0 + sco_ppm * 1e-6, taps=self.taps.tolist(), noise_seed=seed, block_tags=False)
        self.connect(self, self.delay, self.chan, self)

    def set_snr_db(self, snr_db: float) -> None:
        """Change the channel SNR while the flowgraph runs (e.g. a simulated fade)."""
        self.noise_voltage = noise_voltage(self.cfg, snr_db)
        if self.light:
            self.noise.set_amplitude(self.noise_voltage)
        else:
            self.chan.set_noise_voltage(self.noise_voltage)

    def set_cfo_hz(self, cfo_hz: float) -> None:
        """Change the carrier frequency offset while the flowgraph runs (GRC runtime callback)."""
        if self.light:
            self.rot.set_phase_inc(2 * np.pi * float(cfo_hz) / self.cfg.samp_rate)
        else:
            self.chan.set_frequency_offset(float(cfo_hz) / self.cfg.samp_rate)

    def set_sco_ppm(self, sco_ppm: float) -> None:
        """Change the sample-clock offset while the flowgraph runs (GRC runtime callback)."""
        if self.light:
            if float(sco_ppm) == 0:
                return
            raise RuntimeError("this loopback channel was built without a resampler (no sample-clock offset, "
                               "no multipath): build it with dynamic=True to change the offset while it runs")
        self.chan.set_timing_offset(1.0 + float(sco_ppm) * 1e-6)
