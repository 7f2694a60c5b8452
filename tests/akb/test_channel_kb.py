"""Channel KB: gymnasium environment, PPO training, policy export; `testbed train akb` smoke."""
import json

import numpy as np
import pytest
import torch

from tests.helpers.akb import tiny_akb, tiny_policy, tiny_training_data, tiny_v1_checkpoint
from tests.helpers import run_cli, smooth_image, write_png


@pytest.fixture(scope="module")
def akb():
    return tiny_akb()


@pytest.fixture(scope="module")
def tiles():
    return [smooth_image(300, 280, seed=s) for s in range(4)]


def test_env_passes_gymnasium_checker(akb, tiles):
    from gymnasium.utils.env_checker import check_env

    from testbed.akb.channel_kb.env import AkbSchedulerEnv
    from testbed.akb.train import _kb_vectors

    model, emb, kb = akb
    env = AkbSchedulerEnv(model, lambda x: _kb_vectors(emb, kb, x), tiles, seed=0, episode_len=3)
    check_env(env, skip_render_check=True)


def test_env_reward_is_relative_to_the_fixed_mapping(akb, tiles):
    from testbed.akb.channel_kb import env as envmod

    model, emb, kb = akb
    from testbed.akb.train import _kb_vectors

    env = envmod.AkbSchedulerEnv(model, lambda x: _kb_vectors(emb, kb, x), tiles, seed=0, episode_len=2)
    obs, info = env.reset(seed=3, options={"snr_db": 5.0, "target_cbr": 0.036})
    assert obs.shape == (4, envmod.TILE, envmod.TILE) and obs.dtype == np.float32
    assert np.allclose(obs[1], 5.0 / envmod.SNR_SCALE) and np.all(obs[2] == 0)
    assert envmod.PATTERNS[0] == "keep"
    obs, r, term, trunc, info = env.step(0)             # keep: the fixed mapping itself
    assert r == 0.0 and info["psnr_db"] == info["psnr_fixed_db"] and not term
    bits1 = obs[0] * envmod.BITS_SCALE
    obs, r, term, trunc, info = env.step(1)             # sharpen: symbols move to the high-entropy blocks
    assert term and info["cbr"] <= 0.036 + 1e-12
    assert r == pytest.approx(info["psnr_db"] - info["psnr_fixed_db"] - (info["cbr"] - info["cbr_fixed"]) / 0.036)
    want = envmod.pattern_offsets(bits1, 1)
    assert np.array_equal(obs[2], want)                 # previous action (per-block offsets) in the state
    assert set(np.unique(want)) == {-1, 1} and np.array_equal(want == 1, bits1 > bits1.mean())


@pytest.mark.slow
def test_ppo_smoke_and_policy_onnx_matches_sb3(akb, tiles, tmp_path):
    from testbed.akb.channel_kb import env as envmod
    from testbed.akb.channel_kb.scheduler import OnnxPolicy, evaluate_policy, export_policy

    model, emb, kb = akb
    ppo, env = tiny_policy(model, emb, kb, tiles, timesteps=32)
    assert ppo.num_timesteps >= 32
    export_policy(ppo.policy, tmp_path / "policy.onnx", {"testbed.graph": "channel-kb-policy"})
    pol = OnnxPolicy(tmp_path / "policy.onnx")
    rng = np.random.default_rng(0)
    t = envmod.TILE
    for snr, cbr in ((0.0, 0.021), (20.0, 0.0625)):
        bits = rng.gamma(2, 50, (2 * t, 3 * t - 1)).astype(np.float32)   # 2x3 tiles, the last one partial
        prev = rng.integers(-1, 2, bits.shape)
        got = pol(bits, snr, prev, cbr)
        assert got.shape == bits.shape and set(np.unique(got)) <= {-1, 0, 1}
        pb = np.pad(bits, ((0, 0), (0, 1)), mode="edge")
        pp = np.pad(prev, ((0, 0), (0, 1)))
        valid = np.pad(np.ones(bits.shape, bool), ((0, 0), (0, 1)))
        for i in range(2):
            for j in range(3):
                sl = (slice(i * t, (i + 1) * t), slice(j * t, (j + 1) * t))
                obs = envmod.observation(pb[sl], snr, pp[sl], cbr)
                arm = int(ppo.predict(obs, deterministic=True)[0])
                want = envmod.pattern_offsets(pb[sl], arm, valid[sl])
                assert np.array_equal(got[sl][:, : min(t, bits.shape[1] - j * t)],
                                      want[:, : min(t, bits.shape[1] - j * t)])
    rows = evaluate_policy(env, lambda o: ppo.predict(o, deterministic=True)[0], snrs=(0.0, 20.0), episodes=1)
    assert [r["snr_db"] for r in rows] == [0.0, 20.0] and all(np.isfinite(r["reward"]) for r in rows)


