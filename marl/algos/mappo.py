r"""MAPPO: PPO with decentralized actors and a centralized critic (Yu et al. 2022, "The Surprising Effectiveness of
PPO in Cooperative Multi-Agent Games"; marlbenchmark/on-policy, marl-reference.md §2).

The MATRPO paper's centralized-training baseline (§VI-A): actors act on their own observations; one critic sees the
global state and the team reward during training.

Symbols
-------
==========  ==========================  ============  ===================================================
symbol      code                        shape         meaning
==========  ==========================  ============  ===================================================
s_m         ``state``                   [M, D]        global state: all agents' observations concatenated
o^i_m       ``obs``                     [n_k, M, d]   agent i's observation (+ its one-hot id when sharing)
r_m         ``team``                    [T, B]        team reward, sum_i r^i (the ``env/return`` convention)
V_phi       ``critic``                  [M]           centralized value, output in normalised units
mu, sigma   ``ValueNorm``                             running mean / std of the returns (value normalisation)
A_m         ``adv``                     [M]           GAE advantage of the team reward (shared by all agents)
rho^i_m     ``ratio``                   [n_k, M]      pi_theta(a^i|o^i) / pi_old(a^i|o^i)
epsilon     ``settings.clip``                         PPO ratio clip
==========  ==========================  ============  ===================================================

One outer iteration on a rollout of T steps x B environments (M = T B env-steps, env-major sample order):

(P1)  V_m = sigma * V_phi(s_m) + mu,  A, R = GAE(r, V; gamma, lambda)    (trpo_core.compute_gae, team reward)
(P2)  update (mu, sigma) with R; targets R~ = (R - mu) / sigma          (value normalisation, ValueNorm)
(P3)  A <- (A - mean A) / (std A + 1e-8)                                (advantage normalisation)
(P4)  for K epochs, for each minibatch of env-steps (a random partition of the M steps):
        L_pi(theta) = -mean_{i,m} min(rho^i_m A_m, clip(rho^i_m, 1-eps, 1+eps) A_m) - c_H mean_{i,m} H(pi(.|o^i_m))
        L_V(phi)    = mean_m max(l(R~_m - V_phi(s_m)), l(R~_m - V^clip_m)),
                      V^clip_m = V_old(s_m) + clip(V_phi(s_m) - V_old(s_m), -eps_V, eps_V),
                      l = Huber(delta) or squared error
        one Adam step on each (gradient norm clipped), actors and critic separately.

Parameter sharing: actors are grouped by agent kind, i.e. by (observation size, action count): all agents in
Navigation, hunters with hunters and banks with banks in Treasure Collection. One network per kind takes
[o^i, onehot(index of i within its kind)]; with ``share_parameters=False`` every agent has its own network and no id.

Defaults are MAPPO's own MPE script (``train_mpe_spread.sh`` and ``config.py``, reference §2.3): lr 7e-4 for both,
Adam eps 1e-5, clip 0.2, value clip 0.2, 10 epochs, entropy 0.01, value-loss coefficient 1, gradient norm 10, Huber
delta 10, value normalisation, advantage normalisation, shared policy, and its network ("mappo": input LayerNorm,
two hidden layers of 64 Tanh units each followed by LayerNorm, orthogonal init, policy output gain 0.01). The network
every method of the MATRPO paper uses (the config's ``hidden_sizes`` / ``activation``, 2 x 128 SELU) is
``network = "paper"``.

Departures, each with its reason:

- Batch. MAPPO's script collects 128 threads x 25 steps = 3,200 env-steps per update and trains on one minibatch.
  Here every method shares the paper's 10,000-step iteration (10 envs x 1,000 steps, 100-step episodes), and the
  default ``n_minibatches = 3`` keeps MAPPO's minibatch size (3,333 env-steps) and its number of gradient steps per
  env-step (10 epochs per 3,200 steps).
- Horizon, discount and GAE boundaries are the run's (``gamma`` 0.995, ``gae_lambda`` 0.95, ``gae_boundaries``),
  the same for every method in a comparison; MAPPO's MPE runs use gamma 0.99 with 25-step episodes.
- Feed-forward actor and critic (MAPPO's ``mappo``, not the recurrent ``rmappo`` the script selects): the MATRPO
  paper's networks are feed-forward, and the Navigation observation is Markov up to the other agents' intentions.
- The critic: one network on the global state. MAPPO's separated runner (``share_parameters=False``) keeps one
  critic per agent, but all of them get the same input and the same target and estimate the same function.
- ValueNorm (beta = 0.99999, debiased, var >= 1e-2, as on-policy's ``ValueNorm``) is updated once per iteration
  with the batch's returns; MAPPO updates it on every minibatch of every epoch, which with beta this close to 1
  only counts each batch K times, i.e. gives the same near-uniform average over all batches seen so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trpo_core import Categorical, GAESettings, compute_gae

from ..networks import mlp_trunk
from ..rollout import Rollout, next_values
from .batch import samples, standardize
from .seeding import seed_sequence, shared_noise_generator, torch_generator

NETWORKS = ("mappo", "paper")


def _check(ok: bool, name: str, rule: str, value) -> None:
    if not ok:
        raise ValueError(f"mappo.{name} must be {rule}, got {value!r}")


@dataclass(frozen=True)
class MAPPOSettings:
    """MAPPO's hyperparameters (defaults: on-policy's MPE script, marl-reference.md §2.3)."""

    lr: float = 7e-4  # actor Adam step size (--lr); > 0
    critic_lr: float = 7e-4  # critic Adam step size (--critic_lr); > 0
    adam_eps: float = 1e-5  # Adam epsilon (--opti_eps); > 0
    clip: float = 0.2  # epsilon: ratio clip of the PPO objective (--clip_param); > 0
    value_clip: float | None = 0.2  # eps_V: clip of V around its old prediction (use_clipped_value_loss); None: off
    epochs: int = 10  # K: passes over the batch per iteration (--ppo_epoch); >= 1
    n_minibatches: int = 3  # minibatches per pass (see the module docstring); >= 1
    entropy_coef: float = 0.01  # c_H (--entropy_coef); >= 0
    value_loss_coef: float = 1.0  # weight of L_V (--value_loss_coef); > 0
    max_grad_norm: float | None = 10.0  # gradient-norm clip per Adam step (--max_grad_norm); None: off
    huber_delta: float | None = 10.0  # Huber delta of the value loss (--huber_delta); None: squared error
    value_norm: bool = True  # running mean/std normalisation of the value targets (--use_valuenorm)
    advantage_norm: bool = True  # standardise A over the batch (--use_advnorm)
    share_parameters: bool = True  # one actor per agent kind (--share_policy)
    agent_id: bool = True  # append the agent's one-hot id within its kind to a shared actor's input
    network: str = "mappo"  # "mappo" (2 x 64 Tanh + LayerNorm) or "paper" (the config's hidden_sizes/activation)

    def __post_init__(self) -> None:
        for name in ("lr", "critic_lr", "adam_eps", "clip", "value_loss_coef"):
            value = getattr(self, name)
            _check(isinstance(value, (int, float)) and math.isfinite(value) and value > 0, name, "a float > 0",
                   value)
        for name in ("value_clip", "max_grad_norm", "huber_delta"):
            value = getattr(self, name)
            _check(value is None or (math.isfinite(value) and value > 0), name, "None or a float > 0", value)
        _check(math.isfinite(self.entropy_coef) and self.entropy_coef >= 0, "entropy_coef", "a float >= 0",
               self.entropy_coef)
        _check(isinstance(self.epochs, int) and self.epochs >= 1, "epochs", "an integer >= 1", self.epochs)
        _check(isinstance(self.n_minibatches, int) and self.n_minibatches >= 1, "n_minibatches", "an integer >= 1",
               self.n_minibatches)
        _check(self.network in NETWORKS, "network", f"one of {NETWORKS}", self.network)


# -- losses (P4) ---------------------------------------------------------------------------------------------------
def ppo_policy_loss(logp: torch.Tensor, logp_old: torch.Tensor, adv: torch.Tensor, clip: float):
    """(clipped surrogate loss, fraction of clipped ratios): -mean min(rho A, clip(rho, 1-eps, 1+eps) A), eq. (P4)."""
    ratio = torch.exp(logp - logp_old)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv)
    clipped = ((ratio - 1.0).abs() > clip).float().mean()
    return -surrogate.mean(), clipped


def ppo_value_loss(pred: torch.Tensor, old_pred: torch.Tensor, target: torch.Tensor, clip: float | None,
                   huber_delta: float | None) -> torch.Tensor:
    """MAPPO's value loss, eq. (P4): mean max(l(R - V), l(R - V_clip)), or mean l(R - V) when ``clip`` is None."""

    def loss(err: torch.Tensor) -> torch.Tensor:
        if huber_delta is None:
            return 0.5 * err**2
        a = err.abs()
        return torch.where(a <= huber_delta, 0.5 * err**2, huber_delta * (a - 0.5 * huber_delta))

    original = loss(target - pred)
    if clip is None:
        return original.mean()
    clipped = old_pred + (pred - old_pred).clamp(-clip, clip)
    return torch.maximum(original, loss(target - clipped)).mean()


