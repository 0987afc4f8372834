"""Evaluation during training (``eval_every``) and greedy acting: eval/* rows appear where asked, training is the
same with evaluation on or off, a killed run with evaluation resumes to the uninterrupted rows, greedy acting is
the policy's mode and draws nothing, and plot / table / report read eval/return."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest
import torch

from marl.__main__ import main
from marl.algos import make_algorithm
from marl.algos.privacy import acting_as
from marl.checkpoint import load_checkpoint
from marl.config import apply_overrides
from marl.env_factory import make_env_for
from marl.evaluation import EVAL_SEED_OFFSET, eval_seed, evaluate_policy
from marl.report import run_summary
from marl.train import train
from marl_tiny import tiny_config

ALGOS = ["matrpo", "itrpo", "ctrpo", "mappo", "fdmarl"]


def read_rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def training_columns(rows):
    """Every logged value except wall-clock timings and the evaluation's."""
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "eval/")) and v != ""} for r in rows]


def assert_same_state(a, b, path="algo"):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same_state(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}.{k}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), path
    else:
        assert a == b, path


@pytest.mark.parametrize("algo", ALGOS)
def test_evaluation_does_not_change_training(tmp_path, algo):
    base = tiny_config(algo)  # 3 iterations: the third trains after the evaluation
    train(base, tmp_path / "off", progress=False, tensorboard=False)
    train(apply_overrides(base, ["eval_every=2", "eval_episodes=3"]), tmp_path / "on", progress=False,
          tensorboard=False)
    off, on = read_rows(tmp_path / "off"), read_rows(tmp_path / "on")
    assert training_columns(on) == training_columns(off)
    assert_same_state(load_checkpoint(tmp_path / "on")["algo"], load_checkpoint(tmp_path / "off")["algo"])
    assert not any(k.startswith("eval/") for k in off[-1])
    assert [r["eval/return"] != "" for r in on] == [False, True, False]  # after iteration 2 of 3
    for row in on[1:2]:
        returns = [float(row[f"eval/return_agent_{i}"]) for i in range(3)]
        assert float(row["eval/return"]) == pytest.approx(sum(returns))  # team return, as env/return
        assert float(row["eval/episodes"]) == 3 and float(row["eval/episode_length"]) == 25
        assert float(row["eval/return_std"]) >= 0
        assert "eval/collisions_episode_sum" in row and "eval/coverage_distance_episode_sum" in row
        assert float(row["time/eval"]) > 0


@pytest.mark.parametrize("algo", ALGOS)
def test_kill_and_resume_with_evaluation_reproduces_uninterrupted_run(tmp_path, algo):
    cfg = tiny_config(algo, "total_steps=800", "checkpoint_every=2", "eval_every=3", "eval_episodes=2")
    train(cfg, tmp_path / "full", progress=False, tensorboard=False)
    # Killed after 3 iterations: the checkpoint is at 2, the evaluation of iteration 3 was logged after it.
    train(cfg, tmp_path / "killed", progress=False, tensorboard=False, stop_after=3)
    assert read_rows(tmp_path / "killed")[2]["eval/return"] != ""
    train(cfg, tmp_path / "killed", resume=True, progress=False, tensorboard=False)
    full, resumed = read_rows(tmp_path / "full"), read_rows(tmp_path / "killed")
    untimed = [{k: v for k, v in r.items() if not k.startswith("time/")} for r in full]
    assert [{k: v for k, v in r.items() if not k.startswith("time/")} for r in resumed] == untimed
    assert [r["eval/return"] != "" for r in full] == [False, False, True, False]


def test_eval_every_may_change_on_resume_and_eval_episodes_may_not(tmp_path):
    cfg = tiny_config("itrpo", "total_steps=400")
    train(cfg, tmp_path / "r", progress=False, tensorboard=False, stop_after=1)
    with pytest.raises(ValueError, match="eval_episodes: 10 -> 4"):
        train(apply_overrides(cfg, ["eval_episodes=4"]), tmp_path / "r", resume=True, progress=False,
              tensorboard=False)
    train(apply_overrides(cfg, ["eval_every=1"]), tmp_path / "r", resume=True, progress=False, tensorboard=False)
    rows = read_rows(tmp_path / "r")
    assert rows[0].get("eval/return", "") == "" and float(rows[1]["eval/episodes"]) == 10


def _greedy_case(algo, noise="independent"):
    cfg = tiny_config(algo, f"sampling_noise={noise}")
    venv = make_env_for(cfg)
    algo_obj = make_algorithm(algo, venv.obs_dims, venv.n_actions, cfg)
    obs = [torch.from_numpy(o) for o in venv.reset(seed=cfg.seed)]
    return algo_obj, obs


def _logits(algo, name, obs):
    """Each agent's action logits [B, n_actions], computed here from the networks."""
    if name in ("matrpo", "itrpo"):
        out = []
        for i, agent in enumerate(algo.agents):
            with acting_as(i):
                out.append(agent.private.policy(obs[i])[:, agent.acting_heads[0]])
        return out
    if name == "ctrpo":
        logits = algo.learner.private.policy(torch.cat(obs, dim=-1))
        return [logits[:, i] for i in range(len(obs))]
    if name == "fdmarl":
        out = []
        for i, agent in enumerate(algo.agents):
            with acting_as(i):
                out.append(agent.private.actor(obs[i])[:, 0])
        return out
    return [algo._logits(k, algo._actor_input(k, obs))[members.index(i)] for i in range(len(obs))
            for k, members in enumerate(algo.kinds) if i in members]


