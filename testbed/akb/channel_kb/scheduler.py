"""Channel KB: PPO (Stable-Baselines3) over :class:`~testbed.akb.channel_kb.env.AkbSchedulerEnv`.

``testbed train scheduler --akb CKPT --data DIR``: PPO with a progress bar, periodic checkpoints
(SB3 zip files, written atomically), ``--resume`` and a CSV training log; at the end the policy is
evaluated against the fixed entropy-to-rate mapping per SNR and exported to ONNX.

``--resume`` continues from the last checkpoint: policy, optimiser and timestep count come from
the SB3 zip (written after PPO's update on the rollout it counts); the training options (``--lr``,
``--n-steps``, ``--batch-size``, ``--n-epochs``, ``--ent-coef``, ``--gamma``) from the command line,
and a ``--hidden`` other than the checkpoint's network is refused. The rollout in progress is not checkpointed, so the resumed run starts a new episode,
and the environment and the process RNGs (action sampling, minibatch order) are re-seeded with
:func:`resume_seed` (a seed derived from ``--seed`` and the checkpoint's timestep count): a
fresh, reproducible stream instead of a replay of the run's first episodes (SB3's loader would
re-seed everything with ``--seed``). A resumed run is thus reproducible but not bit-identical to
an uninterrupted one. Log rows after the checkpoint's timestep are dropped before the resumed run
writes them again. A new run refuses a folder that holds a checkpoint unless ``--force``.

The exported policy graph works on a whole image: it cuts the block grid into the ``TILE x TILE``
tiles the policy was trained on (padding the border), builds the state planes, runs the actor,
takes the arg-max pattern of every tile (deterministic), turns it into per-block offsets
(:func:`testbed.akb.channel_kb.env.pattern_offsets`, mean entropy over the tile's valid blocks) and
stitches them back::

    inputs:  block_bits float32 [hb, wb]   entropy map: mean bits per location of each rate block
             snr_db     float32 [1]
             prev_offsets int64 [hb, wb]   the previous action (zeros for the first image)
             target_cbr float32 [1]
    output:  offsets    int64 [hb, wb]     rate-level offsets in {-1, 0, +1}
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from ...core import trainargs
from ...core.runlog import CsvLog, write_json_atomic
from ...core.trainer import prepare_logs, save_atomic, start_run
from . import env as envmod
from .schedargs import SCHED_OUT, SchedulerTrainConfig, add_arguments, config_from_args  # noqa: F401

log = logging.getLogger(__name__)

POLICY_FILE = "policy.onnx"
EVAL_SNRS = (0.0, 5.0, 10.0, 15.0, 20.0)


class PolicyGraph(nn.Module):
    """Deterministic whole-image policy (see the module docstring) around an SB3 ActorCriticPolicy."""

    def __init__(self, policy):
        super().__init__()
        self.extractor = policy.mlp_extractor.policy_net
        self.action_net = policy.action_net

    def forward(self, block_bits, snr_db, prev_offsets, target_cbr):
        t = envmod.TILE
        hb, wb = block_bits.shape[0], block_bits.shape[1]
        ph = (t - hb % t) % t
        pw = (t - wb % t) % t
        bits = F.pad(block_bits[None, None], (0, pw, 0, ph), mode="replicate")[0, 0]
        prev = F.pad(prev_offsets.to(torch.float32)[None, None], (0, pw, 0, ph))[0, 0]
        nh, nw = (hb + ph) // t, (wb + pw) // t

        def tiles(a):  # [nh*t, nw*t] -> [nh*nw, t, t]
            return a.reshape(nh, t, nw, t).permute(0, 2, 1, 3).reshape(nh * nw, t, t)

        valid = F.pad(torch.ones_like(block_bits)[None, None], (0, pw, 0, ph))[0, 0]
        bt, pt, vt = tiles(bits), tiles(prev), tiles(valid)
        ones = torch.ones_like(bt)
        obs = torch.stack([bt / envmod.BITS_SCALE, ones * (snr_db[0] / envmod.SNR_SCALE), pt,
                           ones * (target_cbr[0] / envmod.CBR_SCALE)], dim=1)
        logits = self.action_net(self.extractor(obs.reshape(nh * nw, 4 * t * t)))
        arm = logits.argmax(dim=-1)                                           # [tiles]
        mean = (bt * vt).sum(dim=(1, 2)) / vt.sum(dim=(1, 2))
        hi = bt > mean[:, None, None]
        table = torch.from_numpy(envmod.PATTERN_OFFSETS)
        act = torch.where(hi, table[arm, 0][:, None, None], table[arm, 1][:, None, None])
        act = act.reshape(nh, nw, t, t).permute(0, 2, 1, 3).reshape(nh * t, nw * t)
        return act[:hb, :wb]


def export_policy(policy, path: str | Path, meta: dict) -> None:
    from ...codec.export import _export_one

    g = PolicyGraph(policy).eval()
    args = (torch.rand(3, 5) * 200, torch.tensor([10.0]), torch.zeros(3, 5, dtype=torch.int64), torch.tensor([0.036]))
    with torch.no_grad():
        _export_one(g, args, Path(path), ["block_bits", "snr_db", "prev_offsets", "target_cbr"], ["offsets"],
                    {"block_bits": {0: "hb", 1: "wb"}, "prev_offsets": {0: "hb", 1: "wb"},
                     "offsets": {0: "hb", 1: "wb"}}, meta)


class OnnxPolicy:
    """The exported channel-KB policy run with onnxruntime."""

    def __init__(self, path: str | Path):
        import onnxruntime as ort

        from ...core.ortsession import session_options

        # a small graph run once per image, often inside a flowgraph: no spinning pool
        opts = session_options(spinning=False)
        self.path = Path(path)
        self.sess = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, block_bits: np.ndarray, snr_db: float, prev_offsets: np.ndarray | None,
                 target_cbr: float) -> np.ndarray:
        bb = np.ascontiguousarray(block_bits, dtype=np.float32)
        prev = np.zeros(bb.shape, np.int64) if prev_offsets is None else np.asarray(prev_offsets, np.int64)
        return self.sess.run(None, {"block_bits": bb, "snr_db": np.array([snr_db], np.float32),
                                    "prev_offsets": prev, "target_cbr": np.array([target_cbr], np.float32)})[0]


def make_env(akb_ckpt: str | Path, images: list[np.ndarray], seed: int, **kw) -> envmod.AkbSchedulerEnv:
    from ..train import _kb_vectors, load_akb

    try:
        model, emb, kb = load_akb(akb_ckpt)
    except FileNotFoundError:
        raise
    except Exception as e:  # e.g. a codec v1 checkpoint, or not a checkpoint at all
        raise ValueError(f"--akb {akb_ckpt}: not a checkpoint of `testbed train akb` "
                         f"({type(e).__name__}: {e})") from None
    return envmod.AkbSchedulerEnv(model, lambda x: _kb_vectors(emb, kb, x), images, seed=seed, **kw)


def evaluate_policy(env: envmod.AkbSchedulerEnv, act_fn, snrs=EVAL_SNRS, episodes: int = 16,
                    cbrs=envmod.CBR_CHOICES, seed: int = 1000) -> list[dict]:
    """Mean reward and PSNR of ``act_fn(obs) -> action`` vs the fixed mapping (reward 0) per SNR."""
    rows = []
    for snr in snrs:
        rewards, gains, psnr = [], [], []
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep, options={"snr_db": snr, "target_cbr": cbrs[ep % len(cbrs)]})
            done = False
            while not done:
                obs, r, done, _, info = env.step(act_fn(obs))
                rewards.append(r)
                gains.append(info["psnr_db"] - info["psnr_fixed_db"])
                psnr.append(info["psnr_db"])
        rows.append({"snr_db": snr, "reward": float(np.mean(rewards)), "reward_fixed": 0.0,
                     "psnr_gain_db": float(np.mean(gains)), "psnr_db": float(np.mean(psnr)), "steps": len(rewards)})
    return rows


def resume_seed(seed: int, timesteps: int) -> int:
    """The seed of a run resumed at ``timesteps``: deterministic, and a stream independent of
    ``seed``'s own and of those of resumptions at other timesteps."""
    return int(np.random.SeedSequence([int(seed), int(timesteps)]).generate_state(1)[0])