class ValueNorm:
    """Running mean and variance of the value targets (on-policy's ``ValueNorm``: debiased EMA, beta 0.99999)."""

    def __init__(self, beta: float = 0.99999, epsilon: float = 1e-5, min_var: float = 1e-2):
        self.beta, self.epsilon, self.min_var = beta, epsilon, min_var
        self.mean = torch.zeros((), dtype=torch.float64)
        self.mean_sq = torch.zeros((), dtype=torch.float64)
        self.debias = torch.zeros((), dtype=torch.float64)

    def update(self, x: torch.Tensor) -> None:
        x = x.double()
        self.mean = self.beta * self.mean + (1 - self.beta) * x.mean()
        self.mean_sq = self.beta * self.mean_sq + (1 - self.beta) * (x**2).mean()
        self.debias = self.beta * self.debias + (1 - self.beta)

    def stats(self) -> tuple[float, float]:
        """(mu, sigma)."""
        d = max(float(self.debias), self.epsilon)
        mean = float(self.mean) / d
        return mean, math.sqrt(max(float(self.mean_sq) / d - mean * mean, self.min_var))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.stats()
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.stats()
        return x * std + mean

    def state_dict(self) -> dict:
        return {"mean": self.mean, "mean_sq": self.mean_sq, "debias": self.debias}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.mean_sq, self.debias = state["mean"], state["mean_sq"], state["debias"]


