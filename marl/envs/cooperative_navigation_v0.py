r"""Cooperative Navigation (the MATRPO paper's modified ``simple_spread``), batched and PettingZoo-conformant.

N agents must cover N landmarks while avoiding each other (Li & He, MATRPO, §VI-B, Table I). Two views share
one physics core: :class:`CooperativeNavigationVectorEnv` (B environments, arrays, auto-reset; what training
loops use) and :func:`parallel_env` / :func:`env` (PettingZoo Parallel / AEC, a thin B = 1 view).

Symbols
-------
=====================  ===============  ====================================================================
symbol                 code             meaning
=====================  ===============  ====================================================================
N                      ``n_agents``     agents = landmarks (paper: 3 and 6)
p_i, v_i               ``pos, vel``     agent position and velocity, R^2
l_j                    ``lm``           landmark position, R^2 (immobile, no collisions)
D                      coverage         :math:`\sum_j \min_i \lVert p_i - l_j\rVert` (sum over landmarks)
C_i                    collisions       :math:`\#\{k \ne i : \lVert p_i - p_k\rVert < 0.3\}` (a count)
rho                    ``local_ratio``  mpe2's weight of the local term
=====================  ===============  ====================================================================

Dynamics (MPE: dt = 0.1, damping 0.25, agent size 0.15, mass 1, sensitivity 5, no speed limit, no walls)
--------------------------------------------------------------------------------------------------------
1. Control force :math:`u_i = 5\,d_i`. Discrete actions: 0 no-op, 1 :math:`d=(-1,0)`, 2 :math:`(+1,0)`,
   3 :math:`(0,-1)`, 4 :math:`(0,+1)`. Continuous actions (``continuous_actions=True``): Box(0, 1, (5,)) in mpe2's
   layout, :math:`d = (a_2 - a_1,\ a_4 - a_3)`; out-of-box values are clipped (``clip_actions=True``, like mpe2's
   ``ClipOutOfBoundsWrapper``) or rejected.
2. Contact force between agents a, c with :math:`\Delta = p_a - p_c`:
   :math:`f = 100\,\frac{\Delta}{\lVert\Delta\rVert}\,k\log(1 + e^{-(\lVert\Delta\rVert - 0.3)/k})`, k = 1e-3;
   a gets +f, c gets -f.
3. Integration, ``variant="paper"`` (openai MPE, the authors' fork):
   :math:`v \leftarrow 0.75 v + F\,dt,\ p \leftarrow p + v\,dt`.
   ``variant="mpe2"`` (mpe2 >= 1.0): :math:`p \leftarrow p + v\,dt` first, then the velocity update.
4. Reset: :math:`p_i, l_j \sim U(-1, 1)^2`, :math:`v_i = 0`. Episodes are truncated after ``max_cycles`` steps
   (paper: 100); there is no terminal state.

Observation of agent i (float32, 4 + 2N + 2(N-1) entries: 14 for N = 3, 26 for N = 6), as in Table I:
:math:`[v_i,\ p_i,\ (l_j - p_i)_{j=0..N-1},\ (p_k - p_i)_{k \ne i}]`.

Rewards (computed after the physics step)
-----------------------------------------
* ``"private"`` (the paper's, as the authors' code computes it): :math:`r_0 = -D - C_0`,
  :math:`r_i = -C_i` for i >= 1. Only agent 0 sees the coverage term; everyone pays for collisions.
* ``"shared"``: everyone gets the team sum of the private rewards, :math:`r_i = -D - \sum_k C_k`.
* ``"mpe2"``: mpe2's ``local_ratio`` convention, :math:`r_i = -(1-\rho) D - \rho C_i` (rho = 0.5 by default).

Per-step ``infos`` (convention-free): ``coverage_distance`` D, ``collisions`` (number of colliding agent pairs
this step, :math:`\tfrac12\sum_i C_i`) and ``occupied_landmarks`` (landmarks with an agent within 0.1).

Departures from the paper (and why)
-----------------------------------
* Table I writes agent 1's coverage term as :math:`-\min_{i,j} d(ag_i, lm_j)` and the collision term as an
  indicator. The authors' code (hepengli/multiagent-particle-envs, ``scenarios/simple_spread.py``) uses the
  sum over landmarks of the minimum agent distance, D, and the count C_i. We follow the code, which produced the
  paper's curves. Paper "agent 1" is our ``agent_0``.
* The authors' C-TRPO runs used a variant that appends the other agents' velocities to every observation and
  gives the team reward to agent 0; it is not provided (``reward_mode="shared"`` gives the team reward to all).

Differences from mpe2 ``simple_spread_v3`` (all deliberate)
-----------------------------------------------------------
* mpe2 appends 2(N-1) communication entries that are always zero (18 entries for N = 3); we drop them, as the
  paper does. Our observation equals mpe2's first 4 + 2N + 2(N-1) entries.
* mpe2 integrates position before velocity; the paper's MPE does the reverse. ``variant="mpe2"`` reproduces
  mpe2, ``variant="paper"`` (default) the paper.
* mpe2's default horizon is 25 and its default reward is ``local_ratio``-mixed; ours are 100 and ``"private"``.
* With ``reward_mode="mpe2"`` and ``variant="mpe2"`` observations (first 14 entries) and rewards agree with
  ``simple_spread_v3`` from the same world state and actions (tested to 1e-6 over whole episodes), and
  ``reset(seed=s)`` even draws mpe2's initial state for ``reset(seed=s)``.
* If two agent centres coincide exactly, mpe2's contact force is NaN; ours is zero.

Randomness: environment b of a batch is seeded from ``seed + b``; a single environment equals environment b of a
batch when seeded with ``seed + b``. See :mod:`marl.envs._rng`.

References
----------
.. [1] P. Li and H. He, "Multi-Agent Trust Region Policy Optimization", §VI-B, Table I.
.. [2] R. Lowe et al., "Multi-Agent Actor-Critic for Mixed Cooperative-Competitive Environments", NeurIPS 2017.

Examples
--------
>>> from marl.envs import cooperative_navigation_v0
>>> env = cooperative_navigation_v0.parallel_env(n_agents=3)
>>> obs, infos = env.reset(seed=0)
>>> obs["agent_0"].shape
(14,)
>>> obs, rew, term, trunc, infos = env.step({a: 0 for a in env.agents})
>>> sorted(infos["agent_0"])
['collisions', 'coverage_distance', 'occupied_landmarks']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pettingzoo.utils.conversions import parallel_to_aec

from marl.envs import _navigation_kernels as K
from marl.envs._engine import (
    MAX_AGENTS,
    as_bool,
    as_real,
    REWARD_MODES,
    VARIANTS,
    ParticleParallelEnv,
    ParticleVectorEnv,
    check_choice,
    check_int,
)
from marl.envs.rendering import draw_frame

__all__ = [
    "CooperativeNavigationConfig",
    "CooperativeNavigationVectorEnv",
    "CooperativeNavigationEnv",
    "parallel_env",
    "env",
]

NAME = "cooperative_navigation_v0"


@dataclass(frozen=True)
class CooperativeNavigationConfig:
    """Validated options of Cooperative Navigation (defaults: the paper's N = 3 setting)."""

    n_agents: int = 3  # N agents = N landmarks, >= 2 (paper: 3, 6)
    reward_mode: str = "private"  # "private" (paper), "shared" (team sum), "mpe2" (local_ratio mix)
    local_ratio: float = 0.5  # rho in [0, 1]; only used by reward_mode="mpe2"
    max_cycles: int = 100  # episode length T >= 1 (paper: 100)
    continuous_actions: bool = False  # Box(0, 1, (5,)) instead of Discrete(5)
    clip_actions: bool = True  # continuous actions outside [0, 1] are clipped (True) or rejected (False)
    variant: str = "paper"  # integration order: "paper" (velocity first) or "mpe2" (position first)

    def __post_init__(self) -> None:
        check_int("n_agents", self.n_agents, 2, MAX_AGENTS)
        check_choice("reward_mode", self.reward_mode, REWARD_MODES)
        if not 0.0 <= float(self.local_ratio) <= 1.0:
            raise ValueError(f"local_ratio must be in [0, 1], got {self.local_ratio}")
        check_int("max_cycles", self.max_cycles, 1)
        check_choice("variant", self.variant, VARIANTS)

    @property
    def obs_dim(self) -> int:
        """Observation length 4 + 2N + 2(N-1)."""
        return K.obs_dim(self.n_agents)


class CooperativeNavigationVectorEnv(ParticleVectorEnv):
    """B Cooperative Navigation environments stepped by one fused kernel (see the module docstring).

    Parameters
    ----------
    n_envs : int
        Batch size B.
    n_agents, reward_mode, local_ratio, max_cycles, continuous_actions, clip_actions, variant
        See :class:`CooperativeNavigationConfig`.
    seed : int, numpy Generator or None
        Used by the first unseeded ``reset()``; environment b gets ``seed + b``.
    autoreset : bool
        Reset finished environments inside ``step`` (the PettingZoo view turns this off).
    backend : {"numba", "numpy"}
        The Numba kernels or their plain-NumPy twins (slow; for reading and tests).
    parallel : bool
        Spread environments over Numba's threads (``prange``). Off by default: the serial kernel already does
        millions of env-steps per second, and idle OpenMP threads spinning after each call can slow down a
        PyTorch learner sharing the cores (and forking after threads started is unsafe).

    Examples
    --------
    >>> venv = CooperativeNavigationVectorEnv(n_envs=2, n_agents=3, seed=0)
    >>> [o.shape for o in venv.reset()]
    [(2, 14), (2, 14), (2, 14)]
    """

    env_name: ClassVar[str] = NAME
    metric_names: ClassVar[tuple[str, ...]] = ("coverage_distance", "collisions", "occupied_landmarks")
    int_metrics: ClassVar[frozenset[str]] = frozenset({"collisions", "occupied_landmarks"})

    def __init__(
        self,
        n_envs: int = 1,
        n_agents: int = 3,
        reward_mode: str = "private",
        local_ratio: float = 0.5,
        max_cycles: int = 100,
        continuous_actions: bool = False,
        clip_actions: bool = True,
        variant: str = "paper",
        seed: int | np.random.Generator | None = None,
        autoreset: bool = True,
        backend: str = "numba",
        parallel: bool = False,
    ) -> None:
        config = CooperativeNavigationConfig(
            n_agents=n_agents,
            reward_mode=reward_mode,
            local_ratio=as_real("local_ratio", local_ratio),
            max_cycles=max_cycles,
            continuous_actions=as_bool("continuous_actions", continuous_actions),
            clip_actions=as_bool("clip_actions", clip_actions),
            variant=variant,
        )
        super().__init__(
            config,
            [config.obs_dim] * n_agents,
            K.rng_reserve(n_agents),
            n_envs,
            seed,
            autoreset,
            backend,
            parallel,
        )

    def _allocate(self) -> None:
        B, N = self.n_envs, self.n_agents
        self.pos = np.zeros((B, N, 2))
        self.vel = np.zeros((B, N, 2))
        self.landmarks = np.zeros((B, N, 2))
        self._force = np.zeros((B, N, 2))
        if self.backend == "numpy":
            self._reset_fn = K.nav_reset_numpy
            self._step_fn = K.nav_step_numpy
        else:
            self._reset_fn = K.nav_reset
            self._step_fn = K.nav_step_parallel if self.parallel else K.nav_step

    def _kernel_config(self) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        cfg_i = np.array(
            [
                int(c.continuous_actions),
                int(c.clip_actions),
                VARIANTS.index(c.variant),
                REWARD_MODES.index(c.reward_mode),
                c.max_cycles,
                int(self.autoreset),
            ],
            dtype=np.int64,
        )
        return cfg_i, np.array([c.local_ratio], dtype=np.float64)

    def _kernel_reset(self, mask: np.ndarray, obs: np.ndarray) -> None:
        self._reset_fn(mask, self.pos, self.vel, self.landmarks, self._t, self._ep_ret, self._pool.buf,
                       self._pool.ptr, obs, self._obs_off, self._obs_dim_arr)

    def _kernel_step(self, act_i, act_c, obs, final_obs, rew, term, trunc, metrics, ep_ret_out, ep_len_out) -> int:
        return self._step_fn(self.pos, self.vel, self.landmarks, self._t, self._ep_ret, act_i, act_c, self._cfg_i,
                             self._cfg_f, self._pool.buf, self._pool.ptr, self._force, obs, final_obs, self._obs_off,
                             self._obs_dim_arr, rew, term, trunc, metrics, ep_ret_out, ep_len_out)

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"pos": self.pos, "vel": self.vel, "landmarks": self.landmarks, "t": self._t, "ep_ret": self._ep_ret}


