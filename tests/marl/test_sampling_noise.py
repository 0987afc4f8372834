"""``sampling_noise``: shared noise makes agents with equal logits act alike at every step, independent noise agrees
only at chance level; both are deterministic per seed and survive kill-and-resume, for every algorithm."""

from __future__ import annotations

import pytest
import torch

from marl.algos import make_algorithm
from marl.config import apply_overrides
from marl.rollout import collect_rollout
from marl.env_factory import make_env_for
from marl.train import train
from marl_tiny import tiny_config
from test_training import comparable, read_rows

ALGOS = ["matrpo", "itrpo", "ctrpo", "mappo", "fdmarl"]


def _actions_with_equal_logits(algo_name: str, noise: str, env: str = "cooperative_navigation") -> torch.Tensor:
    """The joint actions [T, B, N] of a rollout in which every policy outputs all-zero logits (equal for all agents)."""
    cfg = tiny_config(algo_name, f"sampling_noise={noise}", f"env.name={env}", "env.n_agents=4", "env.n_envs=50",
                      "steps_per_iter=1000")
    venv = make_env_for(cfg)
    algo = make_algorithm(cfg.algo, venv.obs_dims, venv.n_actions, cfg)
    policies = {"ctrpo": lambda: [algo.learner.private.policy], "mappo": lambda: list(algo.actors),
                "fdmarl": lambda: [a.private.actor for a in algo.agents]}.get(
        algo_name, lambda: [a.private.policy for a in algo.agents])()
    with torch.no_grad():
        for policy in policies:
            for p in policy.parameters():
                p.zero_()
    rollout, _ = collect_rollout(venv, algo.act, venv.reset(seed=cfg.seed), cfg.steps_per_env)
    return rollout.actions


@pytest.mark.parametrize("env", ["cooperative_navigation", "treasure_collection"])
@pytest.mark.parametrize("algo_name", ["matrpo", "itrpo", "mappo", "fdmarl"])
def test_shared_noise_equal_logits_give_equal_actions_independent_agree_at_chance(algo_name, env):
    shared = _actions_with_equal_logits(algo_name, "shared", env)
    assert torch.equal(shared, shared[..., :1].expand_as(shared))  # every agent, every step, every env
    independent = _actions_with_equal_logits(algo_name, "independent", env)
    agree = (independent[..., 1:] == independent[..., :1]).double().mean()
    # Uniform over 5 actions: agreement 1/5; 3 x 1000 pairs give a standard error of about 0.007.
    assert abs(float(agree) - 0.2) < 0.04
    # The shared stream is still random over steps and environments: the actions are uniform too.
    freq = torch.bincount(shared[..., 0].flatten(), minlength=5).double() / shared[..., 0].numel()
    assert torch.all((freq - 0.2).abs() < 0.04)


def test_shared_noise_in_ctrpo_is_one_draw_per_head_position():
    """C-TRPO's one learner samples all heads; shared noise is per head position, so its heads still differ."""
    actions = _actions_with_equal_logits("ctrpo", "shared")
    agree = (actions[..., 1:] == actions[..., :1]).double().mean()
    assert abs(float(agree) - 0.2) < 0.04


@pytest.mark.parametrize("algo", ALGOS)
def test_shared_noise_is_deterministic_and_survives_kill_and_resume(tmp_path, algo):
    cfg = tiny_config(algo, "sampling_noise=shared", "total_steps=800", "checkpoint_every=2")
    train(cfg, tmp_path / "full", progress=False, tensorboard=False)
    train(cfg, tmp_path / "again", progress=False, tensorboard=False)
    train(cfg, tmp_path / "killed", progress=False, tensorboard=False, stop_after=3)
    train(cfg, tmp_path / "killed", resume=True, progress=False, tensorboard=False)
    full = comparable(read_rows(tmp_path / "full"))
    assert full == comparable(read_rows(tmp_path / "again"))
    assert full == comparable(read_rows(tmp_path / "killed"))
    independent = apply_overrides(cfg, ["sampling_noise=independent"])
    train(independent, tmp_path / "independent", progress=False, tensorboard=False)
    assert full != comparable(read_rows(tmp_path / "independent"))


def test_sampling_noise_is_validated():
    with pytest.raises(ValueError, match="sampling_noise"):
        tiny_config("matrpo", "sampling_noise=correlated")


def test_noise_swap_diagnostic_plays_saved_policies_in_each_mode(tmp_path):
    """experiments/diagnostics/noise_swap.py: with equal logits the shared mode moves every agent alike and the
    independent mode agrees at chance; its greedy mode is the library's greedy evaluation, episode for episode."""
    import importlib.util
    from pathlib import Path

    from marl.evaluate import evaluate, load_trained
    from marl.evaluation import eval_seed

    path = Path(__file__).parents[2] / "experiments" / "diagnostics" / "noise_swap.py"
    spec = importlib.util.spec_from_file_location("noise_swap", path)
    noise_swap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noise_swap)
    cfg = tiny_config("matrpo", "sampling_noise=independent", "env.n_agents=4", "total_steps=200")
    train(cfg, tmp_path, progress=False, tensorboard=False)
    config, algo = load_trained(tmp_path)
    greedy = noise_swap.play(config, algo, "greedy", 8, eval_seed(config.seed))
    reference = evaluate(tmp_path, episodes=8, seed=eval_seed(config.seed), greedy=True)
    assert greedy["team"] == pytest.approx(reference["return_mean"], abs=1e-9)
    with torch.no_grad():
        for agent in algo.agents:
            for p in agent.private.policy.parameters():
                p.zero_()
    shared = noise_swap.play(config, algo, "shared", 40, 0)
    independent = noise_swap.play(config, algo, "independent", 40, 0)
    assert shared["same_action"] == 1.0
    # All 4 agents alike by chance: 5 * (1/5)^4 = 0.008 of the 1000 steps.
    assert independent["same_action"] < 0.03
