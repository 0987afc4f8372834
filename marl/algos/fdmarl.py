r"""FDMARL: networked actor-critic with consensus critics (Zhang, Yang, Liu, Zhang & Basar, ICML 2018, "Fully
Decentralized Multi-Agent Reinforcement Learning with Networked Agents", Algorithms 1 and 2).

The MATRPO paper's decentralized actor-critic baseline (§VI-A): every agent learns a policy and a critic; the
critic is trained by TD learning on the agent's own reward and then replaced by a weighted average of its
neighbours' critics (a diffusion step), so that the critics reach consensus on the value of the team-average reward
(1/N) sum_i r^i while no agent ever sees another's reward. Only critic parameters cross edges.

Symbols
-------
==============  =========================  ===========  ==================================================
symbol          code                       shape        meaning
==============  =========================  ===========  ==================================================
o^i_t           ``obs``                    [T, B, d_i]  agent i's observation (private)
r^i_t           ``rewards``                [T, B]       agent i's reward (private)
a_t             ``joint``                  [T, B, N]    the executed joint action (the one global quantity)
x^i_t           ``view``                   [.., F]      [o^i zero-padded to max_i d_i, onehot(a^i_t),
                                                        onehot(a^j_t) for j != i]: agent i's ego-centric view
pi^i_theta      ``actor``                               agent i's policy on o^i
V^i_omega       ``critic``                 [..]         critic="v": V(o^i); critic="q": Q(x^i)
R^i_lambda      ``reward``                 [..]         critic="v": estimate of the team-average reward R(x^i)
W               ``weights``                [N, N]       Metropolis-Hastings weights of the graph (doubly
                                                        stochastic; consensus_admm.graphs.metropolis_weights)
==============  =========================  ===========  ==================================================

One outer iteration, every agent i on its own data (rollout of T steps x B envs, M = T B samples):

(F1)  critic targets: lambda-returns of the agent's own reward, Y^i_t = r^i_t + gamma [(1 - lambda) V^i(t+1)
      + lambda Y^i_{t+1}] (trpo_core.compute_gae; lambda = 0 is Zhang's TD(0) target; with Q, SARSA(lambda))
(F3)  critic phase, ``critic_epochs`` passes in minibatches of ``critic_minibatch_size``, each step followed by (F4):
        omega~^i  = Adam step on mean (V^i_omega - Y^i)^2;   lambda~^i = Adam step on mean (R^i_lambda(x^i) - r^i)^2
(F4)  omega^i = sum_j W_ij omega~^j, lambda^i = sum_j W_ij lambda~^j   (``diffusion_rounds`` times; j = i and its
      neighbours). At consensus both are the minimisers of the *summed* losses: the value and the reward of
      (1/N) sum_i r^i.
(F2)  advantage with the consensus networks. critic="v" (Zhang's Algorithm 2): A^i = GAE of the estimated team
      reward R^i_lambda(x^i_t) under V^i_omega. critic="q" (Algorithm 1):
      A^i_t = Q^i(x^i_t) - sum_b pi^i(b | o^i_t) Q^i(x^i_t with a^i = b). Standardised per agent.
(F5)  actor phase, one pass in ``n_minibatches`` steps:
        theta^i = Adam step on -mean A^i log pi^i(a^i | o^i) - c_H mean H(pi^i(. | o^i))

What crosses an edge: omega~^i (and lambda~^i) to each neighbour after every critic step, counted under ``comm/``;
the neighbours' degrees (for W) once. Observations, rewards, advantages, actors and optimiser states stay private
(checked by :mod:`marl.algos.privacy` in tests).

Choices where Zhang et al. and the MATRPO paper differ or are silent, with the reason:

- State-value form by default (``critic = "v"``, Zhang's Algorithm 2, in which the actor's TD error uses the
  diffused estimate of the team-average reward). The MATRPO paper names action-value TD learning (Algorithm 1,
  ``critic = "q"``), but with deep networks the counterfactual advantage (F2, "q") drove every policy to a
  deterministic one on Navigation N=3 (measured with an earlier batching, 100 lockstep critic/actor steps per
  iteration, actor step 1e-4: entropy 1.6 -> 0.04 and team return -259 -> -2,631 within 100k steps), the critic's
  values for actions the policy no longer takes being arbitrary. Both forms are implemented and tested.
- Critic input. Zhang et al. assume every agent observes the global state; here an agent sees only o^i (the paper's
  setting), and the reward estimate (and Q) takes the joint action in ego-centric order (own action first, then the
  others in the order o^i lists them). The consensus functions estimate team-average quantities, which do not depend
  on which agent is looking, so one function of this view serves every agent. No agent id: with one, the shared
  network could fit each agent's private value separately and the consensus would be void (measured: the team
  return fell). The diffused networks must share one architecture, so observations are zero-padded to the largest
  size (Treasure Collection: hunters 86, banks 84).
- Batched updates. Zhang's algorithm takes one critic step, one diffusion step and one actor step per transition.
  Here the critic phase takes minibatch steps with a diffusion after each (the same regression budget as the other
  methods' value fits, 3 epochs), and the actor then one pass in 10 policy-gradient steps with advantages from the
  updated consensus networks. Actor step size 1e-4: at 7e-4 the policy KL per iteration reached 0.1-0.8 and the
  policies collapsed; at 1e-4 the return rose steadily (Navigation N=3, 100k steps: -259 -> -220 to -233).
- Discounted, not average-reward: the run's gamma (0.995) and lambda (0.95) replace Zhang's long-run average reward
  mu^i, so that every method of a comparison optimises the same objective; lambda-returns rather than TD(0) because
  a discounted horizon of 200 steps propagates value too slowly through one-step targets.
- Where Q needs the next joint action and it is unknown (the last step of the rollout; the true final observation at
  a truncation with ``gae_boundaries = "correct"``), the last executed joint action stands in for it.
- Adam instead of plain stochastic-approximation step sizes, gradient-norm clipping and an entropy bonus (0.01, as
  MAPPO's MPE setting), for deep networks (the paper's 2 x 128 SELU for actor, critic and reward estimate).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import networkx as nx
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from consensus_admm.graphs import metropolis_weights
from trpo_core import Categorical, GAESettings, flat_params, set_flat_params

from ..networks import MultiHeadPolicy, ValueNet
from ..rollout import Rollout
from .batch import samples, standardize
from .learner import TeamCheckpoint
from .mappo import gae_targets
from .privacy import PrivateStore, acting_as
from .seeding import sample_actions, seed_sequence, shared_noise_generator, torch_generator

CRITICS = ("q", "v")


def _check(ok: bool, name: str, rule: str, value) -> None:
    if not ok:
        raise ValueError(f"fdmarl.{name} must be {rule}, got {value!r}")


@dataclass(frozen=True)
class FDMARLSettings:
    """FDMARL's hyperparameters (see the module docstring for each choice)."""

    critic: str = "v"  # "v": V(o^i) + diffused reward estimate R(x^i), Zhang's Algorithm 2; "q": Q(x^i), Algorithm 1
    lr: float = 1e-4  # actor Adam step size; > 0
    critic_lr: float = 1e-3  # critic Adam step size; > 0
    adam_eps: float = 1e-5  # Adam epsilon; > 0
    critic_epochs: int = 3  # passes of the critic phase over the batch; >= 1 (as the other methods' vf_epochs)
    critic_minibatch_size: int = 256  # samples per critic step, each followed by a diffusion; >= 1
    n_minibatches: int = 10  # actor steps per iteration: one pass over the batch in this many; >= 1
    diffusion_rounds: int = 1  # consensus steps omega <- W omega after each critic step; >= 1 (Zhang: 1)
    entropy_coef: float = 0.01  # c_H; >= 0
    max_grad_norm: float | None = 10.0  # gradient-norm clip per Adam step; None: off
    advantage_norm: bool = True  # standardise each agent's advantages over its batch

    def __post_init__(self) -> None:
        _check(self.critic in CRITICS, "critic", f"one of {CRITICS}", self.critic)
        for name in ("lr", "critic_lr", "adam_eps"):
            value = getattr(self, name)
            _check(isinstance(value, (int, float)) and math.isfinite(value) and value > 0, name, "a float > 0",
                   value)
        for name in ("critic_epochs", "critic_minibatch_size", "n_minibatches", "diffusion_rounds"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, name, "an integer >= 1", value)
        _check(math.isfinite(self.entropy_coef) and self.entropy_coef >= 0, "entropy_coef", "a float >= 0",
               self.entropy_coef)
        _check(self.max_grad_norm is None or (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0),
               "max_grad_norm", "None or a float > 0", self.max_grad_norm)


