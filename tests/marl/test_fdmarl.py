"""FDMARL: the diffusion step preserves the average of the critics and converges to it, only critic parameters
cross edges (privacy guard, per-agent independence before diffusion), communication is counted, the counterfactual
advantage matches its definition, and the training stack works on both environments with exact resume."""

from __future__ import annotations

import copy
import csv

import networkx as nx
import numpy as np
import pytest
import torch

from marl.algos import FDMARL, PrivacyViolation, make_algorithm
from marl.algos.fdmarl import FDMARLAgent, FDMARLSettings
from marl.rollout import collect_rollout
from marl.env_factory import make_env_for
from marl.train import train
from marl_tiny import tiny_config
from trpo_core import flat_params, set_flat_params


def rows_of(run_dir):
    with open(run_dir / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in csv.DictReader(fh)]


def one_rollout(*extra):
    cfg = tiny_config("fdmarl", *extra)
    venv = make_env_for(cfg)
    algo = make_algorithm("fdmarl", venv.obs_dims, venv.n_actions, cfg)
    rollout, _ = collect_rollout(venv, algo.act, venv.reset(seed=cfg.seed), cfg.steps_per_env)
    return cfg, venv, algo, rollout


def critic_flats(algo):
    """Every agent's consensus parameters (its message), one row per agent."""
    return torch.stack([a.message().double() for a in algo.agents])


@pytest.mark.parametrize(("graph", "critic"), [("ring", "v"), ("path", "q"), ("star", "v")])
def test_diffusion_preserves_the_average_and_converges_to_it(graph, critic):
    _, _, algo, _ = one_rollout("env.n_agents=6", f"admm.graph={graph}", f"fdmarl.critic={critic}")
    gen = torch.Generator().manual_seed(0)
    for a in algo.agents:  # distinct networks (they start distinct anyway; make the spread large)
        for name in a.consensus_names:
            module = getattr(a.private, name)
            set_flat_params(module, torch.randn(flat_params(module).numel(), generator=gen))
    start = critic_flats(algo)
    mean = start.mean(0)
    for _ in range(150):
        algo.diffuse()
    end = critic_flats(algo)
    torch.testing.assert_close(end.mean(0), mean, rtol=0, atol=1e-5)
    assert float((end - mean).abs().max()) < 1e-4 * float((start - mean).abs().max())
    assert algo.critic_disagreement() < 1e-4


