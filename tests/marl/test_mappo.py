"""MAPPO: the PPO losses against hand computations, value normalisation, agent kinds, and the training stack on both
environments (logs, checkpoints, kill-and-resume equal to an uninterrupted run, CLI)."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from marl.algos import MAPPO, make_algorithm
from marl.algos.mappo import MAPPOSettings, Tanh, ValueNorm, agent_kinds, ppo_policy_loss, ppo_value_loss
from marl.config import apply_overrides
from marl.rollout import collect_rollout
from marl.env_factory import make_env_for
from marl.train import train
from marl_tiny import tiny_config


def rows_of(run_dir):
    with open(run_dir / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in csv.DictReader(fh)]


def test_clipped_policy_loss_matches_a_hand_computation():
    # ratios e^0.5 = 1.6487 (clipped to 1.2), e^-0.5 = 0.6065 (clipped to 0.8), e^0.1 = 1.1052 (inside)
    logp_old = torch.zeros(4)
    logp = torch.tensor([0.5, -0.5, 0.1, 0.5])
    adv = torch.tensor([2.0, 1.0, -1.0, -3.0])
    loss, clipped = ppo_policy_loss(logp, logp_old, adv, clip=0.2)
    # min(rho A, clip(rho) A) per sample:
    #   A=2,  rho=1.6487: min(3.2974, 2.4)  = 2.4
    #   A=1,  rho=0.6065: min(0.6065, 0.8)  = 0.6065
    #   A=-1, rho=1.1052: min(-1.1052, -1.1052) = -1.1052
    #   A=-3, rho=1.6487: min(-4.9462, -3.6) = -4.9462
    expected = -(2.4 + math.exp(-0.5) - math.exp(0.1) - 3 * math.exp(0.5)) / 4
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(clipped) == pytest.approx(3 / 4)


def test_clipped_value_loss_matches_a_hand_computation():
    pred = torch.tensor([1.0, 0.0, 3.0])
    old = torch.tensor([0.5, 0.5, 0.0])
    target = torch.tensor([2.0, -1.0, 30.0])
    # V_clip = old + clip(pred - old, -0.2, 0.2) = [0.7, 0.3, 0.2]; errors R - V = [1, -1, 27], R - V_clip =
    # [1.3, -1.3, 29.8]. Huber(10): 0.5 e^2 below 10, else 10 (|e| - 5).
    huber = [max(0.5 * 1.0, 0.5 * 1.3**2), max(0.5 * 1.0, 0.5 * 1.3**2), max(10 * (27 - 5), 10 * (29.8 - 5))]
    got = ppo_value_loss(pred, old, target, clip=0.2, huber_delta=10.0)
    assert float(got) == pytest.approx(sum(huber) / 3, rel=1e-6)
    squared = ppo_value_loss(pred, old, target, clip=None, huber_delta=None)
    assert float(squared) == pytest.approx((0.5 + 0.5 + 0.5 * 27**2) / 3, rel=1e-6)


def test_value_norm_is_the_debiased_running_average():
    norm = ValueNorm(beta=0.9)
    batches = [torch.tensor([1.0, 3.0]), torch.tensor([10.0, 14.0])]
    for b in batches:
        norm.update(b)
    # Debiased EMA with weights 0.1 * 0.9 (first batch) and 0.1 (second), normalised by their sum.
    w = [0.09, 0.1]
    mean = (w[0] * 2.0 + w[1] * 12.0) / sum(w)
    mean_sq = (w[0] * 5.0 + w[1] * 148.0) / sum(w)
    assert norm.stats() == pytest.approx((mean, math.sqrt(mean_sq - mean**2)))
    x = torch.tensor([-4.0, 0.0, 7.5])
    torch.testing.assert_close(norm.denormalize(norm.normalize(x)), x)


def test_agent_kinds_group_equal_observation_and_action_sizes():
    assert agent_kinds([14, 14, 14], [5, 5, 5], share=True) == [[0, 1, 2]]
    assert agent_kinds([86, 86, 84, 86, 84], [5] * 5, share=True) == [[0, 1, 3], [2, 4]]
    assert agent_kinds([14, 14], [5, 5], share=False) == [[0], [1]]


@pytest.mark.parametrize(("field", "value"), [("clip", 0.0), ("epochs", 0), ("network", "big"), ("value_clip", -1.0),
                                              ("entropy_coef", -0.1)])
def test_settings_reject_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"mappo.{field}"):
        MAPPOSettings(**{field: value})


@pytest.mark.parametrize("extra", [[], ["mappo.share_parameters=false"], ["mappo.network=paper"],
                                   ["env.name=treasure_collection", "env.n_agents=5"]])
def test_trains_logs_and_checkpoints(tmp_path, extra):
    train(tiny_config("mappo", "total_steps=400", *extra), tmp_path / "run", progress=False, tensorboard=False)
    rows = rows_of(tmp_path / "run")
    assert len(rows) == 2
    for key in ("env/return", "env/coverage_distance_last_step", "value/loss", "value/explained_variance", "policy/kl",
                "ppo/clip_fraction", "ppo/entropy"):
        assert key in rows[-1] or (key == "env/coverage_distance_last_step" and "treasure" in " ".join(extra)), key
    assert (tmp_path / "run" / "checkpoint.pt").exists()


def test_parameter_sharing_builds_one_actor_per_kind_with_ids():
    cfg = tiny_config("mappo", "env.name=treasure_collection", "env.n_agents=5")
    venv = make_env_for(cfg)
    algo = make_algorithm("mappo", venv.obs_dims, venv.n_actions, cfg)
    assert isinstance(algo, MAPPO) and len(algo.actors) == 2  # hunters, banks
    hunters = algo.kinds[0]
    assert algo.actors[0][1].in_features == venv.obs_dims[hunters[0]] + len(hunters)  # after the input LayerNorm
    actions = algo.act([torch.zeros(7, d) for d in venv.obs_dims])
    assert actions.shape == (7, 5) and actions.dtype == torch.long


def test_update_raises_the_probability_of_advantageous_actions():
    """Every action of the batch gets the same observation; the team reward prefers action 1 strongly, so after one
    MAPPO update pi(1 | o) must have grown (a sign check of the whole update, independent of its internals)."""
    cfg = tiny_config("mappo", "mappo.value_norm=false")
    venv = make_env_for(cfg)
    algo = make_algorithm("mappo", venv.obs_dims, venv.n_actions, cfg)
    rollout, _ = collect_rollout(venv, algo.act, venv.reset(seed=0), cfg.steps_per_env)
    rollout.rewards[:] = (rollout.actions == 1).float() - 0.25
    obs = [o[:1, :1].reshape(1, -1) for o in rollout.obs]

    def prob_of_one():
        with torch.no_grad():
            return torch.softmax(algo._logits(0, algo._actor_input(0, obs)), -1)[..., 1].mean()

    before = prob_of_one()
    algo.update(rollout, 0)
    assert prob_of_one() > before + 0.01


def test_cli_overrides_reach_the_settings():
    cfg = apply_overrides(tiny_config("mappo"), ["mappo.clip=0.1", "mappo.share_parameters=false"])
    assert cfg.mappo.clip == 0.1 and cfg.mappo.share_parameters is False
    with pytest.raises(ValueError, match="unknown"):
        apply_overrides(cfg, ["mappo.clip_param=0.1"])


def test_fast_tanh_is_tanh_with_its_gradient():
    x = torch.linspace(-20, 20, 2001, dtype=torch.float64, requires_grad=True)
    y = Tanh()(x)
    torch.testing.assert_close(y, torch.tanh(x), rtol=0, atol=1e-15)
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, 1 - torch.tanh(x.detach()) ** 2, rtol=0, atol=1e-14)
