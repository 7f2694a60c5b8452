"""Small random-weight AKB codecs for the tests (fast to build, export and run)."""
from __future__ import annotations

import numpy as np
import torch

from . import smooth_image, write_png


def tiny_akb(seed: int = 0):
    """(model, embedder, kb) with the real architecture at a small width."""
    from testbed.akb.model import from_v1
    from testbed.akb.source_kb.embedder import ImageEmbedder
    from testbed.akb.source_kb.kb import KnowledgeBase, kmeans
    from testbed.codec.model import JSCC, CodecConfig

    torch.manual_seed(seed)
    v1 = JSCC(CodecConfig(widths=(8, 8, 12, 16), max_symbols=48))
    with torch.no_grad():
        v1.encoder.linear.weight.normal_(0, 0.02)
        v1.decoder.linear.weight.normal_(0, 0.02)
    m = from_v1(v1)
    with torch.no_grad():
        m.encoder.out.weight.normal_(0, 0.05)
        m.encoder.linear.weight.normal_(0, 0.02)
        m.decoder.convs[-1].weight.normal_(0, 0.05)
        for a in m.encoder.atts:
            a.fc1.weight.normal_(0, 0.1)
    imgs = [smooth_image(96, 128, seed=i) for i in range(12)]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255
    side = torch.zeros(len(imgs), 2 + m.cfg.kb_dim)
    m.entropy.calibrate(m.encoder.latent(m.encoder.analysis(x, side)).detach())
    emb = ImageEmbedder.from_v1(v1, dim=m.cfg.kb_dim)
    thumbs = torch.from_numpy(np.stack([smooth_image(48, 64, seed=100 + i) for i in range(24)]))
    with torch.no_grad():
        emb.fit_projection(emb.pooled(thumbs))
        vecs = emb(thumbs).numpy()
    kb = KnowledgeBase(kmeans(vecs, 4, np.random.default_rng(seed)), "image-embedder", {"test": True})
    return m.eval(), emb.eval(), kb


def tiny_policy(model, emb, kb, images, timesteps: int = 0):
    """An SB3 PPO on the scheduler environment (trained for ``timesteps``)."""
    from stable_baselines3 import PPO

    from testbed.akb.channel_kb.env import AkbSchedulerEnv
    from testbed.akb.train import _kb_vectors

    env = AkbSchedulerEnv(model, lambda x: _kb_vectors(emb, kb, x), images, seed=0, episode_len=2)
    ppo = PPO("MlpPolicy", env, n_steps=16, batch_size=8, n_epochs=1, seed=0, device="cpu",
              policy_kwargs={"net_arch": {"pi": [16], "vf": [16]}})
    if timesteps:
        ppo.learn(total_timesteps=timesteps)
    return ppo, env


def tiny_v1_checkpoint(path):
    """A random-weight codec v1 checkpoint (the AKB trainer's --init-from)."""
    from testbed.codec.model import JSCC, CodecConfig

    torch.manual_seed(0)
    v1 = JSCC(CodecConfig(widths=(8, 8, 12, 16), max_symbols=48))
    torch.save({"model": v1.state_dict(), "ema": None, "codec_config": v1.cfg.to_dict()}, path)
    return path


def tiny_training_data(root, n: int = 4):
    """``root/data`` (n small images) and ``root/val`` (one image) for a few training steps."""
    data, val = root / "data", root / "val"
    data.mkdir()
    val.mkdir()
    for i in range(n):
        write_png(data / f"{i}.png", smooth_image(96, 112, seed=i))
    write_png(val / "v.png", smooth_image(80, 96, seed=9))
    return data, val
