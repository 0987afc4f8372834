"""The environment a training configuration names: a paper task's batched engine or any PettingZoo ParallelEnv.

``config.env.name`` is one of the paper's tasks (``marl.envs.ENV_NAMES``: the batched Numba engines, with
``env.n_agents``, ``env.max_cycles``, ``env.reward_mode`` and any further ``env.kwargs`` of
:func:`marl.envs.make_vector_env`), or the module path of a PettingZoo environment with a ``parallel_env(**kwargs)``
factory (``"mpe2.simple_spread_v3"``), which is called with ``env.kwargs`` and batched by
:class:`marl.envs.PettingZooVectorAdapter` in resumable mode (so that ``--resume`` continues bit for bit).

Errors name the setting at fault: ``env.name`` (not importable, no ``parallel_env``), ``env.kwargs`` (refused by
the factory), ``env.n_agents`` (not the environment's number of agents), and the paper tasks' own settings
(``env.max_cycles``, ``env.reward_mode``, ``env.continuous_actions``) set for another environment.
"""

from __future__ import annotations

from typing import Any

from .config import TrainConfig
from .envs import PettingZooVectorAdapter, VectorEnv, make_vector_env
from .envs.registry import is_registered, parallel_env_factory


def make_env_for(config: TrainConfig, n_envs: int | None = None, seed: int | None = None) -> VectorEnv:
    """The batched environment ``config`` trains on: ``n_envs`` copies (default ``env.n_envs``), seeded from
    ``seed`` (default ``config.seed``) for its first reset.

    Raises
    ------
    ValueError
        Naming ``env.name``, ``env.kwargs`` or ``env.n_agents`` (see the module docstring).
    """
    env = config.env
    n_envs = env.n_envs if n_envs is None else n_envs
    seed = config.seed if seed is None else seed
    continuous = {"continuous_actions": True, "clip_actions": True} if env.continuous_actions else {}
    if is_registered(env.name):
        try:
            return make_vector_env(env.name, n_envs=n_envs, n_agents=env.n_agents, seed=seed,
                                   reward_mode=env.reward_mode, max_cycles=env.max_cycles, **continuous,
                                   **env.kwargs)
        except TypeError as exc:
            if not env.kwargs:
                raise
            # an option the task does not have (its own checks name the option for a bad value)
            raise ValueError(f"env.kwargs {env.kwargs} are refused by {env.name}: {exc}") from None
    if env.continuous_actions:
        raise ValueError(f"env.continuous_actions applies to the paper's tasks, not to {env.name}")
    defaults = type(env)()
    for key in ("max_cycles", "reward_mode"):  # silently ignored otherwise: the environment has its own options
        if getattr(env, key) != getattr(defaults, key):
            raise ValueError(f"env.{key} applies to the paper's tasks, not to {env.name}; pass {env.name}'s own "
                             f"option in env.kwargs (e.g. --set env.kwargs.max_cycles=25)")
    parallel_env_for(config).close()  # a clear error before the batch is built
    venv = PettingZooVectorAdapter(lambda: parallel_env_for(config), n_envs=n_envs, seed=seed, resumable=True)
    if venv.n_agents != env.n_agents:
        venv.close()
        raise ValueError(f"env.n_agents is {env.n_agents} but {env.name} with env.kwargs {env.kwargs} has "
                         f"{venv.n_agents} agents {venv.agents}; set env.n_agents={venv.n_agents} (--n-agents)")
    return venv


def parallel_env_for(config: TrainConfig, **extra: Any):
    """One PettingZoo ParallelEnv of ``config``'s environment, with ``extra`` keyword arguments added (for example
    ``render_mode="rgb_array"``).

    The paper's tasks get ``env.n_agents``, ``env.reward_mode``, ``env.max_cycles`` and ``env.kwargs``; another
    environment gets ``env.kwargs``.
    """
    env = config.env
    try:
        factory = parallel_env_factory(env.name)
    except ValueError as exc:
        raise ValueError(f"env.name: {exc}") from None
    kwargs = dict(env.kwargs)
    if is_registered(env.name):
        kwargs.update(n_agents=env.n_agents, reward_mode=env.reward_mode, max_cycles=env.max_cycles)
        if env.continuous_actions:
            kwargs.update(continuous_actions=True, clip_actions=True)
    try:
        return factory(**kwargs, **extra)
    except (TypeError, ValueError, AssertionError, KeyError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(f"env.kwargs {env.kwargs} are refused by {env.name}.parallel_env: {detail}") from None
