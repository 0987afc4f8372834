"""The registry of the paper's tasks: task name -> batched engine, and :func:`make_vector_env`.

It lives apart from :mod:`marl.envs.vector` (the interface the engines implement) so that the import graph runs one
way: ``registry`` -> task modules -> ``_engine`` -> ``vector``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from marl.envs.cooperative_navigation_v0 import CooperativeNavigationVectorEnv
from marl.envs.treasure_collection_v0 import TreasureCollectionVectorEnv
from marl.envs.vector import VectorEnv

__all__ = ["ENV_NAMES", "make_vector_env"]

_ENGINES: dict[str, type[VectorEnv]] = {
    "cooperative_navigation": CooperativeNavigationVectorEnv,
    "treasure_collection": TreasureCollectionVectorEnv,
}
ENV_NAMES = tuple(_ENGINES)


def make_vector_env(
    name: str,
    n_envs: int,
    n_agents: int | None = None,
    seed: int | np.random.Generator | None = None,
    reward_mode: str = "private",
    max_cycles: int = 100,
    continuous_actions: bool = False,
    **kwargs: Any,
) -> VectorEnv:
    """Return a batched environment of one of the paper's tasks, reset with ``seed``.

    Parameters
    ----------
    name : {"cooperative_navigation", "treasure_collection"}
        Task (a ``_v0`` suffix is accepted).
    n_envs : int
        Batch size B >= 1.
    n_agents : int, optional
        Number of agents. Navigation: N agents and N landmarks (default 3). Treasure collection: hunters plus
        banks (default 8, split as in the paper: 8 -> 6 + 2, 12 -> 10 + 2, generally N - 2 hunters and 2 banks);
        ``n_hunters`` / ``n_banks`` may be given instead or in addition (they must then add up to ``n_agents``).
    seed : int, numpy Generator or None
        Environment b is seeded from ``seed + b``.
    reward_mode : {"private", "shared", "mpe2"}
        Reward convention (formulas in each task's module docstring).
    max_cycles : int
        Episode length (truncation); the paper uses 100.
    continuous_actions : bool
        Box(0, 1, (5,)) actions in mpe2's layout instead of Discrete(5).
    **kwargs
        Further task options (``variant``, ``local_ratio``, ``clip_actions``, ``n_hunters``, ``n_banks``,
        ``n_treasures``) and engine options: ``backend`` ("numba" or "numpy") and ``parallel`` (Numba threads; off by
        default).

    Returns
    -------
    VectorEnv
        Not yet reset: the first ``reset()`` without a seed uses ``seed``.

    Examples
    --------
    >>> venv = make_vector_env("cooperative_navigation", n_envs=4, n_agents=3, seed=0)
    >>> obs = venv.reset()
    >>> obs, rew, term, trunc, info = venv.step(np.zeros((4, 3), dtype=np.int64))
    >>> [o.shape for o in obs], rew.shape
    ([(4, 14), (4, 14), (4, 14)], (4, 3))
    """
    key = name[:-3] if name.endswith("_v0") else name
    if key not in _ENGINES:
        raise ValueError(f"name must be one of {ENV_NAMES}, got {name!r}")
    if n_agents is not None:
        kwargs["n_agents"] = n_agents
    return _ENGINES[key](
        n_envs=n_envs,
        seed=seed,
        reward_mode=reward_mode,
        max_cycles=max_cycles,
        continuous_actions=continuous_actions,
        **kwargs,
    )
