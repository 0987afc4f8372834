"""Shared machinery of the particle tasks: the batched engine driver and the thin PettingZoo view on it.

:class:`ParticleVectorEnv` owns the world arrays of B environments, the per-environment random streams
(:class:`marl.envs._rng.UniformPool`) and the output buffers; a task subclass supplies its arrays and kernels.
:class:`ParticleParallelEnv` is a PettingZoo ``ParallelEnv`` over one such engine with B = 1 and no auto-reset.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from marl.envs._physics import CONT_DIM, N_MOVES
from marl.envs._rng import UniformPool, base_seed_from, fresh_base_seed
from marl.envs.vector import VectorEnv

REWARD_MODES = ("private", "shared", "mpe2")
VARIANTS = ("paper", "mpe2")
BACKENDS = ("numba", "numpy")
MAX_AGENTS = 1024  # agents (and treasures) per environment: far beyond the paper's 12, short of exhausting memory
MAX_RENDER_SIZE = 4096  # frame side in pixels (a 4096^2 RGB frame is 50 MB)


def check_choice(field: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming ``field`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{field} must be one of {choices}, got {value!r}")


def check_int(field: str, value: Any, low: int, high: int | None = None) -> None:
    """Raise ``ValueError``/``TypeError`` naming ``field`` unless ``value`` is an int in [low, high]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{field} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{field} must be {rng}, got {value}")


def as_bool(field: str, value: Any) -> bool:
    """``value`` as a bool; ``TypeError`` naming ``field`` for anything but a bool (``"no"`` is not False)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{field} must be True or False, got {value!r}")
    return bool(value)


def as_real(field: str, value: Any) -> float:
    """``value`` as a float; ``TypeError`` naming ``field`` for anything but a real number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{field} must be a real number, got {value!r}")
    return float(value)


