r"""Cooperative Treasure Collection (the MATRPO paper's "collector" task), batched and PettingZoo-conformant.

H treasure hunters and K banks (Li & He, MATRPO, §VI-B, Table II; adapted there from MAAC's
``fullobs_collect_treasure``). Hunters pick up treasures by touching them and deliver them by touching the bank
of the treasure's colour (type). Collected treasures re-spawn at random. Two views share one physics core:
:class:`TreasureCollectionVectorEnv` (B environments, arrays, auto-reset) and :func:`parallel_env` / :func:`env`
(PettingZoo Parallel / AEC, a thin B = 1 view).

Team composition (``n_agents`` total): the paper's 8 = 6 hunters + 2 banks and 12 = 10 hunters + 2 banks; in
general ``n_banks = 2`` and ``n_hunters = n_agents - 2`` unless given. Agents ``agent_0 .. agent_{H-1}`` are
hunters, ``agent_H .. agent_{N-1}`` banks; bank ``agent_{H+k}`` accepts type k. There are ``n_treasures = H``
treasures (default) of K types.

Symbols
-------
==========================  =================  ==============================================================
symbol                      code               meaning
==========================  =================  ==============================================================
p_i, v_i                    ``pos, vel``       agent position / velocity
h_c                         ``hold``           type held by hunter c (-1: empty)
x_t, k_t                    ``tpos, ttype``    treasure position and type; ``talive`` marks present ones
C_c                         collisions         #{other hunters c' : |p_c - p_c'| < 0.1}
S_c                         shaping            empty: distance to the nearest present treasure (0 if none);
                                               holding: distance to the nearest bank of the held type
D_d                         shaping            distance to the nearest hunter holding type d; if none, to the
                                               hunters' centroid
n_col, n_dep                events             collections and deliveries counted this step (see variants)
==========================  =================  ==============================================================

Bodies: hunters radius 0.05, mass 1; banks radius 0.075, mass 2.25; treasures radius 0.025 (no physics);
all agents accel 1.5, max speed 1.0; dt 0.1, damping 0.25; no walls.

Dynamics, ``variant="paper"`` (default: the authors' ``collector.py`` on ``new_core``, i.e. MAAC's world)
------------------------------------------------------------------------------------------------------------
1. Control force :math:`F_i = m_i \cdot 1.5 \cdot (1.5\, d_i)` (the accel factor applies twice, so every agent
   gains 0.225 speed per step in the pressed direction). Actions as in Cooperative Navigation: Discrete(5)
   or Box(0, 1, (5,)) with :math:`d = (a_2 - a_1, a_4 - a_3)`.
2. Soft contact forces between all agents (hunters and banks), as in MPE with k = 1e-3, scaled by the mass
   ratio: a gets :math:`(m_c/m_a) f`, c gets :math:`-(m_a/m_c) f`.
3. :math:`v \leftarrow 0.75 v + (F/m) dt`, clipped to speed 1, then :math:`p \leftarrow p + v\,dt`.
4. Rewards and observations are computed from this state; events count contacts:
   n_col = #(present treasure, empty hunter) pairs touching (< 0.075), n_dep = #(bank d, hunter holding d)
   pairs touching (< 0.125).
5. Post-step: each present treasure is picked up by the first empty hunter touching it (the hunter now holds
   its type; the treasure is removed and parked at (0, 0) with its old type, where observations still see it for
   one step); each treasure that was already removed re-spawns at :math:`U(-0.95, 0.95)^2` with a uniform type;
   then every holding hunter touching a bank of its type delivers (becomes empty).

``variant="mpe2"`` reproduces mpe2's ``collect_treasure_v1``: no contact forces (ghost agents), control force
:math:`F_i = 1.5\, d_i`, position updated before velocity, and the post-step runs *before* rewards and
observations, so n_col / n_dep count actual pickups / deliveries, and removed treasures appear as zeros at the
end of the observation.

Reset: agents :math:`U(-1, 1)^2` at rest and empty; treasures :math:`U(-0.95, 0.95)^2` with uniform types.
Episodes are truncated after ``max_cycles`` steps (paper: 100).

Observations (float32; no padding: hunters have K more entries than banks), as in MAAC / the authors' code:
``[p_i, v_i, (hunters only) one-hot(h_i) (K),`` then the other N-1 agents sorted by distance, each
``[p_j - p_i, v_j, enc_j (2K)]`` with enc = [one-hot(bank type), 0...] for banks and [0..., one-hot(held type)]
for hunters, then the T treasures sorted by distance, each ``[x_t - p_i, one-hot(k_t)]``\ ``]``.
Hunters 86 / banks 84 entries for N = 8; 134 / 132 for N = 12.

Rewards
-------
With :math:`G_{col} = 5\, n_{col}`, :math:`G_{dep} = 5\, n_{dep}`, :math:`G = G_{col} + G_{dep}`:

* ``"private"`` (the paper's MATRPO runs; the authors' per-agent code): hunters
  :math:`r_c = -5\, C_c`; banks
  :math:`r_d = -0.1 D_d + G_{dep} + \sum_{c} (-0.1 S_c + G)`
  :math:`= -0.1 D_d - 0.1 \sum_c S_c + (1 + H) G_{dep} + H\, G_{col}`.
* ``"shared"``: everyone gets the team sum :math:`\sum_i r_i^{private}`.
* ``"mpe2"`` (mpe2 / MAAC per-agent rewards): hunters :math:`r_c = -5 C_c - 0.1 S_c + G`, banks
  :math:`r_d = -0.1 D_d + G`.

Per-step ``infos`` (convention-free): ``treasures_collected`` and ``treasures_deposited`` (pickups and
deliveries that happened in this step), ``hunter_collisions`` (colliding hunter pairs) and ``holding`` (hunters
holding a treasure after the step).

Departures from the paper (and why)
-----------------------------------
* Eq. (23) gives banks :math:`5(\sum_j 1^j_{collect} + \sum_i 1^i_{deposit}) - 0.1 \min_{j,k} d(ht_j, tr_k)`.
  The authors' code, which produced the logged runs, computes the multiplicities and shaping terms above
  (hepengli/multiagent-particle-envs ``scenarios/collector.py``); we follow the code.
* The authors' later commits give the whole team sum to agent 0 only (their C-TRPO setup); it is not provided
  (``reward_mode="shared"`` gives the team sum to every agent).
* Table II does not list the other agents' velocities and encodings, but the code (and MAAC) observes them;
  we follow the code, which gives the paper's heterogeneous 86 / 84 sizes.
* The code crashes if no treasure is present when an empty hunter's shaping term is needed (every treasure
  picked up in the same step); we use S_c = 0 then.
* The code takes at most N - 1 treasures into observations; we observe all T (the same whenever T <= N - 1,
  which holds for the defaults).

Differences from mpe2 ``collect_treasure_v1`` (``variant="paper"``)
-------------------------------------------------------------------
mpe2 agents do not push each other, integrate position first, apply force 1.5 d (not 2.25 m d), run pickups and
deliveries before rewards and observations, count each pickup once (not every touching pair), show removed
treasures as zeros after the present ones (instead of at the origin), name agents ``collector_*``/``deposit_*``,
and default to 25 steps. ``variant="mpe2"`` with ``reward_mode="mpe2"`` matches it to 1e-6 from the same world
state and actions (its random respawns aside, which use its own generator).

Randomness: environment b of a batch is seeded from ``seed + b``; see :mod:`marl.envs._rng`.

References
----------
.. [1] P. Li and H. He, "Multi-Agent Trust Region Policy Optimization", §VI-B, Table II, eq. (23).
.. [2] S. Iqbal and F. Sha, "Actor-Attention-Critic for Multi-Agent Reinforcement Learning", ICML 2019.

Examples
--------
>>> from marl.envs import treasure_collection_v0
>>> env = treasure_collection_v0.parallel_env(n_agents=8)
>>> obs, infos = env.reset(seed=0)
>>> obs["agent_0"].shape, obs["agent_7"].shape
((86,), (84,))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pettingzoo.utils.conversions import parallel_to_aec

from marl.envs import _treasure_kernels as K
from marl.envs._engine import (
    MAX_AGENTS,
    as_bool,
    REWARD_MODES,
    VARIANTS,
    ParticleParallelEnv,
    ParticleVectorEnv,
    check_choice,
    check_int,
)
from marl.envs.rendering import draw_frame

__all__ = [
    "TreasureCollectionConfig",
    "TreasureCollectionVectorEnv",
    "TreasureCollectionEnv",
    "parallel_env",
    "env",
    "TYPE_COLORS",
]

NAME = "treasure_collection_v0"
DEFAULT_BANKS = 2
# Type colours (approximately matplotlib's tab10, as in mpe2).
TYPE_COLORS = [(54, 104, 198), (241, 141, 0), (43, 160, 44), (214, 38, 40), (148, 103, 189), (140, 86, 75)]


def team_split(
    n_agents: int | None = None, n_hunters: int | None = None, n_banks: int | None = None
) -> tuple[int, int]:
    """Return (n_hunters, n_banks): the paper's split (N - 2 hunters, 2 banks) unless given explicitly."""
    for name, value in (("n_agents", n_agents), ("n_hunters", n_hunters), ("n_banks", n_banks)):
        if value is not None:
            check_int(name, value, 1, MAX_AGENTS)
    if n_agents is not None and n_hunters is None and n_banks is None:
        check_int("n_agents", n_agents, DEFAULT_BANKS + 1)  # at least one hunter besides the default banks
    if n_banks is None:
        n_banks = DEFAULT_BANKS if n_hunters is None or n_agents is None else n_agents - n_hunters
    if n_hunters is None:
        n_hunters = (8 if n_agents is None else n_agents) - n_banks
    check_int("n_hunters", n_hunters, 1, MAX_AGENTS)
    check_int("n_banks", n_banks, 1, len(TYPE_COLORS))
    if n_agents is not None and n_hunters + n_banks != n_agents:
        raise ValueError(f"n_hunters + n_banks must equal n_agents, got {n_hunters} + {n_banks} != {n_agents}")
    return int(n_hunters), int(n_banks)


