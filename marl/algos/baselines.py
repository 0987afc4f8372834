"""Baselines in the same stack as MATRPO (paper §VI-A; matrpo-reference-code.md §5).

I-TRPO
    Every agent runs single-agent TRPO on its own observation, its own action head and its own private reward, with
    its own advantage standardisation. No communication at all.
C-TRPO
    One centralized learner: a policy over the **joint** observation (all agents' observations concatenated) with one
    head per agent, trained by single-agent TRPO on the team reward (sum of all agents' rewards). This is the issue's
    upper reference. Departure from the original code, which ran agent 0's network on o^0 (plus velocities) with the
    team reward given to agent 0: the joint observation makes C-TRPO a true centralized policy, as the paper describes.
    The KL bound is the same per-learner ``max_kl`` (δ/N) as the original code used.

With ``env.continuous_actions`` both act with diagonal Gaussian heads (``marl.networks.MultiHeadGaussianPolicy``).

Both use the original code's TRPO step (CG 10 iterations, damping 0.01, Fisher on every 5th sample, halving line
search, KL <= 1.5 max_kl and no surrogate decrease), via ``trpo_core.trust_region_step``.
"""

from __future__ import annotations

import numpy as np
import torch

from trpo_core import Distribution, TRPOSettings, fisher_vector_product, flat_grad, trust_region_step

from ..rollout import Rollout
from .batch import samples, standardize
from .evaluator import PolicyEvaluator
from .learner import Learner, LearnerSettings, TeamCheckpoint, act_independently
from .privacy import acting_as
from .seeding import seed_sequence
from .value_fits import ValueFits, value_fit_executor


def step_metrics(prefix: str, info) -> dict[str, float]:
    """The ``trpo/*`` metrics of one ``trpo_core.StepInfo``, keys suffixed with ``prefix`` (e.g. ``_agent_0``)."""
    return {
        f"trpo/kl{prefix}": info.kl,
        f"trpo/accepted{prefix}": float(info.accepted),
        f"trpo/surrogate_improvement{prefix}": info.improvement,
        f"trpo/backtracks{prefix}": float(info.n_backtracks),
        f"trpo/cg_residual{prefix}": info.cg_residual,
    }


def mean_over_agents(metrics: dict[str, float], keys: list[str], n: int) -> None:
    """Set ``metrics[key]`` to the mean of ``metrics[key_agent_i]`` over the ``n`` agents, for every key."""
    for key in keys:
        metrics[key] = float(np.mean([metrics[f"{key}_agent_{i}"] for i in range(n)]))


