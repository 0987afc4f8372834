"""Environments: the MATRPO paper's Cooperative Navigation and Treasure Collection, batched and PettingZoo.

``cooperative_navigation_v0`` and ``treasure_collection_v0`` expose ``parallel_env(**kwargs)`` and
``env(**kwargs)``; :func:`make_vector_env` returns their batched engines, and
:class:`PettingZooVectorAdapter` gives any PettingZoo ParallelEnv the same batched interface
(:func:`parallel_env_factory` finds one by module path, e.g. ``"mpe2.simple_spread_v3"``).
"""

from marl.envs import cooperative_navigation_v0, treasure_collection_v0
from marl.envs.rendering import record_episode, save_episode_gif, save_gif
from marl.envs.registry import ENV_NAMES, make_vector_env, parallel_env_factory
from marl.envs.vector import PettingZooVectorAdapter, VectorEnv

__all__ = [
    "cooperative_navigation_v0",
    "treasure_collection_v0",
    "make_vector_env",
    "ENV_NAMES",
    "parallel_env_factory",
    "VectorEnv",
    "PettingZooVectorAdapter",
    "record_episode",
    "save_gif",
    "save_episode_gif",
]
