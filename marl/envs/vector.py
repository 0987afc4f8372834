"""The batched multi-agent interface the training loops use, and an adapter for any PettingZoo ParallelEnv.

A :class:`VectorEnv` runs ``n_envs`` copies of one multi-agent task in lock step. Per agent ``i`` everything is an
array with a leading batch axis:

==========================  =================================  ==============================================
call / attribute            type, shape                        meaning
==========================  =================================  ==============================================
``agents``                  list[str]                          ``["agent_0", ...]``
``obs_dims``                list[int]                          observation length d_i per agent (may differ)
``n_actions``               list[int] or None                  discrete: number of actions per agent
``action_dims``             list[int] or None                  continuous: action vector length per agent
``reset(seed)``             list of float32 [B, d_i]           first observations
``step(actions)``           obs, rewards, terminated,          actions: int [B, N] (discrete) or
                            truncated, info                    float [B, N, a] (continuous);
                                                               rewards float32 [B, N]; terminated,
                                                               truncated bool [B]
``state_dict()``            dict                               full state for bit-identical resumption
==========================  =================================  ==============================================

Auto-reset: an environment whose episode ended in ``step`` is reset inside the same call. The returned ``obs``
then holds the first observation of its new episode, and ``info["final_obs"]`` (a list per agent of [B, d_i])
holds the last observation of the episode that ended. For environments that did not end, ``final_obs`` equals
``obs``, so ``info["final_obs"]`` is always "the observation this transition led to" (the one to bootstrap from
on truncation). ``info["episode_return"]`` [B, N] and ``info["episode_length"]`` [B] are the finished episode's
totals where ``terminated | truncated``, and the running totals elsewhere. The particle tasks also put their
per-step metrics in ``info`` as [B] arrays (e.g. ``coverage_distance``, ``collisions``) together with their
episode sums ``episode_<metric>`` (finished totals where done, running totals elsewhere).

``last_obs`` always holds the observations returned by the latest ``reset`` or ``step``.

Seeding: ``reset(seed=s)`` seeds environment ``b`` from ``s + b`` (Gymnasium's vector convention), so the batch
equals ``n_envs`` single environments seeded ``s, s + 1, ...``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from marl.envs._rng import base_seed_from, fresh_base_seed

__all__ = ["VectorEnv", "PettingZooVectorAdapter"]


class VectorEnv(abc.ABC):
    """Abstract batched multi-agent environment (see the module docstring for the contract).

    Attributes
    ----------
    n_envs : int
        Batch size B.
    n_agents : int
        Number of agents N.
    agents : list of str
        Agent ids, ``agent_0`` ... ``agent_{N-1}``.
    obs_dims : list of int
        Observation length per agent.
    n_actions : list of int or None
        Number of discrete actions per agent (``None`` for continuous actions).
    action_dims : list of int or None
        Continuous action length per agent (``None`` for discrete actions).
    continuous_actions : bool
        Whether ``step`` expects float actions [B, N, a].
    observation_spaces, action_spaces : dict
        Single-environment Gymnasium spaces per agent id.
    """

    n_envs: int
    n_agents: int
    agents: list[str]
    obs_dims: list[int]
    n_actions: list[int] | None
    action_dims: list[int] | None
    continuous_actions: bool
    observation_spaces: dict[str, spaces.Space]
    action_spaces: dict[str, spaces.Space]

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> list[np.ndarray]:
        """Reset every environment; return the first observations (list per agent of float32 [B, d_i])."""

    @abc.abstractmethod
    def step(
        self, actions: Any
    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every environment one step; return ``obs, rewards, terminated, truncated, info``."""

    def state_dict(self) -> dict[str, Any]:
        """Return the full state (world, counters, RNG) so that a run can resume bit-identically."""
        raise NotImplementedError(f"{type(self).__name__} cannot save its state")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state returned by :meth:`state_dict`."""
        raise NotImplementedError(f"{type(self).__name__} cannot load a state")

    def close(self) -> None:
        """Release resources (nothing to do for in-process environments)."""

    def sample_actions(self, rng: np.random.Generator) -> np.ndarray:
        """Return uniformly random actions for every environment and agent, shaped for :meth:`step`.

        Continuous actions are sampled uniformly from each agent's Box.
        """
        if self.continuous_actions:
            assert self.action_dims is not None
            dim = max(self.action_dims)
            low = np.zeros((self.n_agents, dim), dtype=np.float32)
            high = np.zeros((self.n_agents, dim), dtype=np.float32)
            for i, agent in enumerate(self.agents):
                box = self.action_spaces[agent]
                low[i, : box.shape[0]] = box.low
                high[i, : box.shape[0]] = box.high
            u = rng.random((self.n_envs, self.n_agents, dim), dtype=np.float32)
            return low + (high - low) * u
        assert self.n_actions is not None
        return rng.integers(0, np.asarray(self.n_actions), size=(self.n_envs, self.n_agents))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_envs={self.n_envs}, n_agents={self.n_agents})"


class PettingZooVectorAdapter(VectorEnv):
    """Present any PettingZoo ``ParallelEnv`` through the :class:`VectorEnv` interface.

    The environments are stepped one after the other in this process. An environment's episode ends when it has
    no agents left (or every agent is terminated or truncated); it is then reset without a seed, so it continues
    its own random stream (with ``resumable=True``: with that episode's own seed, see below). ``terminated[b]`` is
    true when any agent was terminated at the end, ``truncated[b]`` when the episode ended otherwise. Agents that
    leave before the others get zero observations and rewards until the episode ends, and their actions are not
    passed on.

    Parameters
    ----------
    env_fns : callable or sequence of callables
        A factory returning a ParallelEnv (called ``n_envs`` times), or one factory per environment.
    n_envs : int, optional
        Number of environments; required with a single factory, inferred from a sequence.
    seed : int, numpy Generator or None
        Used by the first ``reset()`` that gets no seed: environment b is reset with ``seed + b``.
    resumable : bool
        Make :meth:`state_dict` / :meth:`load_state_dict` work, by replay. Episode k >= 1 of environment b is then
        reset with its own seed :meth:`episode_seed` (base, b, k) instead of continuing the environment's random
        stream, and the actions of each running episode are kept; loading a state resets every environment with
        its episode's seed and replays those actions. This restores the exact state of any environment whose
        episode is determined by its reset seed and the actions taken (the PettingZoo convention: randomness from
        ``reset(seed)``'s generator); one that is not is detected (its replayed observation differs from the saved
        one) and refused. Off by default, which keeps the plain behaviour above.

    Notes
    -----
    Observations are flattened to float32 vectors. Discrete action spaces must be ``Discrete`` and continuous ones
    ``Box``; all agents must share the kind. Without ``resumable``, ``state_dict`` is not supported (third-party
    environments do not expose their full state).

    Examples
    --------
    >>> from mpe2 import simple_spread_v3  # doctest: +SKIP
    >>> venv = PettingZooVectorAdapter(lambda: simple_spread_v3.parallel_env(N=3), n_envs=2, seed=0)  # doctest: +SKIP
    >>> [o.shape for o in venv.reset()]  # doctest: +SKIP
    [(2, 18), (2, 18), (2, 18)]
    """

    def __init__(
        self,
        env_fns: Callable[[], Any] | Sequence[Callable[[], Any]],
        n_envs: int | None = None,
        seed: int | np.random.Generator | None = None,
        resumable: bool = False,
    ) -> None:
        if callable(env_fns):
            if n_envs is None:
                raise ValueError("n_envs is required when env_fns is a single factory")
            fns = [env_fns] * int(n_envs)
        else:
            fns = list(env_fns)
            if n_envs is not None and n_envs != len(fns):
                raise ValueError(f"n_envs={n_envs} but {len(fns)} factories were given")
        if not fns:
            raise ValueError("n_envs must be >= 1")
        self.envs = [fn() for fn in fns]
        self.n_envs = len(self.envs)
        first = self.envs[0]
        self.agents = list(first.possible_agents)
        self.n_agents = len(self.agents)
        self.observation_spaces = {a: first.observation_space(a) for a in self.agents}
        self.action_spaces = {a: first.action_space(a) for a in self.agents}
        kinds = {type(s) for s in self.action_spaces.values()}
        if kinds == {spaces.Discrete}:
            self.continuous_actions = False
            self.n_actions = [int(self.action_spaces[a].n) for a in self.agents]
            self.action_dims = None
        elif kinds == {spaces.Box}:
            self.continuous_actions = True
            self.n_actions = None
            self.action_dims = [int(np.prod(self.action_spaces[a].shape)) for a in self.agents]
        else:
            raise TypeError(f"all agents need Discrete or all Box action spaces, got {kinds}")
        self.obs_dims = [int(np.prod(self.observation_spaces[a].shape)) for a in self.agents]
        self._index = {a: i for i, a in enumerate(self.agents)}
        self._ep_ret = np.zeros((self.n_envs, self.n_agents))
        self._ep_len = np.zeros(self.n_envs, dtype=np.int64)
        self._live: list[list[str]] = [[] for _ in range(self.n_envs)]
        self._pending_seed = base_seed_from(seed)
        self._was_reset = False
        self.last_obs: list[np.ndarray] | None = None
        self.resumable = bool(resumable)
        self._base: int | None = None  # resumable: the base seed of the latest seeded reset
        self._episode = np.zeros(self.n_envs, dtype=np.int64)  # resumable: episodes begun since then, minus one
        self._actions: list[list[np.ndarray]] = [[] for _ in range(self.n_envs)]  # resumable: this episode's actions

    @staticmethod
    def episode_seed(base: int, env: int, episode: int) -> int:
        """The reset seed of episode ``episode`` of environment ``env`` in resumable mode: ``base + env`` for the
        first (Gymnasium's vector convention, as for the paper's tasks), then a 32-bit draw of
        ``numpy.random.SeedSequence([base, env, episode])``, so that later episodes do not repeat one another, nor
        those of a run with a nearby base seed (as ``base + env + n_envs * episode`` would)."""
        if episode == 0:
            return base + env
        return int(np.random.SeedSequence([base, env, episode]).generate_state(1, np.uint32)[0])

    def _fill(self, out: list[np.ndarray], b: int, obs: dict[str, Any]) -> None:
        for i, agent in enumerate(self.agents):
            if agent in obs:
                out[i][b] = np.asarray(obs[agent], dtype=np.float32).reshape(-1)
            else:
                out[i][b] = 0.0

    def reset(self, seed: int | np.random.Generator | None = None) -> list[np.ndarray]:
        """Reset every environment (environment b with ``seed + b``); return the first observations."""
        base = base_seed_from(seed)
        if base is None and not self._was_reset:
            base = self._pending_seed
        if base is None and self.resumable:
            base = fresh_base_seed()  # every episode needs a known seed to be replayed
        self._was_reset = True
        out = [np.zeros((self.n_envs, d), dtype=np.float32) for d in self.obs_dims]
        for b, env in enumerate(self.envs):
            obs, _ = env.reset(seed=None if base is None else base + b)
            self._live[b] = list(env.agents)
            self._fill(out, b, obs)
        self._ep_ret[:] = 0.0
        self._ep_len[:] = 0
        self._base = base
        self._episode[:] = 0
        self._actions = [[] for _ in range(self.n_envs)]
        self.last_obs = out
        return out

    def _agent_action(self, actions: np.ndarray, b: int, i: int) -> Any:
        agent = self.agents[i]
        if self.continuous_actions:
            assert self.action_dims is not None
            a = actions[b, i, : self.action_dims[i]]
            if not np.all(np.isfinite(a)):
                raise ValueError(f"non-finite action for {agent} in env {b}: {a}")
            return a.reshape(self.action_spaces[agent].shape).astype(self.action_spaces[agent].dtype)
        a = int(actions[b, i])
        assert self.n_actions is not None
        if not 0 <= a < self.n_actions[i]:
            raise ValueError(
                f"invalid action for {agent} in env {b}: {a}; expected an integer in [0, {self.n_actions[i]})"
            )
        return a

    def _checked_actions(self, actions: Any) -> np.ndarray:
        acts = np.asarray(actions)
        if self.continuous_actions:
            assert self.action_dims is not None
            want: tuple[int, ...] = (self.n_envs, self.n_agents, max(self.action_dims))
        else:
            want = (self.n_envs, self.n_agents)
            if acts.dtype.kind not in "iu":
                raise TypeError(f"discrete actions must be integers, got dtype {acts.dtype}")
        if acts.shape != want:
            raise ValueError(f"actions must have shape {want}, got {acts.shape}")
        return acts

    def step(self, actions: Any) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every environment with ``actions`` (int [B, N] or float [B, N, a]); see :class:`VectorEnv`."""
        if not self._was_reset:
            raise RuntimeError("call reset() before step()")
        acts = self._checked_actions(actions)
        # validate everything before touching any environment
        per_env = [
            {self.agents[i]: self._agent_action(acts, b, i) for i in range(self.n_agents)} for b in range(self.n_envs)
        ]
        obs_out = [np.zeros((self.n_envs, d), dtype=np.float32) for d in self.obs_dims]
        final = [np.zeros((self.n_envs, d), dtype=np.float32) for d in self.obs_dims]
        rewards = np.zeros((self.n_envs, self.n_agents), dtype=np.float32)
        terminated = np.zeros(self.n_envs, dtype=bool)
        truncated = np.zeros(self.n_envs, dtype=bool)
        ep_ret_out = np.zeros((self.n_envs, self.n_agents))
        ep_len_out = np.zeros(self.n_envs, dtype=np.int64)
        agent_infos: list[dict[str, Any]] = []
        for b, env in enumerate(self.envs):
            live = self._live[b]
            obs, rew, term, trunc, infos = env.step({a: per_env[b][a] for a in live})
            agent_infos.append(infos)
            for agent, r in rew.items():
                rewards[b, self._index[agent]] = r
            self._fill(final, b, obs)
            self._ep_ret[b] += rewards[b]
            self._ep_len[b] += 1
            ep_ret_out[b] = self._ep_ret[b]
            ep_len_out[b] = self._ep_len[b]
            self._live[b] = list(env.agents)
            ended = not env.agents or all(term.get(a, False) or trunc.get(a, False) for a in live)
            if ended:
                terminated[b] = any(bool(term.get(a, False)) for a in live)
                truncated[b] = not terminated[b]
                new_seed = None
                if self.resumable:
                    assert self._base is not None
                    self._episode[b] += 1
                    self._actions[b] = []
                    new_seed = self.episode_seed(self._base, b, int(self._episode[b]))
                new_obs, _ = env.reset(seed=new_seed)
                self._live[b] = list(env.agents)
                self._fill(obs_out, b, new_obs)
                self._ep_ret[b] = 0.0
                self._ep_len[b] = 0
            else:
                if self.resumable:
                    self._actions[b].append(acts[b].copy())
                for i in range(self.n_agents):
                    obs_out[i][b] = final[i][b]
        info = {
            "final_obs": final,
            "episode_return": ep_ret_out,
            "episode_length": ep_len_out,
            "agent_infos": agent_infos,
        }
        self.last_obs = obs_out
        return obs_out, rewards, terminated, truncated, info

    def state_dict(self) -> dict[str, Any]:
        """Return what :meth:`load_state_dict` replays: per environment its episode's seed and actions so far, the
        episode counters and the latest observations (resumable mode only)."""
        if not self.resumable:
            raise NotImplementedError(
                "PettingZooVectorAdapter cannot save the state of third-party environments; "
                "construct it with resumable=True to save and restore it by replay"
            )
        dtype = np.float64 if self.continuous_actions else np.int64
        return {
            "adapter": "PettingZooVectorAdapter",
            "n_envs": self.n_envs,
            "agents": list(self.agents),
            "was_reset": self._was_reset,
            "pending_seed": self._pending_seed,
            "base": self._base,
            "episode": self._episode.copy(),
            # None for an episode without actions yet (an empty array would not load as plain data)
            "actions": [np.asarray(a, dtype=dtype) if a else None for a in self._actions],
            "episode_return": self._ep_ret.copy(),
            "episode_length": self._ep_len.copy(),
            "last_obs": None if self.last_obs is None else [o.copy() for o in self.last_obs],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output by resetting each environment with its episode's seed and replaying
        the episode's actions.

        Raises
        ------
        ValueError
            For a state of another adapter (batch size, agents), and when an environment's replayed observation
            differs from the saved one (the environment is not determined by its seed and actions, so it cannot be
            restored).
        """
        if not self.resumable:
            raise NotImplementedError("construct the adapter with resumable=True to load a state")
        if state.get("adapter") != "PettingZooVectorAdapter":
            raise ValueError(f"state is not a PettingZooVectorAdapter state (keys {sorted(state)})")
        if state["n_envs"] != self.n_envs or list(state["agents"]) != self.agents:
            raise ValueError(f"state of {state['n_envs']} environments with agents {list(state['agents'])} does not "
                             f"match this adapter ({self.n_envs} environments, agents {self.agents})")
        self._pending_seed = state["pending_seed"]
        self._was_reset = bool(state["was_reset"])
        self._base = state["base"]
        self._episode = np.asarray(state["episode"], dtype=np.int64).copy()
        self._ep_ret = np.asarray(state["episode_return"], dtype=np.float64).copy()
        self._ep_len = np.asarray(state["episode_length"], dtype=np.int64).copy()
        self._actions = [[] if a is None else [row.copy() for row in np.asarray(a)] for a in state["actions"]]
        if not self._was_reset:
            self.last_obs = None
            return
        out = [np.zeros((self.n_envs, d), dtype=np.float32) for d in self.obs_dims]
        for b, env in enumerate(self.envs):
            obs, _ = env.reset(seed=self.episode_seed(self._base, b, int(self._episode[b])))
            for row in self._actions[b]:
                acts = row[None]
                obs = env.step({a: self._agent_action(acts, 0, self._index[a]) for a in env.agents})[0]
            self._live[b] = list(env.agents)
            self._fill(out, b, obs)
        saved = state["last_obs"]
        for i, agent in enumerate(self.agents):
            bad = np.flatnonzero(np.any(out[i] != np.asarray(saved[i]), axis=1))
            if bad.size:
                raise ValueError(
                    f"environment {int(bad[0])} does not reproduce its saved observation of {agent} when its episode "
                    "is replayed from its seed and actions: it is not determined by them (e.g. it draws from a "
                    "global random generator), so its state cannot be restored"
                )
        self.last_obs = out

    def close(self) -> None:
        """Close every wrapped environment."""
        for env in self.envs:
            env.close()