class ITRPO(TeamCheckpoint):
    """Independent TRPO learners, one per agent, no communication.

    Parameters
    ----------
    obs_dims, n_actions : per-agent observation sizes and action counts.
    trpo : trpo_core.TRPOSettings
        Each learner's trust-region step.
    learner : LearnerSettings
    seed : int
        The run's seed (each agent's streams derive from it).
    """

    name = "itrpo"

    def __init__(self, obs_dims, n_actions, trpo: TRPOSettings, learner: LearnerSettings, *, seed: int):
        self.n_agents = len(obs_dims)
        self.trpo, self.learner_settings = trpo, learner
        self.agents = [
            Learner(i, obs_dims[i], 1, n_actions[i], [0], learner, seed_sequence(seed, 1, i), run_seed=seed)
            for i in range(self.n_agents)
        ]
        self._value_pool = value_fit_executor(learner.concurrent_value_fit)

    def act(self, obs: list[torch.Tensor], *, greedy: bool = False) -> torch.Tensor:
        return act_independently(self.agents, obs, greedy=greedy)

    def update(self, rollout: Rollout, iteration: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        gae = []
        for i, agent in enumerate(self.agents):
            with acting_as(i):
                gae.append(tuple(samples(t) for t in agent.own_advantages(rollout, i)))
        obs_all = [samples(o) for o in rollout.obs]
        value_fits = ValueFits(self._value_pool, self.agents, obs_all, [r for _, r, _ in gae],
                               [v for _, _, v in gae], stacked=self.learner_settings.stack_value_fits)
        for i, agent in enumerate(self.agents):
            with acting_as(i):
                adv, obs = gae[i][0], obs_all[i]
                adv = standardize(adv, float(adv.mean()), float(adv.std()))
                own_action = samples(rollout.actions[:, :, i : i + 1])  # [M, 1] (continuous: [M, 1, dim])
                info = trpo_policy_update(agent, obs, own_action, adv, self.trpo)
            metrics.update(step_metrics(f"_agent_{i}", info))
        fits, metrics["time/value_fit"] = value_fits.result()
        for i, vf in enumerate(fits):
            metrics[f"value/loss_agent_{i}"] = vf["value_loss"]
            metrics[f"value/explained_variance_agent_{i}"] = vf["explained_variance"]
        mean_over_agents(metrics, ["trpo/kl", "trpo/accepted", "trpo/surrogate_improvement", "value/loss",
                                    "value/explained_variance"], self.n_agents)
        metrics["trpo/accepted_fraction"] = metrics.pop("trpo/accepted")
        return metrics


class CTRPO:
    """One centralized TRPO learner over the joint observation and joint action, trained on the team reward.

    Parameters as :class:`ITRPO`'s; the one learner sees the concatenated observations and has a head per agent.
    """

    name = "ctrpo"

    def __init__(self, obs_dims, n_actions, trpo: TRPOSettings, learner: LearnerSettings, *, seed: int):
        if len(set(n_actions)) != 1:
            raise ValueError(f"C-TRPO's joint policy needs equal action counts per agent, got {n_actions}")
        self.n_agents = len(obs_dims)
        self.trpo = trpo
        self.learner = Learner(0, int(sum(obs_dims)), self.n_agents, n_actions[0], range(self.n_agents), learner,
                               seed_sequence(seed, 1, 0), run_seed=seed)
        self._value_pool = value_fit_executor(learner.concurrent_value_fit)

    def act(self, obs: list[torch.Tensor], *, greedy: bool = False) -> torch.Tensor:
        return self.learner.act(torch.cat(obs, dim=-1), greedy=greedy)

    def update(self, rollout: Rollout, iteration: int) -> dict[str, float]:
        joint_obs = torch.cat(rollout.obs, dim=-1)
        joint_last = torch.cat(rollout.last_obs, dim=-1)
        joint_final = torch.cat(rollout.final_obs, dim=-1)
        team_reward = rollout.rewards.sum(-1)
        adv, ret, values = self.learner.advantages(
            joint_obs, joint_last, rollout.done_index, joint_final, team_reward, rollout.terminated,
            rollout.truncated,
        )
        obs = samples(joint_obs)
        value_fits = ValueFits(self._value_pool, [self.learner], [obs], [samples(ret)], [samples(values)],
                               stacked=False)
        adv = samples(adv)
        adv = standardize(adv, float(adv.mean()), float(adv.std()))
        info = trpo_policy_update(self.learner, obs, samples(rollout.actions), adv, self.trpo)
        (vf,), fit_seconds = value_fits.result()
        metrics = step_metrics("", info)
        metrics["trpo/accepted_fraction"] = metrics.pop("trpo/accepted")
        metrics["value/loss"] = vf["value_loss"]
        metrics["value/explained_variance"] = vf["explained_variance"]
        metrics["time/value_fit"] = fit_seconds
        return metrics

    def state_dict(self) -> dict:
        return {"learner": self.learner.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])


def trpo_policy_update(learner: Learner, obs: torch.Tensor, actions: torch.Tensor, adv: torch.Tensor,
                       settings: TRPOSettings):
    """One single-agent TRPO step (I-TRPO, C-TRPO) on the learner's acting heads.

    Surrogate (Schulman et al. 2015, eq. 14): L(theta) = (1/M) sum_m exp(log pi_theta(a_m|o_m) - log pi_old(a_m|o_m)) A_m,
    KL = mean_m KL(pi_old(.|o_m) || pi_theta(.|o_m)) over the acting heads; step by ``trpo_core.trust_region_step``.
    """
    policy = learner.private.policy
    heads = learner.acting_heads

    def dist_of(output: torch.Tensor) -> Distribution:
        return policy.distribution(output[:, heads])

    logits = policy(obs)
    dist = dist_of(logits)
    logp = dist.log_prob(actions)
    logp_old = logp.detach()
    old_logits = logits.detach()
    surrogate = (torch.exp(logp - logp_old) * adv).mean()
    params = [p for p in policy.parameters() if p.requires_grad]
    g = flat_grad(surrogate, params)
    evaluator = PolicyEvaluator(policy, obs, dist_of)
    fvp = fisher_vector_product(policy, lambda o: dist_of(policy(o)), obs, form=settings.fisher_form,
                                subsample_every=settings.fvp_subsample_every)

    def surrogate_fn(theta: torch.Tensor) -> float:
        d = evaluator.dist(theta)
        return float((torch.exp(d.log_prob(actions) - logp_old) * adv).mean())

    def kl_fn(theta: torch.Tensor) -> float:
        return evaluator.kl_within(theta, old_logits, settings.kl_bound)

    _, info = trust_region_step(policy, fvp, kl_fn=kl_fn, surrogate_fn=surrogate_fn, settings=settings, gradient=g)
    return info
