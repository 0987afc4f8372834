"""Multi-agent RL: environments, MATRPO and baselines composed from consensus_admm and trpo_core.

Public names are imported lazily, so ``import marl.envs`` does not pull in PyTorch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TrainConfig": "marl.config",
    "EnvConfig": "marl.config",
    "TRPOConfig": "marl.config",
    "ADMMConfig": "marl.config",
    "load_config": "marl.config",
    "apply_overrides": "marl.config",
    "train": "marl.train",
    "TrainResult": "marl.train",
    "evaluate": "marl.evaluate",
    "collect_rollout": "marl.rollout",
    "Rollout": "marl.rollout",
    "MATRPO": "marl.algos",
    "ITRPO": "marl.algos",
    "CTRPO": "marl.algos",
    "make_algorithm": "marl.algos",
    "communication_graph": "marl.algos",
    "plot_learning_curves": "marl.plotting",
    "summarize_runs": "marl.plotting",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'marl' has no attribute {name!r}")
