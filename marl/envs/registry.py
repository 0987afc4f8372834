"""Which environment a name means: the paper's tasks by registered name, any PettingZoo ParallelEnv by module path.

* :func:`make_vector_env` builds the batched engine of a registered task (``ENV_NAMES``).
* :func:`parallel_env_factory` returns the ``parallel_env`` factory of a registered task or of any importable module
  that has one (``"mpe2.simple_spread_v3"``, ``"pettingzoo.sisl.multiwalker_v9"``, a module of your own), for
  :class:`marl.envs.PettingZooVectorAdapter`.

It lives apart from :mod:`marl.envs.vector` (the interface the engines implement) so that the import graph runs one
way: ``registry`` -> task modules -> ``_engine`` -> ``vector``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from marl.envs import cooperative_navigation_v0, treasure_collection_v0
from marl.envs.vector import VectorEnv

__all__ = ["ENV_NAMES", "make_vector_env", "parallel_env_factory", "is_registered", "is_module_path"]

_TASKS = {
    "cooperative_navigation": (cooperative_navigation_v0.CooperativeNavigationVectorEnv, cooperative_navigation_v0),
    "treasure_collection": (treasure_collection_v0.TreasureCollectionVectorEnv, treasure_collection_v0),
}
ENV_NAMES = tuple(_TASKS)
_MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


def _task_key(name: str) -> str:
    return name[:-3] if name.endswith("_v0") else name


def is_registered(name: str) -> bool:
    """Whether ``name`` is one of the paper's tasks (``ENV_NAMES``, a ``_v0`` suffix accepted)."""
    return _task_key(name) in _TASKS


def is_module_path(name: str) -> bool:
    """Whether ``name`` is spelled as a dotted module path (``package.module``); it is not imported here."""
    return bool(_MODULE_PATH.fullmatch(name))


def parallel_env_factory(name: str) -> Callable[..., Any]:
    """Return the ``parallel_env(**kwargs)`` factory that ``name`` designates.

    Parameters
    ----------
    name : str
        A registered task (``ENV_NAMES``) or the dotted path of an importable module with a ``parallel_env``
        callable, as PettingZoo's environment modules have (``"mpe2.simple_spread_v3"``).

    Raises
    ------
    ValueError
        Naming ``name``: neither a registered task nor a module path, a module that cannot be imported (with the
        import error), or a module without a callable ``parallel_env``.

    Examples
    --------
    >>> parallel_env_factory("cooperative_navigation")(n_agents=2).possible_agents
    ['agent_0', 'agent_1']
    """
    if is_registered(name):
        return _TASKS[_task_key(name)][1].parallel_env
    if not isinstance(name, str) or not is_module_path(name):
        raise ValueError(f"name must be one of {ENV_NAMES} or a module path with a parallel_env factory "
                         f"(e.g. 'mpe2.simple_spread_v3'), got {name!r}")
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ValueError(f"cannot import the environment module {name!r} ({type(exc).__name__}: {exc})") from None
    factory = getattr(module, "parallel_env", None)
    if not callable(factory):
        raise ValueError(f"module {name!r} has no parallel_env factory (a PettingZoo environment module exposes "
                         "parallel_env(**kwargs) returning a ParallelEnv)")
    return factory


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
    if not is_registered(name):
        raise ValueError(f"name must be one of {ENV_NAMES}, got {name!r}")
    if n_agents is not None:
        kwargs["n_agents"] = n_agents
    engine: type[VectorEnv] = _TASKS[_task_key(name)][0]
    return engine(
        n_envs=n_envs,
        seed=seed,
        reward_mode=reward_mode,
        max_cycles=max_cycles,
        continuous_actions=continuous_actions,
        **kwargs,
    )
