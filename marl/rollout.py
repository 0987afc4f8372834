"""On-policy rollouts from a batched environment (``marl.envs.VectorEnv``).

A rollout of T steps over B environment copies is stored as [T, B, ...]. The updates flatten it env-major
(``marl.algos.batch.samples``: sample ``m = b * T + t``, the original code's order), the same for every agent, so
per-sample consensus variables line up across agents (matrpo-reference-code.md §11: "the samples must stay aligned
across agents").

What belongs to whom: agent i's *private* data are ``obs[i]``, ``rewards[..., i]`` and everything derived from them
(values, advantages); the joint action ``actions`` is the one piece of global information the paper allows (§IV-D).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch


@dataclass
class Rollout:
    """T steps x B environments of experience.

    Attributes
    ----------
    obs : list of Tensor [T, B, obs_dim_i] (float32), one per agent.
    last_obs : list of Tensor [B, obs_dim_i]: observations after the last step (for bootstrapping).
    actions : Tensor [T, B, n_agents] (int64), or [T, B, n_agents, dim] (float32, continuous): the joint action.
    rewards : Tensor [T, B, n_agents] (float32): each agent's own reward.
    terminated, truncated : Tensor [T, B] (bool).
    done_index : LongTensor [K, 2]: (t, b) of every step after which the environment was reset.
    final_obs : list of Tensor [K, obs_dim_i]: the true next observation at those steps.
    episodes : per finished episode: ``return`` [n_agents], ``length`` and the environment's convention-free metrics,
        named by :func:`episode_metric_names` (``collisions_episode_sum``, ``collisions_last_step`` ...).
    """

    obs: list[torch.Tensor]
    last_obs: list[torch.Tensor]
    actions: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    done_index: torch.Tensor
    final_obs: list[torch.Tensor]
    episodes: list[dict] = field(default_factory=list)

    @property
    def n_steps(self) -> int:
        return self.actions.shape[0]

    @property
    def n_envs(self) -> int:
        return self.actions.shape[1]


def collect_rollout(
    venv,
    act: Callable[[list[torch.Tensor]], torch.Tensor],
    obs: list[np.ndarray],
    n_steps: int,
) -> tuple[Rollout, list[np.ndarray]]:
    """Run ``n_steps`` joint steps; return the rollout and the observations to continue from.

    Parameters
    ----------
    venv : VectorEnv (auto-resetting, see ``marl.envs``).
    act : maps the per-agent observation tensors ``[B, obs_dim_i]`` to joint actions ``[B, n_agents]`` (int64).
    obs : the current observations (from ``venv.reset`` or a previous rollout).
    n_steps : T.
    """
    n_agents = venv.n_agents
    obs_buf = [[] for _ in range(n_agents)]
    act_buf, rew_buf, term_buf, trunc_buf = [], [], [], []
    done_idx: list[tuple[int, int]] = []
    final_buf = [[] for _ in range(n_agents)]
    episodes: list[dict] = []
    metric_names: dict[str, str] | None = None
    for t in range(n_steps):
        obs_t = [torch.from_numpy(np.ascontiguousarray(o, dtype=np.float32)) for o in obs]
        with torch.no_grad():
            actions = act(obs_t)
        actions_np = actions.numpy()
        obs, rewards, terminated, truncated, info = venv.step(actions_np)
        for i in range(n_agents):
            obs_buf[i].append(obs_t[i])
        act_buf.append(actions)
        rew_buf.append(torch.from_numpy(np.asarray(rewards, dtype=np.float32)))
        term_buf.append(torch.from_numpy(np.asarray(terminated, dtype=bool)))
        trunc_buf.append(torch.from_numpy(np.asarray(truncated, dtype=bool)))
        done = np.logical_or(terminated, truncated)
        if done.any():
            envs = np.flatnonzero(done)
            final = info["final_obs"]
            for i in range(n_agents):
                final_buf[i].append(torch.from_numpy(np.asarray(final[i][envs], dtype=np.float32)))
            done_idx.extend((t, int(b)) for b in envs)
            if metric_names is None:
                metric_names = episode_metric_names([k for k, v in info.items()
                                                     if _is_per_env_metric(k, v, done.shape[0])])
            for b in envs:
                ep = {"return": np.asarray(info["episode_return"][b], dtype=np.float64).copy()}
                ep["length"] = int(info["episode_length"][b])
                for k, name in metric_names.items():
                    ep[name] = float(np.asarray(info[k])[b])
                episodes.append(ep)
    rollout = Rollout(
        obs=[torch.stack(o) for o in obs_buf],
        last_obs=[torch.from_numpy(np.ascontiguousarray(o, dtype=np.float32)) for o in obs],
        actions=torch.stack(act_buf),
        rewards=torch.stack(rew_buf),
        terminated=torch.stack(term_buf),
        truncated=torch.stack(trunc_buf),
        done_index=torch.tensor(done_idx, dtype=torch.long).reshape(-1, 2),
        final_obs=[torch.cat(f) if f else torch.zeros(0, o.shape[-1]) for f, o in zip(final_buf, obs)],
        episodes=episodes,
    )
    return rollout, obs


def episode_metric_names(keys: list[str]) -> dict[str, str]:
    """The name a finished episode's record gives each per-environment ``info`` metric, saying what it holds.

    A VectorEnv's ``info`` holds per-step metrics ``m`` and their running episode sums ``episode_m``. At the step that
    ends an episode, ``m`` is the value of that last step only (e.g. the collisions of step 100) and ``episode_m`` is
    the sum over the episode. They are recorded as ``m_last_step`` and ``m_episode_sum``, so that neither can be
    read as the other (``env/collisions_episode_sum`` in metrics.csv is the episode total, the figure that
    ``python -m marl table`` reports).

    >>> episode_metric_names(["collisions", "episode_collisions"])
    {'collisions': 'collisions_last_step', 'episode_collisions': 'collisions_episode_sum'}
    """
    names = {}
    for key in keys:
        base = key.removeprefix("episode_")
        names[key] = f"{base}_episode_sum" if base != key and base in keys else f"{key}_last_step"
    return names


def _is_per_env_metric(key: str, value, n_envs: int) -> bool:
    if key in ("final_obs", "episode_return", "episode_length"):
        return False
    arr = np.asarray(value) if not isinstance(value, list) else None
    return arr is not None and arr.shape == (n_envs,) and np.issubdtype(arr.dtype, np.number)


def next_values(
    value_fn: Callable[[torch.Tensor], torch.Tensor],
    obs: torch.Tensor,
    last_obs: torch.Tensor,
    done_index: torch.Tensor,
    final_obs: torch.Tensor,
    values: torch.Tensor,
) -> torch.Tensor:
    """V(o_{t+1}) for every step: the next stored observation, or the true final one where the env was reset.

    ``values`` is V(obs) [T, B]; returns [T, B].
    """
    nxt = torch.empty_like(values)
    nxt[:-1] = values[1:]
    nxt[-1] = value_fn(last_obs)
    if done_index.numel():
        nxt[done_index[:, 0], done_index[:, 1]] = value_fn(final_obs)
    return nxt


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