def _atomic_save(ppo, path: Path) -> None:
    save_atomic(path, ppo.save)


def train_scheduler(cfg: SchedulerTrainConfig, resume: bool = False) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    from ...core import images as imgio

    out, ckpt, resuming = start_run(cfg, "ppo_checkpoint.zip", resume,
                                    results=("ppo_final.zip", POLICY_FILE, "final_metrics.json"))
    arrays = [imgio.load_rgb(f) for f in imgio.list_images(cfg.data)]
    env_kw = dict(episode_len=cfg.episode_len, w_quality=cfg.w_quality, w_bandwidth=cfg.w_bandwidth)
    env = make_env(cfg.akb, arrays, cfg.seed, **env_kw)
    if resuming:
        # the training options of this command line apply to the rest of the run (SB3's loader would
        # otherwise keep the checkpoint's and silently ignore them); the network comes from the checkpoint
        ppo = PPO.load(str(ckpt), env=env, device="cpu", n_steps=cfg.n_steps, batch_size=cfg.batch_size,
                       n_epochs=cfg.n_epochs, learning_rate=cfg.lr, ent_coef=cfg.ent_coef, gamma=cfg.gamma)
        arch = (ppo.policy_kwargs or {}).get("net_arch")
        if arch != {"pi": [cfg.hidden, cfg.hidden], "vf": [cfg.hidden, cfg.hidden]}:
            raise ValueError(f"--hidden {cfg.hidden}: {ckpt} holds a policy with layers {arch}; "
                             "a resumed run keeps its network")
        # the loader re-seeded the env and the process RNGs with --seed: the first episodes again
        seed = resume_seed(cfg.seed, ppo.num_timesteps)
        ppo.set_random_seed(seed)
        log.info("resumed PPO from %s at %d timesteps (re-seeded with %d)", ckpt, ppo.num_timesteps, seed)
    else:
        ppo = PPO("MlpPolicy", env, n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
                  learning_rate=cfg.lr, ent_coef=cfg.ent_coef, gamma=cfg.gamma, seed=cfg.seed, device="cpu",
                  policy_kwargs={"net_arch": {"pi": [cfg.hidden, cfg.hidden], "vf": [cfg.hidden, cfg.hidden]}})
    # the rollouts after the checkpoint run again and log again
    prepare_logs(out, cfg, ["train_log.csv"], "timesteps", ppo.num_timesteps, resuming)
    tlog = CsvLog(out / "train_log.csv", ["timesteps", "mean_reward", "mean_psnr_gain_db", "elapsed_s"],
                  resume=resuming)

    class _Cb(BaseCallback):
        def __init__(self):
            super().__init__()
            self.bar = tqdm(total=cfg.timesteps, initial=ppo.num_timesteps, desc="train scheduler", unit="step",
                            dynamic_ncols=True)
            self.rewards, self.gains, self.last_ckpt = [], [], ppo.num_timesteps
            self.t0 = trainargs.clock_start(out / "train_log.csv", resuming)

        def _on_step(self) -> bool:
            self.bar.update(1)
            for r, info in zip(self.locals["rewards"], self.locals["infos"]):
                self.rewards.append(float(r))
                self.gains.append(info["psnr_db"] - info["psnr_fixed_db"])
            return True

        def _on_rollout_start(self) -> None:
            # the checkpoint is written here, after PPO's update on the rollout just collected (SB3
            # calls on_rollout_end before that update): a checkpoint at T timesteps holds the policy
            # trained on all T, so a resumed run does not lose the last rollout's update
            if self.num_timesteps - self.last_ckpt >= cfg.ckpt_every:
                _atomic_save(ppo, ckpt)
                self.last_ckpt = self.num_timesteps

        def _on_rollout_end(self) -> None:
            if self.rewards:
                tlog.append({"timesteps": self.num_timesteps, "mean_reward": float(np.mean(self.rewards)),
                             "mean_psnr_gain_db": float(np.mean(self.gains)),
                             "elapsed_s": round(time.time() - self.t0, 1)})
                self.bar.set_postfix(reward=f"{np.mean(self.rewards):+.3f}")
                self.rewards, self.gains = [], []

    cb = _Cb()
    try:
        remaining = cfg.timesteps - ppo.num_timesteps
        if remaining > 0:
            ppo.learn(total_timesteps=remaining, callback=cb, reset_num_timesteps=not resuming)
        _atomic_save(ppo, ckpt)
    finally:
        cb.bar.close()
        tlog.close()
    _atomic_save(ppo, out / "ppo_final.zip")

    val_arrays = [imgio.load_rgb(f) for f in imgio.list_images(cfg.val)] if cfg.val else arrays
    eval_env = make_env(cfg.akb, val_arrays, cfg.seed + 1, **env_kw)
    rows = evaluate_policy(eval_env, lambda o: ppo.predict(o, deterministic=True)[0], episodes=cfg.eval_episodes)
    for r in rows:
        log.info("SNR %4.1f dB: reward %+.3f (fixed mapping 0), PSNR gain %+.3f dB", r["snr_db"], r["reward"],
                 r["psnr_gain_db"])
    export_policy(ppo.policy, out / POLICY_FILE, {
        "testbed.graph": "channel-kb-policy", "testbed.akb_checkpoint": os.path.basename(str(cfg.akb)),
        "testbed.tile_blocks": envmod.TILE, "testbed.timesteps": ppo.num_timesteps,
        "testbed.reward": f"w_q*dPSNR - w_b*dCBR/target, w_q={cfg.w_quality}, w_b={cfg.w_bandwidth}",
    })
    final = {"timesteps": int(ppo.num_timesteps), "evaluation": rows, "policy": str(out / POLICY_FILE)}
    write_json_atomic(out / "final_metrics.json", final)
    return final
