"""Algorithms: MATRPO (consensus, Li & He) and the I-TRPO / C-TRPO baselines."""

from .baselines import CTRPO, ITRPO
from .matrpo import MATRPO, MATRPOAgent, communication_graph
from .privacy import PrivacyViolation, PrivateStore, acting_as

ALGORITHM_CLASSES = {"matrpo": MATRPO, "itrpo": ITRPO, "ctrpo": CTRPO}


def make_algorithm(name: str, obs_dims, n_actions, config):
    """Build the algorithm ``name`` for agents with the given observation sizes and action counts."""
    if name not in ALGORITHM_CLASSES:
        raise ValueError(f"algo must be one of {sorted(ALGORITHM_CLASSES)}, got {name!r}")
    return ALGORITHM_CLASSES[name](list(obs_dims), list(n_actions), config)


__all__ = [
    "ALGORITHM_CLASSES",
    "CTRPO",
    "ITRPO",
    "MATRPO",
    "MATRPOAgent",
    "PrivacyViolation",
    "PrivateStore",
    "acting_as",
    "communication_graph",
    "make_algorithm",
]
