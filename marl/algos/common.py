"""Pieces every algorithm shares: a learner (policy + value + value fitter), GAE on a rollout, the TRPO settings.

A :class:`Learner` keeps everything it owns in a :class:`~marl.algos.privacy.PrivateStore`, so decentralized
algorithms can prove that agent i's update never reads agent j's data.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.func import functional_call

from trpo_core import (
    Categorical,
    MultiCategorical,
    TRPOSettings,
    ValueFitSettings,
    ValueFitter,
    compute_gae,
    fisher_vector_product,
    fit_stacked,
    flat_grad,
    trust_region_step,
    unflatten,
)

from ..config import TrainConfig
from ..networks import MultiHeadPolicy, ValueNet
from ..rollout import next_values
from .privacy import PrivateStore, acting_as


def trpo_settings(config: TrainConfig) -> TRPOSettings:
    """The local trust-region step of the original MATRPO code, with ``max_kl`` from the config (δ/N)."""
    t = config.trpo
    return TRPOSettings.matrpo(
        max_kl=config.max_kl,
        damping=t.cg_damping,
        cg_max_iter=t.cg_iters,
        backtrack_coeff=t.ls_backtrack,
        max_backtracks=t.ls_steps,
        fvp_subsample_every=t.fvp_subsample,
        fisher_form=t.fisher_form,
    )


def seed_sequence(seed: int, *words: int) -> np.random.SeedSequence:
    """A child seed for (run seed, purpose words...): independent streams that a resumed run re-derives."""
    return np.random.SeedSequence([seed, *words])


# Purpose word of the common seed behind ``sampling_noise = "shared"``: every agent derives the same stream from it.
SHARED_NOISE_WORD = 3


def shared_noise_generator(seed: int) -> torch.Generator:
    """The action-noise generator every agent derives from the run's seed when ``sampling_noise = "shared"``."""
    return torch_generator(seed_sequence(seed, SHARED_NOISE_WORD))


def sample_actions(dist: Categorical, generator: torch.Generator, shared: bool) -> torch.Tensor:
    """Independent noise: multinomial draws from ``generator``. Shared: Gumbel-max on uniforms of the logits' shape
    from the common generator, so agents drawing in step apply the same noise to their own logits."""
    if shared:
        return dist.sample_gumbel(torch.rand(dist.logits.shape, generator=generator))
    return dist.sample(generator)


def torch_generator(seq: np.random.SeedSequence) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))
    return gen


class TeamCheckpoint:
    """``state_dict`` / ``load_state_dict`` of an algorithm whose whole state is its agents' (``self.agents``)."""

    def state_dict(self) -> dict:
        return {"agents": [a.state_dict() for a in self.agents]}

    def load_state_dict(self, state: dict) -> None:
        for a, s in zip(self.agents, state["agents"]):
            a.load_state_dict(s)