@dataclass(frozen=True)
class TreasureCollectionConfig:
    """Validated options of Treasure Collection (defaults: the paper's N = 8 = 6 + 2 setting)."""

    n_hunters: int = 6  # H >= 1 (paper: 6, 10)
    n_banks: int = 2  # K in [1, 6]: banks = treasure types (paper: 2)
    n_treasures: int = 6  # T >= 1 (paper: T = H)
    reward_mode: str = "private"  # "private" (paper), "shared" (team sum), "mpe2" (mpe2/MAAC per agent)
    max_cycles: int = 100  # episode length >= 1 (paper: 100)
    continuous_actions: bool = False  # Box(0, 1, (5,)) instead of Discrete(5)
    clip_actions: bool = True  # continuous actions outside [0, 1] are clipped (True) or rejected (False)
    variant: str = "paper"  # world and event order: "paper" (MAAC / authors) or "mpe2" (collect_treasure_v1)

    def __post_init__(self) -> None:
        check_int("n_hunters", self.n_hunters, 1, MAX_AGENTS)
        check_int("n_banks", self.n_banks, 1, len(TYPE_COLORS))
        check_int("n_treasures", self.n_treasures, 1, MAX_AGENTS)
        check_choice("reward_mode", self.reward_mode, REWARD_MODES)
        check_int("max_cycles", self.max_cycles, 1)
        check_choice("variant", self.variant, VARIANTS)

    @property
    def n_agents(self) -> int:
        """Total number of agents H + K."""
        return self.n_hunters + self.n_banks