@pytest.mark.parametrize("noise", ["independent", "shared"])
@pytest.mark.parametrize("algo", ALGOS)
def test_greedy_act_draws_no_noise(algo, noise):
    model, obs = _greedy_case(algo, noise)
    with torch.no_grad():
        state = copy.deepcopy(model.state_dict())  # the action generators' states included
        sampled = model.act(obs)
        model.load_state_dict(state)
        model.act(obs, greedy=True)
        assert_same_state(model.state_dict(), state)
        assert torch.equal(model.act(obs), sampled)


@pytest.mark.parametrize("algo", ALGOS)
def test_greedy_act_is_the_mode(algo):
    model, obs = _greedy_case(algo)
    with torch.no_grad():
        for p in (q for m in _modules(model) for q in m.parameters()):
            p.mul_(50.0)  # sharpen the policies: their modes are far from what a uniform draw would give
        expected = torch.stack([lg.argmax(-1) for lg in _logits(model, algo, obs)], dim=1)
        assert torch.equal(model.act(obs, greedy=True), expected)
        assert torch.equal(model.act(obs, greedy=True), expected)


def _modules(model):
    if hasattr(model, "agents"):
        return [a.private.policy if hasattr(a.private, "policy") else a.private.actor for a in model.agents]
    if hasattr(model, "learner"):
        return [model.learner.private.policy]
    return list(model.actors)


def test_evaluation_seeds_are_disjoint_from_training_and_fixed():
    cfg = tiny_config("itrpo", "seed=7", "eval_episodes=3")
    assert eval_seed(cfg.seed) == 7 + EVAL_SEED_OFFSET
    eval_seeds = set(range(eval_seed(cfg.seed), eval_seed(cfg.seed) + cfg.eval_episodes))
    assert not eval_seeds & set(range(cfg.seed, cfg.seed + cfg.env.n_envs))
    venv = make_env_for(cfg)
    model = make_algorithm("itrpo", venv.obs_dims, venv.n_actions, cfg)
    eval_env = make_env_for(cfg, n_envs=cfg.eval_episodes, seed=eval_seed(cfg.seed))
    first = evaluate_policy(eval_env, model, seed=eval_seed(cfg.seed), max_steps=cfg.env.max_cycles)
    second = evaluate_policy(eval_env, model, seed=eval_seed(cfg.seed), max_steps=cfg.env.max_cycles)
    assert first == second and first["eval/episodes"] == 3
    train_obs = venv.reset(seed=cfg.seed)[0]
    eval_obs = eval_env.reset(seed=eval_seed(cfg.seed))[0]
    assert not any(np.array_equal(e, t) for e in eval_obs for t in train_obs)


@pytest.mark.parametrize(("key", "value"), [("eval_every", "-1"), ("eval_episodes", "0"), ("eval_every", "1.5")])
def test_bad_evaluation_settings_name_the_field(key, value):
    with pytest.raises(ValueError, match=key):
        apply_overrides(tiny_config(), [f"{key}={value}"])


def test_an_algorithm_that_cannot_act_greedily_is_refused(tmp_path):
    class Sampling:
        def __init__(self, inner):
            self.inner = inner

        def act(self, obs):
            return self.inner.act(obs)

    def factory(obs_dims, n_actions, cfg):
        return Sampling(make_algorithm(cfg.algo, obs_dims, n_actions, cfg))

    with pytest.raises(ValueError, match="eval_every=2 needs an algorithm that acts greedily"):
        train(tiny_config("itrpo", "eval_every=2"), tmp_path / "r", progress=False, tensorboard=False,
              algorithm_factory=factory)
    assert not (tmp_path / "r").exists()


def test_plot_table_report_and_eval_cli_read_eval_return(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config("itrpo", "total_steps=800", "eval_every=2", "eval_episodes=2"), run, progress=False,
          tensorboard=False)
    rows = read_rows(run)
    assert main(["plot", str(run), "--metric", "eval/return", "-o", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["table", str(run), "--at", "800", "--metric", "eval/return", "--metric", "env/return"]) == 0
    table = json.loads(capsys.readouterr().out)["itrpo"]
    assert table["eval/return"][0] == pytest.approx(float(rows[3]["eval/return"]))
    assert table["env/return"][0] == pytest.approx(float(rows[3]["env/return"]))
    # report: the last 4 greedy episodes are the two evaluations (2 episodes each)
    summary = run_summary(run, metric="eval/return", final_episodes=4, n_agents=3)
    expected = (float(rows[1]["eval/return"]) + float(rows[3]["eval/return"])) / 2
    assert summary["final"] == pytest.approx(expected)
    assert main(["eval", str(run), "--episodes", "2", "--greedy"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["eval", str(run), "--episodes", "2", "--greedy"]) == 0
    assert json.loads(capsys.readouterr().out) == first and first["episodes"] == 2