class CooperativeNavigationEnv(ParticleParallelEnv):
    """PettingZoo ParallelEnv of Cooperative Navigation (agent ids ``agent_0`` ...); see the module docstring.

    Keyword arguments are those of :class:`CooperativeNavigationConfig`, plus ``render_mode`` (``None`` or
    ``"rgb_array"``) and ``render_size`` (frame side in pixels). The world state lives in ``self.core``
    (a :class:`CooperativeNavigationVectorEnv` with one environment): ``core.pos[0]``, ``core.vel[0]``,
    ``core.landmarks[0]``.
    """

    metadata: ClassVar[dict[str, Any]] = {**ParticleParallelEnv.metadata, "name": NAME}

    def __init__(self, render_mode: str | None = None, render_size: int = 400, **kwargs: Any) -> None:
        core = CooperativeNavigationVectorEnv(n_envs=1, autoreset=False, parallel=False, **kwargs)
        super().__init__(core, render_mode, render_size)

    def _render_frame(self) -> np.ndarray:
        c = self.core
        n = c.n_agents
        # landmarks on top of agents (as mpe2 draws them), so that covered landmarks stay visible
        circles = [(c.pos[0, i], K.AGENT_SIZE, (89, 89, 217)) for i in range(n)]
        circles += [(c.landmarks[0, j], K.LANDMARK_SIZE, (64, 64, 64)) for j in range(n)]
        labels = [(c.pos[0, i] + (0.0, 0.09), str(i)) for i in range(n)]
        return draw_frame(circles, self.render_size, labels=labels)


def parallel_env(**kwargs: Any) -> CooperativeNavigationEnv:
    """Return a PettingZoo ParallelEnv of Cooperative Navigation (keyword arguments: see the class)."""
    return CooperativeNavigationEnv(**kwargs)


def env(**kwargs: Any):
    """Return the AEC version (``pettingzoo.utils.conversions.parallel_to_aec`` of :func:`parallel_env`)."""
    return parallel_to_aec(parallel_env(**kwargs))
