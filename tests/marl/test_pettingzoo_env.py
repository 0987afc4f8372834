"""Any PettingZoo ParallelEnv trains from the command line (``--env mpe2.simple_spread_v3``, options from
``env.kwargs``): MATRPO and I-TRPO train, ``eval``/``table`` read the run, ``--resume`` continues bit for bit (the
adapter's resumable mode: seeded episodes replayed), and bad names or options are refused naming the setting."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo import ParallelEnv

from marl.__main__ import main
from marl.config import apply_overrides, config_from_dict, load_config
from marl.env_factory import make_env_for
from marl.envs import PettingZooVectorAdapter, parallel_env_factory
from marl.rundir import load_run_config
from marl.train import train
from marl_tiny import tiny_config

simple_spread_v3 = pytest.importorskip("mpe2.simple_spread_v3", reason="mpe2 is not installed")

SPREAD = ["--env", "mpe2.simple_spread_v3", "--set", "env.kwargs.N=3", "--set", "env.kwargs.max_cycles=25"]
TINY = ["--steps", "400", "--set", "steps_per_iter=200", "--set", "env.n_envs=4", "--set", "hidden_sizes=16,16",
        "--set", "admm.iterations=6", "--set", "vf_epochs=1", "--no-progress"]


def read_rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def comparable(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("algo", ["matrpo", "itrpo"])
def test_cli_trains_on_mpe2_simple_spread_then_eval_and_table_read_the_run(tmp_path, capsys, algo):
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--algo", algo, *SPREAD, *TINY, "--out", str(run))
    assert code == 0, err
    assert json.loads(out)["iterations"] == 2
    rows = read_rows(run)
    assert len(rows) == 2 and all(np.isfinite(float(r["env/return"])) for r in rows)
    # 4 envs x 50 steps per iteration, 25-step episodes: 8 episodes, each of 25 steps
    assert [float(r["env/episodes"]) for r in rows] == [8.0, 8.0]
    assert [float(r["env/episode_length"]) for r in rows] == [25.0, 25.0]
    config = load_run_config(run)
    assert config.env.name == "mpe2.simple_spread_v3" and config.env.kwargs == {"N": 3, "max_cycles": 25}
    code, out, err = run_cli(capsys, "eval", str(run), "--episodes", "3")
    assert code == 0, err
    report = json.loads(out)
    assert report["episodes"] == 3 and np.isfinite(report["return_mean"])
    assert set(report) >= {"return_agent_0", "return_agent_1", "return_agent_2"}
    code, out, err = run_cli(capsys, "table", str(run), "--at", "400")
    assert code == 0, err
    assert json.loads(out)[algo]["runs"] == 1


def test_eval_is_the_first_episode_of_each_environment_with_the_saved_policies(tmp_path, capsys):
    """eval's returns are those of a hand-run episode per seed with the run's policies (same sampling stream)."""
    import torch

    from marl.evaluate import evaluate, load_trained

    run = tmp_path / "run"
    assert run_cli(capsys, "train", *SPREAD, *TINY, "--steps", "200", "--out", str(run))[0] == 0
    report = evaluate(run, episodes=2, seed=7)
    _, algo = load_trained(run)
    envs = [simple_spread_v3.parallel_env(N=3, max_cycles=25) for _ in range(2)]
    obs = [env.reset(seed=7 + b)[0] for b, env in enumerate(envs)]
    totals = np.zeros((2, 3))
    for _ in range(25):
        tensors = [torch.as_tensor(np.stack([o[a] for o in obs])) for a in envs[0].possible_agents]
        joint = algo.act(tensors).numpy()
        for b, env in enumerate(envs):
            obs[b], rew, *_ = env.step({a: int(joint[b, i]) for i, a in enumerate(env.possible_agents)})
            totals[b] += [rew[a] for a in env.possible_agents]
    np.testing.assert_allclose(report["return_mean"], totals.sum(1).mean(), rtol=1e-6)
    np.testing.assert_allclose(report["return_agent_1"], totals[:, 1].mean(), rtol=1e-6)


def test_kill_and_resume_on_a_pettingzoo_env_reproduces_the_uninterrupted_run(tmp_path):
    # 30-step episodes over 50-step rollouts: checkpoints fall inside episodes, so resuming must replay them
    cfg = tiny_config("matrpo", "env.name=mpe2.simple_spread_v3", "env.kwargs.N=3", "env.kwargs.max_cycles=30",
                      "env.max_cycles=100", "total_steps=800", "checkpoint_every=2")  # 100: the paper tasks' default
    train(cfg, tmp_path / "full", progress=False, tensorboard=False)
    train(cfg, tmp_path / "killed", progress=False, tensorboard=False, stop_after=3)
    train(cfg, tmp_path / "killed", resume=True, progress=False, tensorboard=False)
    assert comparable(read_rows(tmp_path / "killed")) == comparable(read_rows(tmp_path / "full"))


def test_resume_refuses_other_env_kwargs(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(capsys, "train", *SPREAD, *TINY, "--steps", "200", "--out", str(run))[0] == 0
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--set", "env.kwargs.local_ratio=0.1")
    assert code == 2 and "env.kwargs" in err and "local_ratio" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "mpe2.no_such_env_v0"], "env.name: cannot import the environment module 'mpe2.no_such_env_v0'"),
        (["--env", "marl.config"], "env.name: module 'marl.config' has no parallel_env factory"),
        (["--env", "not a module"], "env.name must be one of"),
        (["--env", "mpe2.simple_spread_v3", "--set", "env.kwargs.n_landmarks=3"],
         "env.kwargs {'n_landmarks': 3} are refused by mpe2.simple_spread_v3.parallel_env"),
        (["--env", "mpe2.simple_spread_v3", "--set", "env.kwargs.N=4"],
         "env.n_agents is 3 but mpe2.simple_spread_v3 with env.kwargs {'N': 4} has 4 agents"),
        (["--env", "mpe2.simple_spread_v3", "--set", "env.max_cycles=25"],
         "env.max_cycles applies to the paper's tasks, not to mpe2.simple_spread_v3"),
        (["--env", "mpe2.simple_spread_v3", "--set", "env.reward_mode=mpe2"],
         "env.reward_mode applies to the paper's tasks, not to mpe2.simple_spread_v3"),
        (["--set", "env.kwargs.n_agents=4"], "env.kwargs.n_agents is a setting of its own"),
        (["--set", "env.kwargs.no_such_option=1"], "env.kwargs {'no_such_option': 1} are refused by "
                                                    "cooperative_navigation"),
    ],
)
def test_bad_env_names_and_options_are_refused_naming_the_setting(tmp_path, capsys, argv, message):
    code, _, err = run_cli(capsys, "train", *argv, *TINY, "--out", str(tmp_path / "run"))
    assert code == 2 and message in err, err
    assert not (tmp_path / "run").exists()  # nothing left behind


def test_env_kwargs_from_toml_and_the_command_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[env]\nname = "mpe2.simple_spread_v3"\n[env.kwargs]\nN = 3\nlocal_ratio = 0.25\n')
    config = load_config(path)
    assert config.env.kwargs == {"N": 3, "local_ratio": 0.25}
    config = apply_overrides(config, ["env.kwargs.max_cycles=10", "env.kwargs.render_mode=rgb_array",
                                      "env.kwargs.flag=true", 'env.kwargs.quoted="3"'])
    assert config.env.kwargs == {"N": 3, "local_ratio": 0.25, "max_cycles": 10, "render_mode": "rgb_array",
                                 "flag": True, "quoted": "3"}
    assert config_from_dict(json.loads(json.dumps(config.to_dict()))) == config  # config.json round trip
    with pytest.raises(ValueError, match="env.kwargs.x must be a finite number"):
        apply_overrides(config, ["env.kwargs.x=inf"])
    with pytest.raises(ValueError, match="keyword arguments"):
        config_from_dict({"env": {"kwargs": {"not-an-identifier": 1}}})


def test_env_kwargs_reach_a_paper_task():
    config = tiny_config("matrpo", "env.kwargs.variant=mpe2", "env.kwargs.local_ratio=0.25", "env.reward_mode=mpe2")
    venv = make_env_for(config)
    assert venv.config.variant == "mpe2" and venv.config.local_ratio == 0.25
    assert make_env_for(tiny_config("matrpo")).config.variant == "paper"


def test_parallel_env_factory_finds_registered_tasks_and_module_paths():
    assert parallel_env_factory("mpe2.simple_spread_v3") is simple_spread_v3.parallel_env
    assert parallel_env_factory("treasure_collection_v0")(n_agents=4).possible_agents[-1] == "agent_3"
    with pytest.raises(ValueError, match="cannot import"):
        parallel_env_factory("no_such_package.env_v0")


# -- the adapter's resumable mode ------------------------------------------------------------------------------------


def _spread_adapter(resumable=True, n_envs=3):
    return PettingZooVectorAdapter(lambda: simple_spread_v3.parallel_env(N=3, max_cycles=5), n_envs=n_envs, seed=7,
                                   resumable=resumable)


@pytest.mark.parametrize("split", [0, 3, 5, 12, 15])  # before any step, mid-episode, at episode ends
def test_resumable_adapter_state_restores_the_exact_environments(split):
    from marl.checkpoint import load_checkpoint, save_checkpoint

    rng = np.random.default_rng(0)
    a = _spread_adapter()
    a.reset()
    actions = [a.sample_actions(rng) for _ in range(23)]
    for act in actions[:split]:
        a.step(act)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:  # through a checkpoint file: plain data only
        save_checkpoint(Path(d), {"env": a.state_dict()})
        state = load_checkpoint(Path(d), required=("env",))["env"]
    b = _spread_adapter()
    b.load_state_dict(state)
    for x, y in zip(a.last_obs, b.last_obs):
        np.testing.assert_array_equal(x, y)
    for act in actions[split:]:
        out_a, out_b = a.step(act), b.step(act)
        for x, y in zip(out_a[0] + out_a[4]["final_obs"], out_b[0] + out_b[4]["final_obs"]):
            np.testing.assert_array_equal(x, y)
        for k in (1, 2, 3):
            np.testing.assert_array_equal(out_a[k], out_b[k])
        np.testing.assert_array_equal(out_a[4]["episode_return"], out_b[4]["episode_return"])


def test_resumable_adapter_seeds_every_episode_differently():
    a = _spread_adapter(n_envs=2)
    first = [o.copy() for o in a.reset()]
    starts = [first[0][b] for b in range(2)]
    for _ in range(3):
        for _ in range(5):
            obs = a.step(np.zeros((2, 3), dtype=np.int64))[0]
        starts += [obs[0][b] for b in range(2)]
    assert len({s.tobytes() for s in starts}) == len(starts)
    assert [PettingZooVectorAdapter.episode_seed(5, b, 0) for b in range(3)] == [5, 6, 7]  # Gymnasium's convention
    later = {PettingZooVectorAdapter.episode_seed(s, b, k) for s in range(3) for b in range(3) for k in range(1, 5)}
    assert len(later) == 36 and not later & set(range(100))  # nearby base seeds do not share later episodes


class _GlobalRandomEnv(ParallelEnv):
    """A ParallelEnv that draws from NumPy's global generator: not determined by its seed and actions."""

    metadata = {"name": "global_random"}
    possible_agents = ["agent_0", "agent_1"]

    def observation_space(self, agent):
        return spaces.Box(-1.0, 1.0, (2,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        return {a: np.zeros(2, np.float32) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        obs = {a: np.random.random(2).astype(np.float32) for a in self.agents}
        zero = dict.fromkeys(self.agents, 0.0)
        return obs, zero, dict.fromkeys(self.agents, False), dict.fromkeys(self.agents, False), {}


def test_resumable_adapter_refuses_an_environment_it_cannot_replay():
    a = PettingZooVectorAdapter(_GlobalRandomEnv, n_envs=2, seed=0, resumable=True)
    a.reset()
    a.step(np.zeros((2, 2), dtype=np.int64))
    b = PettingZooVectorAdapter(_GlobalRandomEnv, n_envs=2, seed=0, resumable=True)
    with pytest.raises(ValueError, match="does not reproduce its saved observation"):
        b.load_state_dict(a.state_dict())


def test_plain_adapter_still_cannot_save_and_resumable_refuses_another_batch():
    with pytest.raises(NotImplementedError, match="resumable=True"):
        _spread_adapter(resumable=False).state_dict()
    a = _spread_adapter(n_envs=3)
    a.reset()
    with pytest.raises(ValueError, match="does not match"):
        _spread_adapter(n_envs=2).load_state_dict(a.state_dict())


def test_eval_refuses_an_environment_whose_episodes_never_end():
    import torch

    from marl.evaluation import play_episodes

    class Zeros:
        def act(self, obs, greedy=False):
            return torch.zeros(2, 2, dtype=torch.int64)

    venv = PettingZooVectorAdapter(_GlobalRandomEnv, n_envs=2, seed=0)
    with pytest.raises(ValueError, match=r"no episode of environments \[0, 1\] ended in 5 steps"):
        play_episodes(venv, Zeros(), seed=0, greedy=True, max_steps=5)