class TreasureCollectionVectorEnv(ParticleVectorEnv):
    """B Treasure Collection environments stepped by one fused kernel (see the module docstring).

    Parameters
    ----------
    n_envs : int
        Batch size B.
    n_agents : int, optional
        Total agents; split as the paper does (N - 2 hunters, 2 banks) unless ``n_hunters``/``n_banks`` are given.
    n_hunters, n_banks, n_treasures : int, optional
        Explicit team composition; ``n_treasures`` defaults to ``n_hunters``.
    reward_mode, max_cycles, continuous_actions, clip_actions, variant
        See :class:`TreasureCollectionConfig`.
    seed, autoreset, backend, parallel
        As for :class:`marl.envs.cooperative_navigation_v0.CooperativeNavigationVectorEnv`.

    Examples
    --------
    >>> venv = TreasureCollectionVectorEnv(n_envs=2, n_agents=8, seed=0)
    >>> venv.obs_dims
    [86, 86, 86, 86, 86, 86, 84, 84]
    """

    env_name: ClassVar[str] = NAME
    metric_names: ClassVar[tuple[str, ...]] = (
        "treasures_collected",
        "treasures_deposited",
        "hunter_collisions",
        "holding",
    )
    int_metrics: ClassVar[frozenset[str]] = frozenset(metric_names)

    def __init__(
        self,
        n_envs: int = 1,
        n_agents: int | None = None,
        n_hunters: int | None = None,
        n_banks: int | None = None,
        n_treasures: int | None = None,
        reward_mode: str = "private",
        max_cycles: int = 100,
        continuous_actions: bool = False,
        clip_actions: bool = True,
        variant: str = "paper",
        seed: int | np.random.Generator | None = None,
        autoreset: bool = True,
        backend: str = "numba",
        parallel: bool = False,
    ) -> None:
        h, k = team_split(n_agents, n_hunters, n_banks)
        config = TreasureCollectionConfig(
            n_hunters=h,
            n_banks=k,
            n_treasures=h if n_treasures is None else n_treasures,
            reward_mode=reward_mode,
            max_cycles=max_cycles,
            continuous_actions=as_bool("continuous_actions", continuous_actions),
            clip_actions=as_bool("clip_actions", clip_actions),
            variant=variant,
        )
        self.n_hunters, self.n_banks, self.n_treasures = h, k, config.n_treasures
        super().__init__(
            config,
            K.obs_dims(h, k, config.n_treasures),
            K.rng_reserve(h + k, config.n_treasures),
            n_envs,
            seed,
            autoreset,
            backend,
            parallel,
        )

    def _allocate(self) -> None:
        B, N, T, H = self.n_envs, self.n_agents, self.n_treasures, self.n_hunters
        self.pos = np.zeros((B, N, 2))
        self.vel = np.zeros((B, N, 2))
        self.hold = np.full((B, N), -1, dtype=np.int64)
        self.tpos = np.zeros((B, T, 2))
        self.ttype = np.zeros((B, T), dtype=np.int64)
        self.talive = np.zeros((B, T), dtype=np.bool_)
        self.size = np.array([K.HUNTER_SIZE] * H + [K.BANK_SIZE] * self.n_banks)
        self.mass = np.array([K.HUNTER_MASS] * H + [K.BANK_MASS] * self.n_banks)
        self.btype = np.array([-1] * H + list(range(self.n_banks)), dtype=np.int64)
        self._force = np.zeros((B, N, 2))
        self._order = np.zeros((B, max(N, T)), dtype=np.int64)
        self._key = np.zeros((B, max(N, T)))
        if self.backend == "numpy":
            self._reset_fn = K.tc_reset_numpy
            self._step_fn = K.tc_step_numpy
        else:
            self._reset_fn = K.tc_reset
            self._step_fn = K.tc_step_parallel if self.parallel else K.tc_step

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
                c.n_hunters,
                c.n_banks,
            ],
            dtype=np.int64,
        )
        return cfg_i, np.zeros(1)

    def _kernel_reset(self, mask: np.ndarray, obs: np.ndarray) -> None:
        self._reset_fn(mask, self.pos, self.vel, self.hold, self.tpos, self.ttype, self.talive, self._t,
                       self._ep_ret, self._cfg_i, self.btype, self._pool.buf, self._pool.ptr, self._order, self._key,
                       obs, self._obs_off, self._obs_dim_arr)

    def _kernel_step(self, act_i, act_c, obs, final_obs, rew, term, trunc, metrics, ep_ret_out, ep_len_out) -> int:
        return self._step_fn(self.pos, self.vel, self.hold, self.tpos, self.ttype, self.talive, self._t,
                             self._ep_ret, act_i, act_c, self._cfg_i, self.size, self.mass, self.btype,
                             self._pool.buf, self._pool.ptr, self._force, self._order, self._key, obs, final_obs,
                             self._obs_off, self._obs_dim_arr, rew, term, trunc, metrics, ep_ret_out, ep_len_out)

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {
            "pos": self.pos,
            "vel": self.vel,
            "hold": self.hold,
            "tpos": self.tpos,
            "ttype": self.ttype,
            "talive": self.talive,
            "t": self._t,
            "ep_ret": self._ep_ret,
        }


