"""The channel knowledge base's environment: a ``gymnasium.Env`` over the AKB codec and channel.

One step transmits one image tile of ``TILE x TILE`` rate blocks (256 x 256 pixels) over AWGN:

* state (paper Fig. 3, part 3), four planes of ``TILE x TILE``: the entropy map (mean bits per
  location of each rate block), the SNR map, the previous action, and the bandwidth budget
  (target CBR) broadcast as a plane;
* action: one of :data:`PATTERNS` for the tile: how to reshape the rate-preset map around the
  tile's mean entropy (``keep`` it, ``sharpen`` it: +1 level on the blocks above the mean and -1
  below, ``raise_high``: +1 above only, ``lower_low``: -1 below only). The per-block offsets are
  applied to the preset map and the budget is re-imposed (:func:`ratemap.preset_levels`), so a
  policy redistributes symbols and never exceeds the budget. (Per-block offsets, an earlier
  design, left the policy 16 independent choices per reward and it never beat the fixed map.)
* reward: weighted reconstruction quality minus bandwidth cost, both measured against the fixed
  entropy-to-rate mapping on the same image, SNR and noise realisation::

      r = w_q * (PSNR(action) - PSNR(preset)) - w_b * (CBR(action) - CBR(preset)) / target_cbr

  so the fixed mapping scores 0 and a policy scores above 0 exactly when it beats it.

An episode is ``episode_len`` consecutive images; the SNR drifts between them (a random walk),
so the previous action is informative state.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from ...codec.channel import apply_channel
from ...core.crops import CropSampler
from ...core.metrics import psnr_from_mse
from .. import ratemap as rm

TILE = 4                       # rate blocks per tile side (the policy's field of view)
TILE_PIXELS = TILE * rm.BLOCK_LOCATIONS * rm.STRIDE  # 256
PATTERNS = ("keep", "sharpen", "raise_high", "lower_low")
# level offsets of the blocks (above, at or below) the tile's mean entropy, per pattern
PATTERN_OFFSETS = np.array([[0, 0], [1, -1], [1, 0], [0, -1]], np.int64)
N_ACTIONS = len(PATTERNS)
BITS_SCALE = 100.0             # entropy (bits per location) / BITS_SCALE in the observation
CBR_SCALE = 0.0625             # target CBR / CBR_SCALE in the observation
SNR_SCALE = 20.0
CBR_CHOICES = (0.021, 0.036, 0.0625)


def pattern_offsets(block_bits: np.ndarray, action: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Per-block level offsets of pattern ``action`` for one tile; the mean entropy is taken over
    the ``valid`` blocks (all by default; a border tile of an image has fewer)."""
    b = np.asarray(block_bits, np.float64)
    v = np.ones(b.shape, bool) if valid is None else np.asarray(valid, bool)
    hi = b > (b * v).sum() / max(v.sum(), 1)
    up, down = PATTERN_OFFSETS[int(action)]
    return np.where(hi, up, down).astype(np.int64)


def observation(block_bits: np.ndarray, snr_db: float, prev_offsets: np.ndarray, target_cbr: float) -> np.ndarray:
    """The state planes [4, TILE, TILE] (float32) for one tile."""
    return np.stack([
        np.asarray(block_bits, np.float32) / BITS_SCALE,
        np.full((TILE, TILE), snr_db / SNR_SCALE, np.float32),
        np.asarray(prev_offsets, np.float32),
        np.full((TILE, TILE), target_cbr / CBR_SCALE, np.float32),
    ]).astype(np.float32)


class AkbSchedulerEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, model, kb_fn, images: list[np.ndarray], *, snr_range=(0.0, 20.0),
                 cbr_choices=CBR_CHOICES, episode_len: int = 4, snr_walk_db: float = 2.0,
                 w_quality: float = 1.0, w_bandwidth: float = 1.0, seed: int | None = None):
        super().__init__()
        self.model = model.eval()
        self.kb_fn = kb_fn              # x [1,3,H,W] in [0,1] -> KB vector [1, D]
        self.sampler = CropSampler(images, TILE_PIXELS)
        self.snr_range = snr_range
        self.cbr_choices = tuple(cbr_choices)
        self.episode_len = episode_len
        self.snr_walk_db = snr_walk_db
        self.w_q, self.w_b = w_quality, w_bandwidth
        self.observation_space = spaces.Box(-2.0, 1000.0, shape=(4, TILE, TILE), dtype=np.float32)
        self.action_space = spaces.Discrete(N_ACTIONS)
        self._rng = np.random.default_rng(seed)
        self._t = 0
        self._snr = 10.0
        self._cbr = self.cbr_choices[0]
        self._prev = np.zeros((TILE, TILE), np.int64)
        self._cur = None
        self.last_info: dict = {}

    # -- internals -----------------------------------------------------------------------------
    @torch.no_grad()
    def _load_image(self):
        x = self.sampler.sample(self._rng, 1)
        snr = torch.tensor([self._snr])
        kb = self.kb_fn(x)
        feats, bits, _ = self.model.analyse(x, snr, torch.tensor([self._cbr * 768.0]), kb)
        self._cur = (x, kb, feats, rm.block_entropy(bits[0].numpy()))

    @torch.no_grad()
    def _run(self, levels: np.ndarray, noise_seed: int) -> float:
        x, kb, feats, _ = self._cur
        gen = torch.Generator().manual_seed(noise_seed)
        y = self.model.transmit(feats, torch.from_numpy(levels)[None], torch.tensor([self._snr]), kb,
                                lambda z, s: apply_channel(z, s, "awgn", gen))
        y = torch.round(y.clamp(0, 1) * 255) / 255
        return psnr_from_mse(torch.mean((y - x) ** 2).item())

    def _obs(self) -> np.ndarray:
        return observation(self._cur[3], self._snr, self._prev, self._cbr)

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        options = options or {}
        self._t = 0
        self._snr = float(options.get("snr_db", self._rng.uniform(*self.snr_range)))
        self._cbr = float(options.get("target_cbr", self._rng.choice(self.cbr_choices)))
        self._fixed_snr = "snr_db" in options
        self._prev = np.zeros((TILE, TILE), np.int64)
        self._load_image()
        return self._obs(), {"snr_db": self._snr, "target_cbr": self._cbr}

    def step(self, action):
        bits = self._cur[3]
        offsets = pattern_offsets(bits, int(np.asarray(action).reshape(-1)[0]))
        preset = rm.preset_levels(bits, self._cbr, TILE_PIXELS, TILE_PIXELS)
        chosen = rm.preset_levels(bits, self._cbr, TILE_PIXELS, TILE_PIXELS, offsets)
        noise_seed = int(self._rng.integers(2 ** 31))
        p_fixed = self._run(preset, noise_seed)
        p_act = p_fixed if np.array_equal(preset, chosen) else self._run(chosen, noise_seed)
        c_fixed = rm.cbr_of(preset, TILE_PIXELS, TILE_PIXELS)
        c_act = rm.cbr_of(chosen, TILE_PIXELS, TILE_PIXELS)
        reward = self.w_q * (p_act - p_fixed) - self.w_b * (c_act - c_fixed) / self._cbr
        self.last_info = {"snr_db": self._snr, "target_cbr": self._cbr, "psnr_db": p_act,
                          "psnr_fixed_db": p_fixed, "cbr": c_act, "cbr_fixed": c_fixed,
                          "reward_fixed": 0.0, "levels": chosen}
        self._prev = offsets
        self._t += 1
        terminated = self._t >= self.episode_len
        if not terminated:
            if not self._fixed_snr:
                lo, hi = self.snr_range
                self._snr = float(np.clip(self._snr + self._rng.normal(0, self.snr_walk_db), lo, hi))
            self._load_image()
        return self._obs(), float(reward), terminated, False, dict(self.last_info)