def diffusion_step(own: torch.Tensor, self_weight: float, messages: dict[int, torch.Tensor],
                   weights: dict[int, float]) -> torch.Tensor:
    """Eq. (F4) at one agent: W_ii omega~^i + sum_{j in N_i} W_ij omega~^j."""
    out = self_weight * own
    for j, msg in messages.items():
        out = out + weights[j] * msg
    return out


@dataclass(frozen=True)
class _Batch:
    """One agent's training data for an iteration, built once in :meth:`FDMARLAgent.prepare` (all [M, ...])."""

    obs: torch.Tensor
    own_actions: torch.Tensor
    critic_input: torch.Tensor
    view: torch.Tensor
    rewards: torch.Tensor
    targets: torch.Tensor
    advantages: torch.Tensor | None


class FDMARLAgent:
    """One networked agent: actor on o^i, critic (and reward estimate for critic="v"), optimisers, random streams,
    all private; only the consensus networks' parameters leave it (:meth:`message`)."""

    def __init__(self, owner: int, obs_dims, n_actions, settings: FDMARLSettings, *, gae: GAESettings,
                 gae_boundaries: str, hidden_sizes, activation: str, seed: np.random.SeedSequence,
                 shared_noise: torch.Generator | None = None):
        init_seq, act_seq, batch_seq = seed.spawn(3)
        torch.manual_seed(int(init_seq.generate_state(1)[0]))
        self.owner = owner
        self.shared_noise = shared_noise is not None
        self.settings, self.gae, self.gae_boundaries = settings, gae, gae_boundaries
        self.n_agents = len(obs_dims)
        self.pad_to = max(obs_dims)
        self.n_actions = list(n_actions)
        q_form = settings.critic == "q"
        actor = MultiHeadPolicy(obs_dims[owner], 1, n_actions[owner], hidden_sizes, activation)
        # The consensus networks: Q(x^i) for critic="q"; V(o^i) and the reward estimate R(x^i) for critic="v".
        consensus = {"critic": ValueNet(self.pad_to + (sum(n_actions) if q_form else 0), hidden_sizes, activation)}
        if not q_form:
            consensus["reward"] = ValueNet(self.pad_to + sum(n_actions), hidden_sizes, activation)
        self.consensus_names = tuple(consensus)
        optimizers = {f"{k}_optimizer": torch.optim.Adam(m.parameters(), lr=settings.critic_lr, eps=settings.adam_eps)
                      for k, m in consensus.items()}
        self.private = PrivateStore(
            owner,
            actor=actor,
            actor_optimizer=torch.optim.Adam(actor.parameters(), lr=settings.lr, eps=settings.adam_eps),
            **consensus,
            **optimizers,
            act_gen=torch_generator(act_seq) if shared_noise is None else shared_noise,
            batch_rng=np.random.default_rng(batch_seq),
            batch=None,
        )

    # -- acting ------------------------------------------------------------------------------------------------------
    def act(self, obs: torch.Tensor, *, greedy: bool = False) -> torch.Tensor:
        """Sample a^i ~ pi^i(. | o^i) (``greedy``: its mode): [B] int64."""
        return sample_actions(Categorical(self.private.actor(obs)[:, 0]), self.private.act_gen, self.shared_noise,
                              greedy=greedy)

    # -- network inputs ----------------------------------------------------------------------------------------------
    def view(self, obs: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        """x^i = [o^i zero-padded, onehot(a^i), onehot(a^j) for j != i in index order], obs [..., d_i], joint [..., N].

        The ego-centric order (own action first, then the others in the order o^i lists them) makes every agent's
        input the same kind of view, so one consensus function can serve them all.
        """
        order = [self.owner] + [j for j in range(self.n_agents) if j != self.owner]
        return torch.cat([self.padded(obs), *(F.one_hot(joint[..., j], self.n_actions[j]).float() for j in order)],
                         dim=-1)

    def padded(self, obs: torch.Tensor) -> torch.Tensor:
        return F.pad(obs, (0, self.pad_to - obs.shape[-1]))

    def critic_input(self, obs: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        return self.view(obs, joint) if self.settings.critic == "q" else self.padded(obs)

    def _critic(self, x: torch.Tensor) -> torch.Tensor:
        return self.private.critic(x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1])

    # -- per-iteration preparation: (F1), (F2) ---------------------------------------------------------------------
    def _inputs(self, rollout: Rollout):
        """This agent's slice of ``rollout``: (obs, reward, critic inputs at t, at the end, at the reset steps)."""
        i, joint, done = self.owner, rollout.actions, rollout.done_index
        obs = rollout.obs[i]
        x = self.critic_input(obs, joint)
        x_last = self.critic_input(rollout.last_obs[i], joint[-1])
        x_final = self.critic_input(rollout.final_obs[i], joint[done[:, 0], done[:, 1]])
        return obs, rollout.rewards[..., i], (self._critic, x, x_last, done, x_final)

    def _gae(self, rollout: Rollout, gae_args, rewards):
        return gae_targets(*gae_args, rewards, rollout.terminated, rollout.truncated, gae=self.gae,
                           boundaries=self.gae_boundaries)

    def prepare(self, rollout: Rollout) -> dict[str, float]:
        """(F1): the critic's targets from this agent's slice of ``rollout`` (its obs and reward, the joint action)."""
        obs, rewards, gae_args = self._inputs(rollout)
        _, targets, values = self._gae(rollout, gae_args, rewards)
        joint = samples(rollout.actions)
        self.private.batch = _Batch(samples(obs), joint[:, self.owner], samples(gae_args[1]),
                                    samples(self.view(obs, rollout.actions)), samples(rewards), samples(targets),
                                    None)
        ret, val = samples(targets), samples(values)
        var = float(ret.var())
        return {"explained_variance": 1.0 - float((ret - val).var()) / var if var > 0 else float("nan")}

    def set_advantages(self, rollout: Rollout) -> None:
        """(F2) with the consensus networks as they are after the critic phase (F3)-(F4)."""
        batch = self.private.batch
        if self.settings.critic == "q":  # Q at the taken joint action minus its expectation over the own policy
            with torch.no_grad():
                probs = Categorical(self.private.actor(batch.obs)[:, 0]).probs
                joint = samples(rollout.actions)
                alternatives = []
                for b in range(self.n_actions[self.owner]):
                    swapped = joint.clone()
                    swapped[:, self.owner] = b
                    alternatives.append(self._critic(self.view(batch.obs, swapped)))
                baseline = (probs * torch.stack(alternatives, dim=-1)).sum(-1)
                adv = self._critic(batch.critic_input) - baseline
        else:  # (F2v): GAE of the consensus reward estimate R(x^i) under the consensus V
            obs, rewards, gae_args = self._inputs(rollout)
            with torch.no_grad():
                team = self.private.reward(self.view(obs, rollout.actions).reshape(-1, batch.view.shape[-1]))
            adv = samples(self._gae(rollout, gae_args, team.reshape(rewards.shape))[0])
        if self.settings.advantage_norm:
            adv = standardize(adv, float(adv.mean()), float(adv.std()))
        self.private.batch = dataclasses.replace(batch, advantages=adv)

    def critic_schedule(self) -> list[torch.Tensor]:
        """Index sets of the critic phase: ``critic_epochs`` random partitions into minibatches of the set size."""
        m = self.private.batch.targets.shape[0]
        rng, s = self.private.batch_rng, self.settings
        n_batches = max(1, -(-m // s.critic_minibatch_size))
        return [torch.from_numpy(idx) for _ in range(s.critic_epochs)
                for idx in np.array_split(rng.permutation(m), n_batches)]

    def actor_schedule(self) -> list[torch.Tensor]:
        """Index sets of the actor phase: one random partition into ``n_minibatches``."""
        m = self.private.batch.targets.shape[0]
        return [torch.from_numpy(idx)
                for idx in np.array_split(self.private.batch_rng.permutation(m), self.settings.n_minibatches)]

    # -- (F3) ------------------------------------------------------------------------------------------------------
    def critic_step(self, idx: torch.Tensor) -> float:
        """One Adam step of the critic towards its targets (and of the reward estimate towards r^i): the loss."""
        p, s, batch = self.private, self.settings, self.private.batch
        critic_loss = ((self._critic(batch.critic_input[idx]) - batch.targets[idx]) ** 2).mean()
        _adam_step(p.critic_optimizer, p.critic, critic_loss, s.max_grad_norm)
        if "reward" in self.consensus_names:
            reward_loss = ((p.reward(batch.view[idx]) - batch.rewards[idx]) ** 2).mean()
            _adam_step(p.reward_optimizer, p.reward, reward_loss, s.max_grad_norm)
        return critic_loss.item()

    def actor_step(self, idx: torch.Tensor) -> tuple[float, float]:  # (F5)
        """One Adam step of the policy gradient with this agent's advantages: (actor loss, entropy)."""
        p, batch = self.private, self.private.batch
        dist = Categorical(p.actor(batch.obs[idx])[:, 0])
        actor_loss = -(batch.advantages[idx] * dist.log_prob(batch.own_actions[idx])).mean()
        entropy = dist.entropy().mean()
        _adam_step(p.actor_optimizer, p.actor, actor_loss - self.settings.entropy_coef * entropy,
                   self.settings.max_grad_norm)
        return actor_loss.item(), entropy.item()

    # -- (F4) ------------------------------------------------------------------------------------------------------
    def message(self) -> torch.Tensor:
        """omega~^i: what this agent sends to each neighbour (a copy of its consensus networks' parameters)."""
        return torch.cat([flat_params(getattr(self.private, k)).detach() for k in self.consensus_names])

    def mix(self, self_weight: float, messages: dict[int, torch.Tensor], weights: dict[int, float]) -> None:
        mixed = diffusion_step(self.message(), self_weight, messages, weights)
        for k in self.consensus_names:
            module = getattr(self.private, k)
            n = flat_params(module).numel()
            set_flat_params(module, mixed[:n])
            mixed = mixed[n:]

    def policy_kl(self, old_logits: torch.Tensor) -> float:
        with torch.no_grad():
            new = Categorical(self.private.actor(self.private.batch.obs)[:, 0])
            return float(Categorical(old_logits).kl(new).mean())

    def release(self) -> None:
        self.private.batch = None

    # -- checkpointing -----------------------------------------------------------------------------------------------
    def _stateful(self) -> list[str]:
        return ["actor", "actor_optimizer", *self.consensus_names, *(f"{k}_optimizer" for k in self.consensus_names)]

    def state_dict(self) -> dict:
        p = self.private
        out = {k: getattr(p, k).state_dict() for k in self._stateful()}
        return {**out, "act_gen": p.act_gen.get_state(), "batch_rng": p.batch_rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        p = self.private
        for k in self._stateful():
            getattr(p, k).load_state_dict(state[k])
        p.act_gen.set_state(state["act_gen"])
        p.batch_rng.bit_generator.state = state["batch_rng"]


def _adam_step(optimizer, module: nn.Module, loss: torch.Tensor, max_grad_norm: float | None) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm is not None:
        nn.utils.clip_grad_norm_(module.parameters(), max_grad_norm)
    optimizer.step()


def team_metrics(metrics: dict[str, float], critic_loss: np.ndarray, actor_stats: np.ndarray) -> None:
    """Add the team's metrics of an update to the per-agent ones in ``metrics`` (``*_agent_<i>``), given each
    agent's mean critic loss [N] and mean (actor loss, entropy) [N, 2]; also used by ``marl.distributed``."""
    n = len(critic_loss)
    metrics["value/loss"] = float(critic_loss.mean())
    metrics["value/explained_variance"] = float(np.mean(
        [metrics[f"value/explained_variance_agent_{i}"] for i in range(n)]))
    metrics["policy/loss"] = float(actor_stats[:, 0].mean())
    metrics["policy/entropy"] = float(actor_stats[:, 1].mean())
    metrics["policy/kl"] = float(np.mean([metrics[f"policy/kl_agent_{i}"] for i in range(n)]))


class FDMARL(TeamCheckpoint):
    """Fully decentralized networked actor-critic over a communication graph (module docstring for the math).

    Parameters
    ----------
    obs_dims, n_actions : per-agent observation sizes and action counts.
    settings : FDMARLSettings
    graph : networkx.Graph
        Connected graph on the agent indices ``0..N-1`` (the run's ``admm.graph``, a ring by default).
    gae : trpo_core.GAESettings
        The run's discount and lambda.
    gae_boundaries : "correct" or "ignore"
    hidden_sizes, activation : actor and critic networks (paper: 2 x 128 SELU).
    seed : int
    """

    name = "fdmarl"

    def __init__(self, obs_dims, n_actions, settings: FDMARLSettings, *, graph: nx.Graph, gae: GAESettings,
                 gae_boundaries: str, hidden_sizes=(128, 128), activation: str = "selu", seed: int = 0,
                 sampling_noise: str = "independent"):
        n = len(obs_dims)
        if set(graph.nodes) != set(range(n)):
            raise ValueError(f"graph nodes must be the agent indices 0..{n - 1}, got {list(graph.nodes)}")
        self.graph = nx.Graph()
        self.graph.add_nodes_from(range(n))  # row k of W is agent k
        self.graph.add_edges_from(graph.edges)
        self.weights = metropolis_weights(self.graph)
        self.settings = settings
        self.n_agents = n
        self.agents = [
            FDMARLAgent(i, obs_dims, n_actions, settings, gae=gae, gae_boundaries=gae_boundaries,
                        hidden_sizes=hidden_sizes, activation=activation, seed=seed_sequence(seed, 4, i),
                        # sampling_noise="shared": each agent its own copy of the common-seed generator
                        shared_noise=shared_noise_generator(seed) if sampling_noise == "shared" else None)
            for i in range(n)
        ]
        self.floats_sent = np.zeros(n)
        self.messages_sent = np.zeros(n)

    def act(self, obs: list[torch.Tensor], *, greedy: bool = False) -> torch.Tensor:
        cols = []
        for i, agent in enumerate(self.agents):
            with acting_as(i):
                cols.append(agent.act(obs[i], greedy=greedy))
        return torch.stack(cols, dim=1)

    def diffuse(self) -> None:
        """Eq. (F4) for every agent: each sends omega~ to its neighbours, then mixes what it received."""
        messages = []
        for i, agent in enumerate(self.agents):
            with acting_as(i):
                messages.append(agent.message())
            degree = self.graph.degree[i]
            self.messages_sent[i] += degree
            self.floats_sent[i] += degree * messages[i].numel()
        for i, agent in enumerate(self.agents):
            neighbours = list(self.graph.neighbors(i))
            with acting_as(i):
                agent.mix(float(self.weights[i, i]), {j: messages[j] for j in neighbours},
                          {j: float(self.weights[i, j]) for j in neighbours})

    def critic_disagreement(self) -> float:
        """max_i ||omega^i - mean_j omega^j|| / ||mean_j omega^j||: how far the consensus networks are from consensus."""
        flats = torch.stack([a.message() for a in self.agents])
        mean = flats.mean(0)
        return float((flats - mean).norm(dim=1).max() / mean.norm().clamp_min(1e-12))

    def update(self, rollout: Rollout, iteration: int) -> dict[str, float]:
        self.floats_sent[:] = 0
        self.messages_sent[:] = 0
        n = self.n_agents
        metrics: dict[str, float] = {}
        schedules, old_logits = [], []
        for i, agent in enumerate(self.agents):  # (F1)
            with acting_as(i):
                metrics[f"value/explained_variance_agent_{i}"] = agent.prepare(rollout)["explained_variance"]
                schedules.append(agent.critic_schedule())
        critic_loss = np.zeros(n)
        for step in range(len(schedules[0])):  # (F3) critic steps, each followed by (F4), in lockstep
            for i, agent in enumerate(self.agents):
                with acting_as(i):
                    critic_loss[i] += agent.critic_step(schedules[i][step])
            for _ in range(self.settings.diffusion_rounds):
                self.diffuse()
        critic_loss /= len(schedules[0])
        actor_stats = np.zeros((n, 2))
        for i, agent in enumerate(self.agents):  # (F2), then (F5) actor steps
            with acting_as(i):
                agent.set_advantages(rollout)
                with torch.no_grad():
                    old_logits = agent.private.actor(agent.private.batch.obs)[:, 0]
                schedule = agent.actor_schedule()
                for idx in schedule:
                    actor_stats[i] += agent.actor_step(idx)
                actor_stats[i] /= len(schedule)
                metrics[f"policy/kl_agent_{i}"] = agent.policy_kl(old_logits)
                agent.release()
            metrics[f"value/loss_agent_{i}"] = float(critic_loss[i])
            metrics[f"comm/floats_sent_agent_{i}"] = float(self.floats_sent[i])
        team_metrics(metrics, critic_loss, actor_stats)
        metrics["diffusion/critic_disagreement"] = self.critic_disagreement()
        metrics["comm/messages_total"] = float(self.messages_sent.sum())
        metrics["comm/floats_sent_total"] = float(self.floats_sent.sum())
        return metrics