def test_one_diffusion_step_is_the_metropolis_average():
    _, _, algo, _ = one_rollout("env.n_agents=5", "admm.graph=path")
    before = critic_flats(algo)
    algo.diffuse()
    # Metropolis-Hastings weights on the path 0-1-2-3-4 (degrees 1,2,2,2,1): 1/3 on every edge.
    w = np.zeros((5, 5))
    for i in range(4):
        w[i, i + 1] = w[i + 1, i] = 1 / 3
    w[np.arange(5), np.arange(5)] = 1 - w.sum(1)
    torch.testing.assert_close(critic_flats(algo), torch.from_numpy(w) @ before, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("critic", ["q", "v"])
def test_communication_is_counted(critic):
    cfg, _, algo, rollout = one_rollout(f"fdmarl.critic={critic}", "env.n_agents=4", "admm.graph=path", "fdmarl.n_minibatches=3",
                                        "fdmarl.diffusion_rounds=2")
    metrics = algo.update(rollout, 0)
    p = algo.agents[0].message().numel()
    rounds = 3 * 2
    degrees = [1, 2, 2, 1]
    for i, d in enumerate(degrees):
        assert metrics[f"comm/floats_sent_agent_{i}"] == rounds * d * p
    assert metrics["comm/floats_sent_total"] == rounds * sum(degrees) * p
    assert metrics["comm/messages_total"] == rounds * sum(degrees)


class LeakyAgent(FDMARLAgent):
    """A buggy diffusion that mixes in a neighbour's critic read from its private store: the guard must catch it."""

    team: list = []

    def mix(self, self_weight, messages, weights):
        other = self.team[(self.owner + 1) % len(self.team)]
        _ = other.private.critic
        super().mix(self_weight, messages, weights)


def test_privacy_guard_catches_a_leaky_diffusion():
    _, _, algo, rollout = one_rollout()
    algo.update(rollout, 0)  # the real update runs under the same guard
    for agent in algo.agents:
        agent.__class__ = LeakyAgent
    LeakyAgent.team = algo.agents
    with pytest.raises(PrivacyViolation, match="read private field"):
        algo.update(rollout, 1)


@pytest.mark.parametrize("critic", ["q", "v"])
def test_before_any_diffusion_an_agent_update_reads_only_its_own_data(critic):
    """Agent 0's first critic step is unchanged when agent 1's rewards and observations change."""
    _, _, algo, rollout = one_rollout(f"fdmarl.critic={critic}")
    state = copy.deepcopy(algo.state_dict())

    def first_steps():
        captured = {}
        original = FDMARLAgent.critic_step

        def spy(self, idx):
            out = original(self, idx)
            captured.setdefault(self.owner, self.message().clone())
            return out

        FDMARLAgent.critic_step = spy
        try:
            algo.load_state_dict(copy.deepcopy(state))
            algo.update(rollout, 0)
        finally:
            FDMARLAgent.critic_step = original
        return captured[0], captured[1]

    mine, other = first_steps()
    rollout.rewards[..., 1] += torch.randn_like(rollout.rewards[..., 1])
    rollout.obs[1].mul_(-3.0)
    mine2, other2 = first_steps()
    assert torch.equal(mine, mine2)
    assert not torch.equal(other, other2)  # the perturbation is real


def test_counterfactual_advantage_matches_its_definition():
    _, _, algo, rollout = one_rollout("fdmarl.critic=q", "fdmarl.advantage_norm=false")
    agent = algo.agents[1]
    agent.prepare(rollout)
    agent.set_advantages(rollout)
    batch = agent.private.batch
    obs = batch.obs[:7]
    joint = rollout.actions.transpose(0, 1).reshape(-1, algo.n_agents)[:7]
    with torch.no_grad():
        probs = torch.softmax(agent.private.actor(obs)[:, 0], -1)
        for m in range(7):
            q = []
            for b in range(5):
                a = joint[m].clone()
                a[1] = b
                # ego-centric order for agent 1: own action, then agents 0 and 2
                x = torch.cat([obs[m], *(torch.nn.functional.one_hot(a[j], 5).float() for j in (1, 0, 2))])
                q.append(float(agent.private.critic(x[None])[0]))
            expected = q[int(joint[m, 1])] - float((probs[m] * torch.tensor(q)).sum())
            assert float(batch.advantages[m]) == pytest.approx(expected, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize(("field", "value"), [("critic", "a"), ("n_minibatches", 0), ("lr", 0.0),
                                              ("diffusion_rounds", 0), ("max_grad_norm", -1.0)])
def test_settings_reject_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"fdmarl.{field}"):
        FDMARLSettings(**{field: value})


@pytest.mark.parametrize("extra", [[], ["fdmarl.critic=v", "gae_boundaries=correct"],
                                   ["env.name=treasure_collection", "env.n_agents=4"]])
def test_trains_logs_and_checkpoints(tmp_path, extra):
    train(tiny_config("fdmarl", "total_steps=400", *extra), tmp_path / "run", progress=False, tensorboard=False)
    rows = rows_of(tmp_path / "run")
    assert len(rows) == 2
    for key in ("env/return", "value/loss", "policy/kl", "diffusion/critic_disagreement", "comm/floats_sent_total"):
        assert key in rows[-1], key


def test_graph_must_be_on_the_agent_indices():
    cfg = tiny_config("fdmarl")
    venv = make_env_for(cfg)
    with pytest.raises(ValueError, match="agent indices"):
        FDMARL(venv.obs_dims, venv.n_actions, cfg.fdmarl, graph=nx.path_graph(["a", "b", "c"]),
               gae=None, gae_boundaries="ignore")


@pytest.mark.parametrize("algo", ["mappo", "fdmarl"])
def test_eval_and_table_read_the_run(tmp_path, algo):
    from marl.evaluate import evaluate
    from marl.plotting import summarize_runs

    train(tiny_config(algo, "total_steps=400"), tmp_path / "run", progress=False, tensorboard=False)
    report = evaluate(tmp_path / "run", episodes=2)
    assert report["episodes"] == 2 and "coverage_distance_last_step_mean" in report
    table = summarize_runs([tmp_path / "run"], at_steps=400)
    assert table[algo]["runs"] == 1 and "env/coverage_distance_per_step" in table[algo]
