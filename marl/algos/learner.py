"""A learner: a multi-head policy and a value network over one observation, with its own random streams.

A :class:`Learner` keeps everything it owns in a :class:`~marl.algos.privacy.PrivateStore`, so decentralized
algorithms can prove that agent i's update never reads agent j's data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trpo_core import GAESettings, ValueFitSettings, ValueFitter, compute_gae

from ..networks import MultiHeadGaussianPolicy, MultiHeadPolicy, ValueNet
from ..rollout import next_values
from .privacy import PrivateStore, acting_as
from .seeding import sample_actions, shared_noise_generator, torch_generator
from .value_fits import value_metrics


GAE_BOUNDARIES = ("ignore", "correct")
SAMPLING_NOISE = ("independent", "shared")
ACTIVATIONS = ("selu", "tanh", "relu")


@dataclass(frozen=True)
class LearnerSettings:
    """A TRPO learner's own settings (MATRPO, I-TRPO, C-TRPO): networks, advantages, value regression, action noise.

    No defaults here: they live in :class:`marl.config.TrainConfig`, and ``marl.algos.from_config.learner_settings``
    builds this once from it (vary a field with :func:`dataclasses.replace`).
    """

    hidden_sizes: tuple[int, ...]  # hidden layer widths of the policy and value MLPs (paper: 128, 128)
    activation: str  # one of ACTIVATIONS (paper: selu)
    gae: GAESettings  # gamma, lambda of the advantage estimate (paper eqs. 18-19)
    # "ignore": the trace runs through resets (original navigation code); "correct": cut at termination, bootstrap
    # V(final obs) at truncation
    gae_boundaries: str
    value_fit: ValueFitSettings | None  # the value regression; None: V is not regressed
    # "independent": each learner's own generator; "shared": common-seed uniforms, Gumbel-max on its own logits
    sampling_noise: str
    stack_value_fits: bool  # the team's independent regressions as one stacked computation (same results)
    concurrent_value_fit: bool  # regress V in a worker thread while the policy step runs (same results)
    # Gaussian heads over action vectors (marl.networks.MultiHeadGaussianPolicy) instead of categorical heads
    continuous_actions: bool

    def __post_init__(self) -> None:
        if not self.hidden_sizes or any(not isinstance(h, int) or h <= 0 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be a non-empty tuple of ints > 0, got {self.hidden_sizes!r}")
        for name, allowed in (("activation", ACTIVATIONS), ("gae_boundaries", GAE_BOUNDARIES),
                              ("sampling_noise", SAMPLING_NOISE)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not isinstance(self.gae, GAESettings):
            raise ValueError(f"gae must be a trpo_core.GAESettings, got {self.gae!r}")
        if self.value_fit is not None and not isinstance(self.value_fit, ValueFitSettings):
            raise ValueError(f"value_fit must be a trpo_core.ValueFitSettings or None, got {self.value_fit!r}")


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
        Policy shape: logits [batch, n_heads, n_actions]; with ``settings.continuous_actions``, ``n_actions`` is the
        action vector's length.
    acting_heads : sequence of int
        The heads whose samples are executed (MATRPO agent i: ``[i]``; C-TRPO: all; I-TRPO: ``[0]``).
    settings : LearnerSettings
    seed : numpy SeedSequence
        Stream for this learner's initialisation, action sampling and value minibatches.
    run_seed : int
        The run's seed: the common seed of ``sampling_noise = "shared"``.
    """

    def __init__(self, owner: int, obs_dim: int, n_heads: int, n_actions: int, acting_heads,
                 settings: LearnerSettings, seed: np.random.SeedSequence, *, run_seed: int):
        init_seq, act_seq, fit_seq = seed.spawn(3)
        torch.manual_seed(int(init_seq.generate_state(1)[0]))
        policy_class = MultiHeadGaussianPolicy if settings.continuous_actions else MultiHeadPolicy
        policy = policy_class(obs_dim, n_heads, n_actions, settings.hidden_sizes, settings.activation)
        value = ValueNet(obs_dim, settings.hidden_sizes, settings.activation)
        fit_rng = np.random.default_rng(fit_seq)
        # Without a regression the optimiser is never stepped; it exists so that every checkpoint has one.
        fitter = ValueFitter(value, settings.value_fit or ValueFitSettings(epochs=1), seed=fit_rng)
        self.settings = settings
        self.owner = owner
        self.acting_heads = torch.as_tensor(list(acting_heads), dtype=torch.long)
        self.private = PrivateStore(
            owner,
            policy=policy,
            value=value,
            fitter=fitter,
            fit_rng=fit_rng,
            act_gen=(torch_generator(act_seq) if settings.sampling_noise == "independent"
                     else shared_noise_generator(run_seed)),
            batch=None,
        )

    @property
    def fits_value(self) -> bool:
        """Whether :meth:`fit_value` regresses V (``settings.value_fit`` is set)."""
        return self.settings.value_fit is not None

    # -- acting -----------------------------------------------------------------------------------------------------
    def act(self, obs: torch.Tensor, *, greedy: bool = False) -> torch.Tensor:
        """Sample the acting heads: returns [B, len(acting_heads)] int64 (continuous: [B, heads, dim] float).

        Independent noise: multinomial draws from this agent's own generator. Shared noise: Gumbel-max on uniforms
        of the logits' shape [B, heads, n_actions] from the common-seed generator, so every agent with the same
        acting-head shape draws the same noise at every step (``TrainConfig.sampling_noise``). ``greedy``: each
        head's most probable action, no draw.
        """
        policy = self.private.policy
        dist = policy.distribution(policy(obs)[:, self.acting_heads])
        return sample_actions(dist, self.private.act_gen, self.settings.sampling_noise == "shared", greedy=greedy)

    # -- value function and advantages -----------------------------------------------------------------------------
    def advantages(self, obs, last_obs, done_index, final_obs, rewards, terminated, truncated):
        """GAE on this learner's own rewards (paper eqs. 18-19). Returns (advantages, returns, values), [T, B]."""
        value = self.private.value
        with torch.no_grad():
            t, b = rewards.shape
            values = value(obs.reshape(t * b, -1)).reshape(t, b)
            if self.settings.gae_boundaries == "ignore":
                # Original navigation code (finite=False): the trace runs straight through resets.
                empty = done_index[:0]
                nxt = next_values(value, obs, last_obs, empty, final_obs[:0], values)
                term = torch.zeros_like(terminated)
                trunc = torch.zeros_like(truncated)
            else:
                nxt = next_values(value, obs, last_obs, done_index, final_obs, values)
                term, trunc = terminated, truncated
            gae = self.settings.gae
            adv, ret = compute_gae(rewards, values, nxt, term, trunc, gamma=gae.gamma, lam=gae.lam)
        return adv, ret, values

    def own_advantages(self, rollout, index: int):
        """:meth:`advantages` on agent ``index``'s slice of a rollout (its observations and its own reward)."""
        return self.advantages(rollout.obs[index], rollout.last_obs[index], rollout.done_index,
                               rollout.final_obs[index], rollout.rewards[..., index], rollout.terminated,
                               rollout.truncated)

    def fit_value(self, obs_flat: torch.Tensor, returns_flat: torch.Tensor, values_flat: torch.Tensor) -> dict:
        """Regress V onto the returns (trpo_core.ValueFitter); the metrics of :func:`fit_values`."""
        if not self.fits_value:
            return value_metrics(returns_flat, values_flat, None)
        return value_metrics(returns_flat, values_flat, self.private.fitter.fit(obs_flat, returns_flat))

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


def act_independently(learners: list[Learner], obs: list[torch.Tensor], *, greedy: bool = False) -> torch.Tensor:
    """Each learner samples (``greedy``: takes the mode of) its acting heads from its own observation; returns the
    joint action [B, n_agents]."""
    cols = []
    for i, learner in enumerate(learners):
        with acting_as(i):
            cols.append(learner.act(obs[i], greedy=greedy))
    return torch.cat(cols, dim=1)
