"""Algorithms: MATRPO (consensus, Li & He), the I-TRPO / C-TRPO baselines, MAPPO and FDMARL."""

from trpo_core import GAESettings

from .baselines import CTRPO, ITRPO
from .fdmarl import FDMARL, FDMARLSettings
from .mappo import MAPPO, MAPPOSettings
from .matrpo import MATRPO, MATRPOAgent, communication_graph
from .privacy import PrivacyViolation, PrivateStore, acting_as


def _mappo(obs_dims, n_actions, config) -> MAPPO:
    return MAPPO(obs_dims, n_actions, config.mappo, gae=GAESettings(config.gamma, config.gae_lambda),
                 gae_boundaries=config.gae_boundaries, hidden_sizes=config.hidden_sizes,
                 activation=config.activation, seed=config.seed, sampling_noise=config.sampling_noise)


def _fdmarl(obs_dims, n_actions, config) -> FDMARL:
    graph = communication_graph(config.admm.graph, len(obs_dims), p=config.admm.graph_p, seed=config.seed)
    return FDMARL(obs_dims, n_actions, config.fdmarl, graph=graph, gae=GAESettings(config.gamma, config.gae_lambda),
                  gae_boundaries=config.gae_boundaries, hidden_sizes=config.hidden_sizes,
                  activation=config.activation, seed=config.seed, sampling_noise=config.sampling_noise)


# name -> constructor (obs_dims, n_actions, TrainConfig); MAPPO and FDMARL get their own settings from the config here.
ALGORITHM_CLASSES = {"matrpo": MATRPO, "itrpo": ITRPO, "ctrpo": CTRPO, "mappo": _mappo, "fdmarl": _fdmarl}


def make_algorithm(name: str, obs_dims, n_actions, config):
    """Build the algorithm ``name`` for agents with the given observation sizes and action counts."""
    if name not in ALGORITHM_CLASSES:
        raise ValueError(f"algo must be one of {sorted(ALGORITHM_CLASSES)}, got {name!r}")
    return ALGORITHM_CLASSES[name](list(obs_dims), list(n_actions), config)


__all__ = [
    "ALGORITHM_CLASSES",
    "CTRPO",
    "FDMARL",
    "FDMARLSettings",
    "ITRPO",
    "MAPPO",
    "MAPPOSettings",
    "MATRPO",
    "MATRPOAgent",
    "PrivacyViolation",
    "PrivateStore",
    "acting_as",
    "communication_graph",
    "make_algorithm",
]