class _Identity:
    def update(self, x):
        pass

    def normalize(self, x):
        return x

    def denormalize(self, x):
        return x

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Tanh(nn.Module):
    """tanh(x) computed as 2 sigmoid(2x) - 1: the same function (to float rounding), about 4x faster than torch.tanh
    on this project's CPUs (measured: 2.5 ms against 11 ms for a [10000, 64] float32 tensor, one thread); absolute
    error below 2e-7 in float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * torch.sigmoid(2.0 * x) - 1.0


def make_network(in_dim: int, out_dim: int, out_gain: float, network: str, hidden_sizes, activation) -> nn.Module:
    """MAPPO's MLP ("mappo": LayerNorm(in), [Linear, Tanh, LayerNorm] x 2 of 64) or the paper's trunk, + output."""
    if network == "mappo":
        layers: list[nn.Module] = [nn.LayerNorm(in_dim)]
        prev = in_dim
        for width in (64, 64):
            linear = nn.Linear(prev, width)
            nn.init.orthogonal_(linear.weight, gain=nn.init.calculate_gain("tanh"))
            nn.init.zeros_(linear.bias)
            layers += [linear, Tanh(), nn.LayerNorm(width)]
            prev = width
    else:
        layers = [mlp_trunk(in_dim, tuple(hidden_sizes), activation)]
        prev = hidden_sizes[-1]
    out = nn.Linear(prev, out_dim)
    nn.init.orthogonal_(out.weight, gain=out_gain)
    nn.init.zeros_(out.bias)
    return nn.Sequential(*layers, out)


def gae_targets(value_fn, obs, last_obs, done_index, final_obs, rewards, terminated, truncated, *,
                gae: GAESettings, boundaries: str):
    """(advantages, returns, values), each [T, B]: GAE of ``rewards`` with the state value ``value_fn``, eq. (P1).

    ``boundaries`` is the run's ``gae_boundaries``: "correct" cuts the trace at termination and bootstraps V(final
    observation) at truncation; "ignore" runs the trace straight through resets (the original MATRPO code).
    """
    t, b = rewards.shape
    with torch.no_grad():
        values = value_fn(obs.reshape(t * b, -1)).reshape(t, b)
        if boundaries == "ignore":
            nxt = next_values(value_fn, obs, last_obs, done_index[:0], final_obs[:0], values)
            terminated, truncated = torch.zeros_like(terminated), torch.zeros_like(truncated)
        else:
            nxt = next_values(value_fn, obs, last_obs, done_index, final_obs, values)
        adv, ret = compute_gae(rewards, values, nxt, terminated, truncated, gamma=gae.gamma, lam=gae.lam)
    return adv, ret, values


def agent_kinds(obs_dims, n_actions, share: bool) -> list[list[int]]:
    """Groups of agent indices that share an actor: equal (observation size, action count), in first-seen order."""
    if not share:
        return [[i] for i in range(len(obs_dims))]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(zip(obs_dims, n_actions)):
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _explained_variance(returns: torch.Tensor, values: torch.Tensor) -> float:
    var = float(returns.var())
    return 1.0 - float((returns - values).var()) / var if var > 0 else float("nan")


class MAPPO:
    """MAPPO with one centralized critic on the global state (see the module docstring for the math).

    Parameters
    ----------
    obs_dims, n_actions : per-agent observation sizes and action counts.
    settings : MAPPOSettings
    gae : trpo_core.GAESettings
        The run's discount and GAE lambda.
    gae_boundaries : "correct" or "ignore"
    hidden_sizes, activation : the network of ``settings.network = "paper"``.
    seed : int
        Run seed: network initialisation, action sampling and minibatch order derive from it.
    """

    name = "mappo"

    def __init__(self, obs_dims, n_actions, settings: MAPPOSettings, *, gae: GAESettings, gae_boundaries: str,
                 hidden_sizes=(128, 128), activation: str = "selu", seed: int = 0,
                 sampling_noise: str = "independent"):
        self.settings = settings
        self.gae = gae
        self.gae_boundaries = gae_boundaries
        self.n_agents = len(obs_dims)
        self.kinds = agent_kinds(obs_dims, n_actions, settings.share_parameters)
        self.with_id = settings.share_parameters and settings.agent_id
        init_seq, act_seq, batch_seq = seed_sequence(seed, 3).spawn(3)
        torch.manual_seed(int(init_seq.generate_state(1)[0]))
        net = dict(network=settings.network, hidden_sizes=hidden_sizes, activation=activation)
        self.actors = nn.ModuleList(
            make_network(obs_dims[k[0]] + (len(k) if self.with_id else 0), n_actions[k[0]], 0.01, **net)
            for k in self.kinds
        )
        self.critic = make_network(int(sum(obs_dims)), 1, 1.0, **net)
        self.actor_optimizers = [torch.optim.Adam(a.parameters(), lr=settings.lr, eps=settings.adam_eps)
                                 for a in self.actors]
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=settings.critic_lr,
                                                 eps=settings.adam_eps)
        self.value_norm = ValueNorm() if settings.value_norm else _Identity()
        # sampling_noise="shared": one uniform draw per step, used by every agent (marl.config.TrainConfig).
        self.shared_noise = sampling_noise == "shared"
        self.act_gen = shared_noise_generator(seed) if self.shared_noise else torch_generator(act_seq)
        self.batch_rng = np.random.default_rng(batch_seq)

    # -- acting ------------------------------------------------------------------------------------------------------
    def _actor_input(self, kind: int, obs: list[torch.Tensor]) -> torch.Tensor:
        """[n_k, *batch, d (+ n_k)]: the kind's observations stacked, with their one-hot ids when sharing."""
        members = self.kinds[kind]
        x = torch.stack([obs[i] for i in members])
        if not self.with_id:
            return x
        ids = torch.eye(len(members)).reshape(len(members), *([1] * (x.dim() - 2)), len(members))
        return torch.cat([x, ids.expand(*x.shape[:-1], len(members))], dim=-1)

    def _logits(self, kind: int, x: torch.Tensor) -> torch.Tensor:
        return self.actors[kind](x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)

    def act(self, obs: list[torch.Tensor], *, greedy: bool = False) -> torch.Tensor:
        """Sample every agent's action from its actor on its own observation (``greedy``: take its mode, drawing
        nothing from the action generator): joint action [B, n_agents]."""
        out = torch.empty(obs[0].shape[0], self.n_agents, dtype=torch.long)
        dists = [Categorical(self._logits(k, self._actor_input(k, obs))) for k in range(len(self.kinds))]
        if greedy:
            for members, dist in zip(self.kinds, dists):
                out[:, members] = dist.mode().T
            return out
        if self.shared_noise:  # one draw [B, A] per step for every agent of every kind
            width = max(d.logits.shape[-1] for d in dists)
            u = torch.rand(obs[0].shape[0], width, generator=self.act_gen)
        for members, dist in zip(self.kinds, dists):
            if self.shared_noise:
                a = dist.sample_gumbel(u[:, :dist.logits.shape[-1]].expand_as(dist.logits).contiguous())
            else:
                a = dist.sample(self.act_gen)  # [n_k, B]
            out[:, members] = a.T
        return out

    # -- one outer iteration -----------------------------------------------------------------------------------------
    def _value(self, state: torch.Tensor) -> torch.Tensor:
        return self.value_norm.denormalize(self.critic(state).squeeze(-1))

    def update(self, rollout: Rollout, iteration: int) -> dict[str, float]:
        s = self.settings
        state = torch.cat(rollout.obs, dim=-1)
        adv, ret, values = gae_targets(
            self._value, state, torch.cat(rollout.last_obs, -1), rollout.done_index, torch.cat(rollout.final_obs, -1),
            rollout.rewards.sum(-1), rollout.terminated, rollout.truncated, gae=self.gae,
            boundaries=self.gae_boundaries,
        )  # (P1)
        state, adv, ret, values = samples(state), samples(adv), samples(ret), samples(values)
        self.value_norm.update(ret)  # (P2)
        target = self.value_norm.normalize(ret).float()
        with torch.no_grad():
            old_pred = self.critic(state).squeeze(-1)
        if s.advantage_norm:
            adv = standardize(adv, float(adv.mean()), float(adv.std()))  # (P3)
        # Per kind: inputs [n_k, M, d'], actions [n_k, M], log pi_old [n_k, M].
        obs_s = [samples(o) for o in rollout.obs]
        actions = samples(rollout.actions)
        kind_obs = [self._actor_input(k, obs_s) for k in range(len(self.kinds))]
        kind_act = [actions[:, members].T for members in self.kinds]
        with torch.no_grad():
            old_dist = [Categorical(self._logits(k, x)) for k, x in enumerate(kind_obs)]
            kind_logp_old = [d.log_prob(a) for d, a in zip(old_dist, kind_act)]

        m = state.shape[0]
        stats = {"policy_loss": [], "entropy": [], "clip_fraction": [], "value_loss": [], "actor_grad_norm": [],
                 "critic_grad_norm": []}
        for _ in range(s.epochs):  # (P4)
            for idx in np.array_split(self.batch_rng.permutation(m), s.n_minibatches):
                idx = torch.from_numpy(idx)
                pred = self.critic(state[idx]).squeeze(-1)
                v_loss = ppo_value_loss(pred, old_pred[idx], target[idx], s.value_clip, s.huber_delta)
                stats["value_loss"].append(v_loss.item())
                stats["critic_grad_norm"].append(
                    self._step(self.critic_optimizer, self.critic, s.value_loss_coef * v_loss))
                for k, actor in enumerate(self.actors):
                    dist = Categorical(self._logits(k, kind_obs[k][:, idx]))
                    loss, clipped = ppo_policy_loss(dist.log_prob(kind_act[k][:, idx]), kind_logp_old[k][:, idx],
                                                    adv[idx].expand(len(self.kinds[k]), -1), s.clip)
                    entropy = dist.entropy().mean()
                    stats["actor_grad_norm"].append(
                        self._step(self.actor_optimizers[k], actor, loss - s.entropy_coef * entropy))
                    stats["policy_loss"].append(loss.item())
                    stats["entropy"].append(entropy.item())
                    stats["clip_fraction"].append(float(clipped))
        with torch.no_grad():
            kl = [float(d.kl(Categorical(self._logits(k, kind_obs[k]))).mean()) for k, d in enumerate(old_dist)]
        metrics = {f"ppo/{key}": float(np.mean(v)) for key, v in stats.items() if key != "value_loss"}
        metrics["policy/kl"] = float(np.mean(kl))
        metrics["value/loss"] = float(np.mean(stats["value_loss"]))
        metrics["value/explained_variance"] = _explained_variance(ret, values)
        return metrics

    def _step(self, optimizer: torch.optim.Optimizer, module: nn.Module, loss: torch.Tensor) -> float:
        """One Adam step on ``loss`` with the gradient norm clipped; returns the norm before clipping."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.settings.max_grad_norm
        norm = nn.utils.clip_grad_norm_(module.parameters(), max_norm if max_norm is not None else math.inf)
        optimizer.step()
        return float(norm)

    # -- checkpointing -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "actors": self.actors.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_optimizers": [o.state_dict() for o in self.actor_optimizers],
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "value_norm": self.value_norm.state_dict(),
            "act_gen": self.act_gen.get_state(),
            "batch_rng": self.batch_rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.actors.load_state_dict(state["actors"])
        self.critic.load_state_dict(state["critic"])
        for o, sd in zip(self.actor_optimizers, state["actor_optimizers"]):
            o.load_state_dict(sd)
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.value_norm.load_state_dict(state["value_norm"])
        self.act_gen.set_state(state["act_gen"])
        self.batch_rng.bit_generator.state = state["batch_rng"]