class Learner:
    """One learner: a multi-head categorical policy over its own observation and a value network.

    Parameters
    ----------
    owner : int
        Agent index that owns this learner's private data.
    obs_dim, n_heads, n_actions : int
        Policy shape: logits [batch, n_heads, n_actions].
    acting_heads : sequence of int
        The heads whose samples are executed (MATRPO agent i: ``[i]``; C-TRPO: all; I-TRPO: ``[0]``).
    config : TrainConfig
    seed : int
        Stream for this learner's initialisation, action sampling and value minibatches.
    """

    def __init__(self, owner: int, obs_dim: int, n_heads: int, n_actions: int, acting_heads, config: TrainConfig,
                 seed: np.random.SeedSequence):
        init_seq, act_seq, fit_seq = seed.spawn(3)
        torch.manual_seed(int(init_seq.generate_state(1)[0]))
        policy = MultiHeadPolicy(obs_dim, n_heads, n_actions, config.hidden_sizes, config.activation)
        value = ValueNet(obs_dim, config.hidden_sizes, config.activation)
        fit_rng = np.random.default_rng(fit_seq)
        fitter = ValueFitter(
            value,
            ValueFitSettings(lr=config.vf_lr, epochs=max(config.vf_epochs, 1), minibatch_size=config.vf_minibatch),
            seed=fit_rng,
        )
        self.owner = owner
        self.acting_heads = torch.as_tensor(list(acting_heads), dtype=torch.long)
        self.private = PrivateStore(
            owner,
            policy=policy,
            value=value,
            fitter=fitter,
            fit_rng=fit_rng,
            act_gen=(torch_generator(act_seq) if config.sampling_noise == "independent"
                     else shared_noise_generator(config.seed)),
            batch=None,
        )
        self.shared_noise = config.sampling_noise == "shared"
        self.vf_epochs = config.vf_epochs

    # -- acting -----------------------------------------------------------------------------------------------------
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Sample the acting heads: returns [B, len(acting_heads)] int64.

        Independent noise: multinomial draws from this agent's own generator. Shared noise: Gumbel-max on uniforms
        of the logits' shape [B, heads, n_actions] from the common-seed generator, so every agent with the same
        acting-head shape draws the same noise at every step (``TrainConfig.sampling_noise``).
        """
        dist = MultiCategorical(self.private.policy(obs)[:, self.acting_heads])
        return sample_actions(dist, self.private.act_gen, self.shared_noise)

    # -- value function and advantages -----------------------------------------------------------------------------
    def advantages(self, obs, last_obs, done_index, final_obs, rewards, terminated, truncated, config: TrainConfig):
        """GAE on this learner's own rewards (paper eqs. 18-19). Returns (advantages, returns, values), [T, B]."""
        value = self.private.value
        with torch.no_grad():
            t, b = rewards.shape
            values = value(obs.reshape(t * b, -1)).reshape(t, b)
            if config.gae_boundaries == "ignore":
                # Original navigation code (finite=False): the trace runs straight through resets.
                empty = done_index[:0]
                nxt = next_values(value, obs, last_obs, empty, final_obs[:0], values)
                term = torch.zeros_like(terminated)
                trunc = torch.zeros_like(truncated)
            else:
                nxt = next_values(value, obs, last_obs, done_index, final_obs, values)
                term, trunc = terminated, truncated
            adv, ret = compute_gae(rewards, values, nxt, term, trunc, gamma=config.gamma, lam=config.gae_lambda)
        return adv, ret, values

    def own_advantages(self, rollout, index: int, config: TrainConfig):
        """:meth:`advantages` on agent ``index``'s slice of a rollout (its observations and its own reward)."""
        return self.advantages(rollout.obs[index], rollout.last_obs[index], rollout.done_index,
                               rollout.final_obs[index], rollout.rewards[..., index], rollout.terminated,
                               rollout.truncated, config)

    def fit_value(self, obs_flat: torch.Tensor, returns_flat: torch.Tensor, values_flat: torch.Tensor) -> dict:
        """Regress V onto the returns (trpo_core.ValueFitter); the metrics of :func:`fit_values`."""
        if self.vf_epochs == 0:
            return _value_metrics(returns_flat, values_flat, None)
        return _value_metrics(returns_flat, values_flat, self.private.fitter.fit(obs_flat, returns_flat))

    # -- checkpointing ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        p = self.private
        return {
            "policy": p.policy.state_dict(),
            "value": p.value.state_dict(),
            "value_optimizer": p.fitter.optimizer.state_dict(),
            "fit_rng": p.fit_rng.bit_generator.state,
            "act_gen": p.act_gen.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        p = self.private
        p.policy.load_state_dict(state["policy"])
        p.value.load_state_dict(state["value"])
        p.fitter.optimizer.load_state_dict(state["value_optimizer"])
        p.fit_rng.bit_generator.state = state["fit_rng"]
        p.act_gen.set_state(state["act_gen"])


def _value_metrics(returns_flat: torch.Tensor, values_flat: torch.Tensor, info) -> dict:
    var = float(returns_flat.var())
    explained = 1.0 - float((returns_flat - values_flat).var()) / var if var > 0 else float("nan")
    loss = info.loss_after if info is not None else float(((values_flat - returns_flat) ** 2).mean())
    return {"value_loss": loss, "explained_variance": explained}


def fit_values(learners: list[Learner], obs: list[torch.Tensor], returns: list[torch.Tensor],
               values: list[torch.Tensor], *, stacked: bool) -> list[dict]:
    """Every learner's value regression on its own flat data (``Learner.fit_value``), in learner order.

    With ``stacked`` the regressions run as one ``trpo_core.fit_stacked`` computation. That call is the one place
    where the training loop, not an agent, touches all agents' value networks at once, so it runs outside
    ``acting_as``; its per-member independence is proved by trpo_core's tests (changing one member's data leaves the
    others' results bit-for-bit unchanged). Without it, each fit runs as its own agent, under the privacy guard.
    """
    if stacked and len(learners) > 1 and all(l.vf_epochs > 0 for l in learners):
        infos = fit_stacked([l.private.fitter for l in learners], obs, returns)
        return [_value_metrics(r, v, info) for r, v, info in zip(returns, values, infos)]

    out = []
    for learner, o, r, v in zip(learners, obs, returns, values):
        with acting_as(learner.owner):
            out.append(learner.fit_value(o, r, v))
    return out


def value_fit_executor(config: TrainConfig) -> ThreadPoolExecutor | None:
    """The worker thread for :class:`ValueFits` when ``config.concurrent_value_fit``, else None."""
    return ThreadPoolExecutor(max_workers=1) if config.concurrent_value_fit else None


class ValueFits:
    """:func:`fit_values` started now and collected with :meth:`result`: in ``executor``'s worker thread, or at once.

    The value regression reads the rollout's observations and returns and writes only the value networks; the policy
    step reads neither, so the two can run at the same time (on the second core while one policy step runs, or in
    the gaps the two endpoint threads leave). The result is the same as running them one after the other.
    """

    def __init__(self, executor, learners, obs, returns, values, *, stacked: bool):
        def run() -> tuple[list[dict], float]:
            start = time.perf_counter()
            out = fit_values(learners, obs, returns, values, stacked=stacked)
            return out, time.perf_counter() - start

        self._future = executor.submit(run) if executor is not None else None
        self._done = run() if executor is None else None

    def result(self) -> tuple[list[dict], float]:
        """(per-learner value metrics, seconds the fits took)."""
        return self._done if self._future is None else self._future.result()


@dataclass
class PolicyEvaluator:
    """Evaluates a policy's distribution at flat parameter vectors without touching the module; caches the last one.

    A line search asks for the KL and the loss at the same candidate; both come from one forward pass (and one
    log-softmax). :meth:`kl_within` runs that forward in chunks and stops as soon as the KL is proved too large.
    """

    policy: torch.nn.Module
    obs: torch.Tensor
    make_dist: Callable[[torch.Tensor], MultiCategorical] = MultiCategorical
    chunk_size: int = 2000
    _names: list | None = None
    _like: list | None = None
    _last: tuple | None = None
    _old_chunks: tuple | None = None

    def __post_init__(self) -> None:
        named = [(n, p) for n, p in self.policy.named_parameters() if p.requires_grad]
        self._names = [n for n, _ in named]
        self._like = [p for _, p in named]

    def _logits(self, theta: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        params = dict(zip(self._names, unflatten(theta, self._like)))
        with torch.no_grad():
            return functional_call(self.policy, params, (obs,))

    def dist(self, theta: torch.Tensor) -> MultiCategorical:
        if self._last is not None and self._last[0] is theta:
            return self._last[1]
        out = self.make_dist(self._logits(theta, self.obs))
        self._last = (theta, out)
        return out

    def kl_within(self, theta: torch.Tensor, old_logits: torch.Tensor, limit: float) -> float:
        """mean_m KL(pi_old(.|o_m) || pi_theta(.|o_m)), or a lower bound above ``limit`` once that is certain.

        The per-sample KL terms are non-negative, so after each chunk, (sum so far) / M is a lower bound of the mean;
        when it exceeds ``limit`` the rest of the batch is skipped (a line search's failing candidates usually show
        it within the first chunks). A complete pass leaves the full distribution cached for :meth:`dist`.
        """
        n = self.obs.shape[0]
        if self._old_chunks is None or self._old_chunks[0] is not old_logits:
            olds = [self.make_dist(old_logits[a:a + self.chunk_size]) for a in range(0, n, self.chunk_size)]
            self._old_chunks = (old_logits, olds, self.make_dist(old_logits))
        if self._last is not None and self._last[0] is theta:
            return float(self._old_chunks[2].kl(self._last[1]).mean())
        total = 0.0
        pieces = []
        for k, a in enumerate(range(0, n, self.chunk_size)):
            logits = self._logits(theta, self.obs[a:a + self.chunk_size])
            total += float(self._old_chunks[1][k].kl(self.make_dist(logits)).sum())
            if total / n > limit:
                return total / n
            pieces.append(logits)
        self._last = (theta, self.make_dist(torch.cat(pieces)))
        return total / n


def act_independently(learners: list[Learner], obs: list[torch.Tensor]) -> torch.Tensor:
    """Each learner samples its acting heads from its own observation; returns the joint action [B, n_agents]."""
    cols = []
    for i, learner in enumerate(learners):
        with acting_as(i):
            cols.append(learner.act(obs[i]))
    return torch.cat(cols, dim=1)


def samples(x: torch.Tensor) -> torch.Tensor:
    """Flatten rollout tensors [T, B, ...] into the update's sample axis, env-major: sample m = env * T + t.

    The original MATRPO code orders samples this way (baselines' ``sf01``), and the Fisher-vector product uses every
    5th sample, so the subsample is every 5th step of *every* environment (all 100 episodes of a batch). A time-major
    order would give all steps of two environments out of ten instead.
    """
    return x.transpose(0, 1).reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def standardize(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return (x - mean) / (std + 1e-8)


def episode_metrics(episodes: list[dict]) -> dict[str, float]:
    """Mean per-episode statistics: team return (sum over agents and steps), per-agent returns, env metrics."""
    if not episodes:
        return {}
    out: dict[str, float] = {}
    returns = np.stack([ep["return"] for ep in episodes])
    out["env/return"] = float(returns.sum(axis=1).mean())
    for i in range(returns.shape[1]):
        out[f"env/return_agent_{i}"] = float(returns[:, i].mean())
    out["env/episode_length"] = float(np.mean([ep["length"] for ep in episodes]))
    out["env/episodes"] = float(len(episodes))
    keys = [k for k in episodes[0] if k not in ("return", "length")]
    for k in keys:
        out[f"env/{k}"] = float(np.mean([ep[k] for ep in episodes]))
    return out


ActFn = Callable[[list[torch.Tensor]], torch.Tensor]


def trpo_policy_update(learner: Learner, obs: torch.Tensor, actions: torch.Tensor, adv: torch.Tensor,
                       settings: TRPOSettings):
    """One single-agent TRPO step (I-TRPO, C-TRPO) on the learner's acting heads.

    Surrogate (Schulman et al. 2015, eq. 14): L(theta) = (1/M) sum_m exp(log pi_theta(a_m|o_m) - log pi_old(a_m|o_m)) A_m,
    KL = mean_m KL(pi_old(.|o_m) || pi_theta(.|o_m)) over the acting heads; step by ``trpo_core.trust_region_step``.
    """
    policy = learner.private.policy
    heads = learner.acting_heads

    def dist_of(logits: torch.Tensor) -> MultiCategorical:
        return MultiCategorical(logits[:, heads])

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