class TreasureCollectionEnv(ParticleParallelEnv):
    """PettingZoo ParallelEnv of Treasure Collection (agent ids ``agent_0`` ...); see the module docstring.

    Keyword arguments are those of :class:`TreasureCollectionVectorEnv` (without ``n_envs``), plus
    ``render_mode`` (``None`` or ``"rgb_array"``) and ``render_size``. The world state lives in ``self.core``.
    """

    metadata: ClassVar[dict[str, Any]] = {**ParticleParallelEnv.metadata, "name": NAME}

    def __init__(self, render_mode: str | None = None, render_size: int = 400, **kwargs: Any) -> None:
        core = TreasureCollectionVectorEnv(n_envs=1, autoreset=False, parallel=False, **kwargs)
        super().__init__(core, render_mode, render_size)

    def _render_frame(self) -> np.ndarray:
        c = self.core
        H = c.n_hunters
        circles = []
        for k in range(c.n_treasures):
            if c.talive[0, k]:
                circles.append((c.tpos[0, k], K.TREASURE_SIZE, TYPE_COLORS[c.ttype[0, k]]))
        for d in range(c.n_banks):
            color = tuple(int(0.55 * v) for v in TYPE_COLORS[d])
            circles.append((c.pos[0, H + d], K.BANK_SIZE, color))
        for h in range(H):
            held = c.hold[0, h]
            color = (217, 217, 217) if held < 0 else tuple(int(0.85 * v) for v in TYPE_COLORS[held])
            circles.append((c.pos[0, h], K.HUNTER_SIZE, color))
        return draw_frame(circles, self.render_size)


def parallel_env(**kwargs: Any) -> TreasureCollectionEnv:
    """Return a PettingZoo ParallelEnv of Treasure Collection (keyword arguments: see the class)."""
    return TreasureCollectionEnv(**kwargs)


def env(**kwargs: Any):
    """Return the AEC version (``pettingzoo.utils.conversions.parallel_to_aec`` of :func:`parallel_env`)."""
    return parallel_to_aec(parallel_env(**kwargs))