@pytest.mark.slow
def test_train_akb_then_scheduler_then_export_cli(tmp_path):
    data, val = tiny_training_data(tmp_path, n=6)
    tiny_v1_checkpoint(tmp_path / "v1.pt")
    run = tmp_path / "akb"
    common = ["train", "akb", "--data", data, "--val", val, "--init-from", tmp_path / "v1.pt", "--crop", "64",
              "--batch", "1", "--entropy-steps", "2", "--kb-crops", "40", "--kb-entries", "4", "--val-every", "2",
              "--val-images", "1", "--ckpt-every", "1", "--threads", "1", "--out", run, "--json"]
    r = json.loads(run_cli(*common, "--steps", "2").stdout)
    assert r["step"] == 4
    r = json.loads(run_cli(*common, "--steps", "4", "--resume").stdout)   # continues at step 4
    assert r["step"] == 6
    log = (run / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("step,phase") and [ln.split(",")[0] for ln in log[1:]] == [str(i) for i in range(1, 7)]
    assert (run / "best.pt").exists()
    sched = tmp_path / "sched"
    s = json.loads(run_cli("train", "scheduler", "--akb", run / "checkpoint.pt", "--data", data, "--timesteps", "16",
                           "--n-steps", "8", "--batch-size", "8", "--n-epochs", "1", "--eval-episodes", "1",
                           "--episode-len", "2", "--threads", "1", "--out", sched, "--json").stdout)
    assert s["timesteps"] >= 16 and len(s["evaluation"]) == 5
    assert (sched / "policy.onnx").exists() and (sched / "train_log.csv").exists()
    out = tmp_path / "model"
    e = json.loads(run_cli("export-akb", run / "best.pt", "--policy", sched / "policy.onnx", "--scheduler-run", sched,
                           "--out", out, "--json").stdout)
    assert e["onnx_vs_torch"]["image_max_abs_err"] <= 1
    from testbed.zoo import load_card

    card = load_card(out / "model_card.yaml")
    akb_stage, sched_stage = card.training["lineage"][-2:]   # after the stage of v1.pt (--init-from)
    assert akb_stage["command"].startswith("testbed train akb") and akb_stage["run"] == str(run)
    assert sched_stage["command"].startswith("testbed train scheduler") and sched_stage["steps"] == s["timesteps"]


# --- `testbed train scheduler`: resume, logs, refusing to overwrite a run -----------------------------------------

class _Killed(Exception):
    """Stands in for the training process being killed."""


def _akb_checkpoint(akb, path):
    model, emb, kb = akb
    torch.save({"akb_config": model.cfg.to_dict(), "model": model.state_dict(), "ema": None,
                "embedder": emb.state_dict(), "kb_vectors": kb.vectors, "kb_meta": kb.meta}, path)
    return path


@pytest.fixture()
def sched_setup(akb, tiles, tmp_path, monkeypatch):
    """(config factory, recorded episodes) with the final evaluation and export stubbed out."""
    import testbed.akb.channel_kb.env as envmod
    import testbed.akb.channel_kb.scheduler as sc

    data = tmp_path / "data"
    data.mkdir()
    for i, t in enumerate(tiles):
        write_png(data / f"{i}.png", t)
    ck = _akb_checkpoint(akb, tmp_path / "akb.pt")
    episodes = []
    real_reset = envmod.AkbSchedulerEnv.reset

    def reset(self, *, seed=None, options=None):
        r = real_reset(self, seed=seed, options=options)
        episodes.append((self._snr, self._cbr))
        return r

    monkeypatch.setattr(envmod.AkbSchedulerEnv, "reset", reset)
    monkeypatch.setattr(sc, "evaluate_policy", lambda *a, **k: [])
    monkeypatch.setattr(sc, "export_policy", lambda *a, **k: None)

    def cfg(out, **kw):
        base = dict(akb=str(ck), data=str(data), out=str(out), timesteps=32, n_steps=8, batch_size=8, n_epochs=1,
                    ckpt_every=16, eval_episodes=1, episode_len=2, hidden=16, threads=1)
        return sc.SchedulerTrainConfig(**{**base, **kw})

    return cfg, episodes


@pytest.mark.slow
def test_scheduler_resume_neither_replays_episodes_nor_logs_twice(sched_setup, tmp_path):
    """Killed after the rollout ending at timestep 24 (last checkpoint: 16), then resumed: the log
    has each rollout once, and the resumed run does not replay the run's first episodes (it is
    re-seeded from --seed and the checkpoint's timesteps: reproducible)."""
    import shutil

    import testbed.akb.channel_kb.scheduler as sc
    from tests.helpers import shift_logged_elapsed
    from testbed.core.runlog import CsvLog, read_csv_rows

    cfg, episodes = sched_setup

    class KilledLog(CsvLog):
        def append(self, row):
            super().append(row)
            if row.get("timesteps") == 24:
                raise _Killed

    run = tmp_path / "run"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(sc, "CsvLog", KilledLog)
        with pytest.raises(_Killed):
            sc.train_scheduler(cfg(run))
    first = episodes[:]
    shutil.copytree(run, tmp_path / "copy")
    # the resumed run's elapsed_s counts on from the logged training time (made long here, so
    # that a restart at 0 would show)
    log_path = run / "train_log.csv"
    shift_logged_elapsed(log_path, 1000.0)
    episodes.clear()
    sc.train_scheduler(cfg(run), resume=True)
    resumed = episodes[:]
    logged = read_csv_rows(log_path)
    assert [int(r["timesteps"]) for r in logged] == [8, 16, 24, 32]
    elapsed = [float(r["elapsed_s"]) for r in logged]
    assert elapsed == sorted(elapsed) and elapsed[2] >= 1000.0, elapsed
    n = min(len(first), len(resumed), 4)
    assert n >= 3 and resumed[:n] != first[:n]
    episodes.clear()
    sc.train_scheduler(cfg(tmp_path / "copy"), resume=True)
    assert episodes == resumed


def test_scheduler_new_run_refuses_a_folder_holding_a_run_unless_forced(sched_setup, tmp_path):
    import testbed.akb.channel_kb.scheduler as sc
    from testbed.core.runlog import read_csv_rows
    from testbed.core.trainargs import RunExistsError

    cfg, _ = sched_setup
    out = tmp_path / "run"
    out.mkdir()
    old = {"ppo_checkpoint.zip": b"old checkpoint", "policy.onnx": b"old policy", "train_log.csv": b"timesteps\n8\n"}
    for n, data in old.items():
        (out / n).write_bytes(data)
    with pytest.raises(RunExistsError) as e:
        sc.train_scheduler(cfg(out))
    assert str(out) in str(e.value) and "--resume" in str(e.value) and "--force" in str(e.value)
    assert {n: (out / n).read_bytes() for n in old} == old
    sc.train_scheduler(cfg(out, timesteps=8, force=True))
    assert not (out / "policy.onnx").exists()          # the old run's policy is not left behind
    assert [r["timesteps"] for r in read_csv_rows(out / "train_log.csv")] == ["8"]
    assert (out / "ppo_checkpoint.zip").read_bytes() != old["ppo_checkpoint.zip"]


def test_scheduler_checkpoint_holds_the_update_of_its_last_rollout(sched_setup, tmp_path, monkeypatch):
    """The checkpoint at T timesteps holds the policy after PPO's update on the rollout ending at T
    (it used to be written before that update: a resumed run lost one update per resume)."""
    from stable_baselines3 import PPO

    import testbed.akb.channel_kb.scheduler as sc

    cfg, _ = sched_setup

    def snap(ppo):
        return {k: v.detach().clone() for k, v in ppo.policy.state_dict().items()}

    saved, trained = [], []
    real_save, real_train = sc._atomic_save, PPO.train

    def save(ppo, path):
        if path.name == "ppo_checkpoint.zip":
            saved.append((ppo.num_timesteps, snap(ppo)))
        real_save(ppo, path)

    def train(self):
        real_train(self)
        trained.append((self.num_timesteps, snap(self)))

    monkeypatch.setattr(sc, "_atomic_save", save)
    monkeypatch.setattr(PPO, "train", train)
    sc.train_scheduler(cfg(tmp_path / "run", timesteps=24, ckpt_every=8))
    assert [t for t, _ in trained] == [8, 16, 24]
    assert [t for t, _ in saved][:2] == [8, 16]
    for (ts, s), (tt, t) in zip(saved[:2], trained[:2]):
        assert ts == tt and all(torch.equal(s[k], t[k]) for k in s), ts


def test_scheduler_resume_applies_the_command_lines_training_options(sched_setup, tmp_path, monkeypatch):
    """--lr, --n-epochs, ... given to a resumed run are used (SB3's loader kept the checkpoint's and
    ignored them); a different --hidden (the network) is refused, naming the option."""
    import testbed.akb.channel_kb.scheduler as sc

    cfg, _ = sched_setup
    run = tmp_path / "run"
    sc.train_scheduler(cfg(run, timesteps=8))
    seen = []
    real_save = sc._atomic_save
    monkeypatch.setattr(sc, "_atomic_save", lambda ppo, path: (seen.append(ppo), real_save(ppo, path)))
    sc.train_scheduler(cfg(run, timesteps=16, lr=1e-5, n_epochs=2, gamma=0.5), resume=True)
    ppo = seen[-1]
    assert ppo.num_timesteps == 16
    assert (ppo.learning_rate, ppo.n_epochs, ppo.gamma) == (1e-5, 2, 0.5)
    assert ppo.policy.optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="--hidden 32"):
        sc.train_scheduler(cfg(run, timesteps=24, hidden=32), resume=True)


def test_scheduler_akb_that_is_not_an_akb_checkpoint_names_the_option(sched_setup, tmp_path):
    import testbed.akb.channel_kb.scheduler as sc

    cfg, _ = sched_setup
    v1 = tiny_v1_checkpoint(tmp_path / "v1.pt")          # a codec v1 checkpoint, not an AKB one
    with pytest.raises(ValueError, match="--akb .*v1.pt"):
        sc.train_scheduler(cfg(tmp_path / "run", akb=str(v1)))