class ParticleVectorEnv(VectorEnv):
    """Batched engine of a particle task (abstract; see :class:`marl.envs.vector.VectorEnv` for the contract).

    Subclasses set ``env_name``, ``metric_names`` and ``int_metrics``, allocate their world arrays in
    ``_allocate`` and implement ``_kernel_reset``, ``_kernel_step`` and ``_state_arrays``.
    """

    env_name: ClassVar[str] = ""
    metric_names: ClassVar[tuple[str, ...]] = ()
    int_metrics: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        config: Any,
        obs_dims: list[int],
        rng_reserve: int,
        n_envs: int,
        seed: int | np.random.Generator | None,
        autoreset: bool,
        backend: str,
        parallel: bool,
    ) -> None:
        check_int("n_envs", n_envs, 1)
        check_choice("backend", backend, BACKENDS)
        self.config = config
        self.n_envs = int(n_envs)
        self.n_agents = len(obs_dims)
        self.agents = [f"agent_{i}" for i in range(self.n_agents)]
        self.obs_dims = [int(d) for d in obs_dims]
        self.continuous_actions = bool(config.continuous_actions)
        self.n_actions = None if self.continuous_actions else [N_MOVES] * self.n_agents
        self.action_dims = [CONT_DIM] * self.n_agents if self.continuous_actions else None
        self.autoreset = as_bool("autoreset", autoreset)
        self.backend = backend
        self.parallel = as_bool("parallel", parallel) and backend == "numba"
        self.observation_spaces = {
            a: spaces.Box(-np.inf, np.inf, shape=(d,), dtype=np.float32) for a, d in zip(self.agents, self.obs_dims)
        }
        self.action_spaces: dict[str, spaces.Space] = {
            a: spaces.Box(0.0, 1.0, shape=(CONT_DIM,), dtype=np.float32)
            if self.continuous_actions
            else spaces.Discrete(N_MOVES)
            for a in self.agents
        }
        self._obs_dim_arr = np.asarray(self.obs_dims, dtype=np.int64)
        self._obs_off = self.n_envs * np.concatenate([[0], np.cumsum(self._obs_dim_arr)[:-1]]).astype(np.int64)
        self._obs_size = self.n_envs * int(self._obs_dim_arr.sum())
        self._view_slices = [(int(o), int(o) + self.n_envs * d, d) for o, d in zip(self._obs_off, self.obs_dims)]
        self._pool = UniformPool(self.n_envs, rng_reserve)
        self._pending_seed = base_seed_from(seed)
        self._was_reset = False
        self._all = np.ones(self.n_envs, dtype=np.bool_)
        self._dummy_i = np.zeros((1, 1), dtype=np.int64)
        self._dummy_c = np.zeros((1, 1, CONT_DIM), dtype=np.float32)
        self._t = np.zeros(self.n_envs, dtype=np.int64)
        self._ep_ret = np.zeros((self.n_envs, self.n_agents), dtype=np.float64)
        self._ep_metrics = np.zeros((len(self.metric_names), self.n_envs), dtype=np.float64)
        self.last_obs: list[np.ndarray] | None = None
        self._allocate()
        self._cfg_i, self._cfg_f = self._kernel_config()

    # -- subclass hooks ------------------------------------------------------------------------------------------
    def _allocate(self) -> None:
        raise NotImplementedError

    def _kernel_config(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _kernel_reset(self, mask: np.ndarray, obs: np.ndarray) -> None:
        raise NotImplementedError

    def _kernel_step(self, act_i, act_c, obs, final_obs, rew, term, trunc, metrics, ep_ret_out, ep_len_out) -> int:
        raise NotImplementedError

    def _state_arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # -- public API ----------------------------------------------------------------------------------------------
    def views(self, flat: np.ndarray) -> list[np.ndarray]:
        """Split a flat observation buffer into the per-agent float32 [B, d_i] arrays (contiguous views)."""
        B = self.n_envs
        return [flat[s:e].reshape(B, d) for s, e, d in self._view_slices]

    def reset_flat(self, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """Reset every environment; return the flat observation buffer (see :meth:`views`)."""
        base = base_seed_from(seed)
        if base is None and not self._was_reset:
            base = self._pending_seed if self._pending_seed is not None else fresh_base_seed()
        if base is not None:
            self._pool.seed(base)
        else:
            self._pool.ensure()
        self._was_reset = True
        obs = np.empty(self._obs_size, dtype=np.float32)
        self._kernel_reset(self._all, obs)
        self._ep_metrics[:] = 0.0
        return obs

    def reset(self, seed: int | np.random.Generator | None = None) -> list[np.ndarray]:
        """Reset every environment (environment b from ``seed + b``); return float32 [B, d_i] per agent.

        Without a seed, a never-reset engine uses the constructor's seed, and a running one continues each
        environment's random stream.
        """
        obs = self.views(self.reset_flat(seed))
        self.last_obs = obs
        return obs

    def convert_actions(self, actions: Any) -> tuple[np.ndarray, np.ndarray]:
        """Check the type and shape of batched ``actions``; return the (int, float) arrays the kernels take."""
        B, N = self.n_envs, self.n_agents
        a = np.asarray(actions)
        if self.continuous_actions:
            if a.dtype.kind not in "fiu":
                raise TypeError(f"continuous actions must be a float array, got dtype {a.dtype}")
            if a.shape != (B, N, CONT_DIM):
                raise ValueError(
                    f"continuous actions must have shape ({B}, {N}, {CONT_DIM}) [n_envs, n_agents, action_dim], "
                    f"got {a.shape}"
                )
            return self._dummy_i, np.ascontiguousarray(a, dtype=np.float32)
        if a.dtype.kind not in "iu":
            raise TypeError(f"discrete actions must be an integer array, got dtype {a.dtype}")
        if a.shape != (B, N):
            raise ValueError(f"discrete actions must have shape ({B}, {N}) [n_envs, n_agents], got {a.shape}")
        if a.dtype == np.uint64:
            a = np.where(a > np.iinfo(np.int64).max, -1, a.astype(np.int64, casting="unsafe"))
        return np.ascontiguousarray(a, dtype=np.int64), self._dummy_c

    def bad_action_error(self, code: int, act_i: np.ndarray, act_c: np.ndarray) -> ValueError:
        """Build the error for the invalid action at flat index ``code`` = b * N + i."""
        b, i = divmod(code, self.n_agents)
        agent = self.agents[i]
        where = f" in env {b}" if self.n_envs > 1 else ""
        if self.continuous_actions:
            value = act_c[b, i]
            if not np.all(np.isfinite(value)):
                return ValueError(f"non-finite action for {agent}{where}: {value.tolist()}")
            return ValueError(
                f"action for {agent}{where} is outside Box(0, 1, ({CONT_DIM},)): {value.tolist()} "
                "(pass clip_actions=True to clip instead)"
            )
        return ValueError(
            f"invalid action for {agent}{where}: {int(act_i[b, i])}; expected an integer in [0, {N_MOVES})"
        )

    def step_flat(self, act_i: np.ndarray, act_c: np.ndarray) -> tuple[np.ndarray, ...]:
        """Advance the batch with kernel-ready actions; return the raw buffers.

        Returns
        -------
        obs, final_obs : float32 (B * sum d_i,)
            ``final_obs`` is ``obs`` itself (the same array) when no environment was reset in this step.
        rewards : float64 (B, N)
        terminated, truncated : bool (B,)
        metrics : float64 (len(metric_names), B)
        episode_return : float64 (B, N)
        episode_length : int64 (B,)
        """
        if not self._was_reset:
            raise RuntimeError("call reset() before step()")
        B, N = self.n_envs, self.n_agents
        self._pool.ensure()
        obs = np.empty(self._obs_size, dtype=np.float32)
        final_obs = np.empty(self._obs_size, dtype=np.float32)
        rew = np.empty((B, N), dtype=np.float64)
        term = np.empty(B, dtype=np.bool_)
        trunc = np.empty(B, dtype=np.bool_)
        metrics = np.empty((len(self.metric_names), B), dtype=np.float64)
        ep_ret_out = np.empty((B, N), dtype=np.float64)
        ep_len_out = np.empty(B, dtype=np.int64)
        code = self._kernel_step(act_i, act_c, obs, final_obs, rew, term, trunc, metrics, ep_ret_out, ep_len_out)
        if code >= 0:
            raise self.bad_action_error(code, act_i, act_c)
        # The kernels write final_obs only for environments they reset; elsewhere it is obs itself.
        if not self.autoreset:
            final_obs = obs
        else:
            done = term | trunc
            if not done.any():
                final_obs = obs
            elif not done.all():
                keep = ~done
                for src, dst in zip(self.views(obs), self.views(final_obs)):
                    dst[keep] = src[keep]
        return obs, final_obs, rew, term, trunc, metrics, ep_ret_out, ep_len_out

    def step(self, actions: Any) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every environment one step and auto-reset the finished ones (see :class:`VectorEnv`).

        Raises
        ------
        TypeError, ValueError
            For actions of the wrong dtype or shape, and (naming the agent) for an action outside the action
            space or a non-finite continuous action. Nothing is changed when an error is raised.
        """
        act_i, act_c = self.convert_actions(actions)
        obs, final_obs, rew, term, trunc, metrics, ep_ret, ep_len = self.step_flat(act_i, act_c)
        info: dict[str, Any] = {"final_obs": self.views(final_obs), "episode_return": ep_ret, "episode_length": ep_len}
        self._ep_metrics += metrics
        ep_metrics = self._ep_metrics.copy()
        if self.autoreset:
            self._ep_metrics[:, term | trunc] = 0.0
        for j, name in enumerate(self.metric_names):
            if name in self.int_metrics:
                info[name] = metrics[j].astype(np.int64)
                info[f"episode_{name}"] = ep_metrics[j].astype(np.int64)
            else:
                info[name] = metrics[j]
                info[f"episode_{name}"] = ep_metrics[j]
        views = self.views(obs)
        self.last_obs = views
        return views, rew.astype(np.float32), term, trunc, info

    def set_max_cycles(self, max_cycles: int) -> None:
        """Change the episode length of every environment (running episodes keep their step counters)."""
        check_int("max_cycles", max_cycles, 1)
        self.config = dataclasses.replace(self.config, max_cycles=int(max_cycles))
        self._cfg_i, self._cfg_f = self._kernel_config()

    def state_dict(self) -> dict[str, Any]:
        """Return copies of every world array, the episode counters, the random streams and the config."""
        return {
            "env_name": self.env_name,
            "config": dataclasses.asdict(self.config),
            "n_envs": self.n_envs,
            "was_reset": self._was_reset,
            "pending_seed": self._pending_seed,
            "arrays": {k: v.copy() for k, v in {**self._state_arrays(), "ep_metrics": self._ep_metrics}.items()},
            "rng": self._pool.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; raises ``ValueError`` if it belongs to another task or config."""
        if state.get("env_name") != self.env_name:
            raise ValueError(f"state is for {state.get('env_name')!r}, this is {self.env_name!r}")
        missing = [k for k in ("config", "n_envs", "arrays", "rng", "was_reset", "pending_seed") if k not in state]
        if missing:
            raise ValueError(f"state lacks {missing}")
        mine = dataclasses.asdict(self.config)
        if state["config"] != mine or state["n_envs"] != self.n_envs:
            raise ValueError(f"state config {state['config']} (n_envs={state['n_envs']}) does not match {mine} "
                             f"(n_envs={self.n_envs})")
        arrays = {**self._state_arrays(), "ep_metrics": self._ep_metrics}
        for k, v in state["arrays"].items():
            if k not in arrays:
                raise ValueError(f"unknown state array {k!r}")
            arrays[k][...] = v
        self._pool.load_state_dict(state["rng"])
        self._was_reset = bool(state["was_reset"])
        self._pending_seed = state["pending_seed"]


class ParticleParallelEnv(ParallelEnv):
    """PettingZoo ParallelEnv view of a :class:`ParticleVectorEnv` with one environment and no auto-reset.

    After the last step of an episode ``agents`` is empty; call ``reset`` to start the next one (without a seed
    it continues the environment's random stream).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "name": "",
        "render_modes": ["rgb_array"],
        "is_parallelizable": True,
        "render_fps": 10,
    }

    def __init__(self, core: ParticleVectorEnv, render_mode: str | None, render_size: int) -> None:
        if render_mode is not None:
            check_choice("render_mode", render_mode, ("rgb_array",))
        check_int("render_size", render_size, 16, MAX_RENDER_SIZE)
        self.core = core
        self.render_mode = render_mode
        self.render_size = int(render_size)
        self.possible_agents = list(core.agents)
        self.agents: list[str] = []
        self._obs_spaces = core.observation_spaces
        self._act_spaces = core.action_spaces
        self.state_space = spaces.Box(-np.inf, np.inf, shape=(int(sum(core.obs_dims)),), dtype=np.float32)
        self._slices = []
        off = 0
        for d in core.obs_dims:
            self._slices.append((off, off + d))
            off += d
        self._last = np.zeros(off, dtype=np.float32)
        self._continuous = core.continuous_actions
        self._act_i = np.zeros((1, core.n_agents), dtype=np.int64)
        self._act_c = np.zeros((1, core.n_agents, CONT_DIM), dtype=np.float32)
        self._metric_pairs = [(name, name in core.int_metrics) for name in core.metric_names]

    # spaces must be the same objects on every call (PettingZoo API test)
    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self._act_spaces[agent]

    @property
    def max_cycles(self) -> int:
        """Episode length; settable (pettingzoo's ``parallel_api_test`` sets it)."""
        return int(self.core.config.max_cycles)

    @max_cycles.setter
    def max_cycles(self, value: int) -> None:
        self.core.set_max_cycles(value)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        obs = self.core.reset_flat(seed)
        self._last = obs
        self.agents = self.possible_agents[:]
        return {a: obs[s:e] for a, (s, e) in zip(self.agents, self._slices)}, {a: {} for a in self.agents}

    def _actions_to_arrays(self, actions: dict) -> None:
        if not isinstance(actions, Mapping):
            raise TypeError(f"actions must be a dict {{agent: action}}, got {type(actions).__name__}")
        agents = self.possible_agents
        if len(actions) != len(agents):
            unknown = sorted(set(actions) - set(agents), key=str)
            if unknown:
                raise ValueError(f"actions given for unknown agents {unknown}")
        for i, agent in enumerate(agents):
            try:
                a = actions[agent]
            except KeyError:
                raise ValueError(f"missing action for {agent}") from None
            if self._continuous:
                try:
                    arr = np.asarray(a)
                except (TypeError, ValueError) as err:
                    raise TypeError(f"action for {agent} must be a float vector of length {CONT_DIM}: {err}") from None
                if arr.dtype.kind not in "fiu":  # as the batched env: no bool, complex, object or string actions
                    raise TypeError(f"action for {agent} must be a real float vector of length {CONT_DIM}, "
                                    f"got dtype {arr.dtype}")
                if arr.shape != (CONT_DIM,):
                    raise ValueError(f"action for {agent} must have shape ({CONT_DIM},), got {arr.shape}")
                self._act_c[0, i] = arr
            else:
                if isinstance(a, (bool, np.bool_)):  # as the batched env, which rejects bool arrays
                    raise TypeError(f"action for {agent} must be an integer, got {a!r}")
                try:
                    v = operator.index(a)
                except TypeError:
                    raise TypeError(f"action for {agent} must be an integer, got {a!r}") from None
                if not 0 <= v < N_MOVES:
                    raise ValueError(f"invalid action for {agent}: {v}; expected an integer in [0, {N_MOVES})")
                self._act_i[0, i] = v

    def step(self, actions: dict) -> tuple[dict, dict, dict, dict, dict]:
        if not self.core._was_reset:
            raise RuntimeError("call reset() before the first step()")
        if not self.agents:
            if actions:
                raise RuntimeError("the episode is over; call reset() before step()")
            return {}, {}, {}, {}, {}
        self._actions_to_arrays(actions)
        obs, _, rew, term, trunc, metrics, _, _ = self.core.step_flat(self._act_i, self._act_c)
        self._last = obs
        agents = self.agents
        observations = {a: obs[s:e] for a, (s, e) in zip(agents, self._slices)}
        rewards = dict(zip(agents, rew[0].tolist()))
        done_term = bool(term[0])
        done_trunc = bool(trunc[0])
        terminations = dict.fromkeys(agents, done_term)
        truncations = dict.fromkeys(agents, done_trunc)
        values = metrics[:, 0].tolist()
        base = {name: (int(v) if is_int else v) for (name, is_int), v in zip(self._metric_pairs, values)}
        infos = {a: dict(base) for a in agents}
        if done_term or done_trunc:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def state(self) -> np.ndarray:
        """Return the concatenated observations of all agents (as mpe2 does)."""
        return self._last.copy()

    def render(self) -> np.ndarray | None:
        """Return the current frame as uint8 [H, W, 3] when ``render_mode="rgb_array"``."""
        if self.render_mode is None:
            gymnasium.logger.warn("You are calling render method without specifying any render mode.")
            return None
        return self._render_frame()

    def _render_frame(self) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass
