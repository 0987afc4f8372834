"""Algorithms: MATRPO (consensus, Li & He), the I-TRPO / C-TRPO baselines, MAPPO and FDMARL."""

from .baselines import CTRPO, ITRPO
from .fdmarl import FDMARL, FDMARLSettings
from .from_config import gae_settings, learner_settings, matrpo_settings, trpo_settings
from .learner import Learner, LearnerSettings
from .mappo import MAPPO, MAPPOSettings
from .matrpo import MATRPO, MATRPOAgent, MATRPOSettings, communication_graph
from .privacy import PrivacyViolation, PrivateStore, acting_as


def _matrpo(obs_dims, n_actions, config) -> MATRPO:
    return MATRPO(obs_dims, n_actions, matrpo_settings(config), trpo_settings(config), learner_settings(config),
                  seed=config.seed)


def _itrpo(obs_dims, n_actions, config) -> ITRPO:
    return ITRPO(obs_dims, n_actions, trpo_settings(config), learner_settings(config), seed=config.seed)


def _ctrpo(obs_dims, n_actions, config) -> CTRPO:
    return CTRPO(obs_dims, n_actions, trpo_settings(config), learner_settings(config), seed=config.seed)


def check_action_space(config) -> None:
    """MAPPO and FDMARL act on discrete actions only: refuse ``env.continuous_actions`` for them (in-process and
    with ``--backend mpi``), naming both settings."""
    if config.env.continuous_actions and config.algo in ("mappo", "fdmarl"):
        raise ValueError(f"algo {config.algo!r} supports discrete actions only; env.continuous_actions=true is for "
                         "matrpo, itrpo and ctrpo")


def _mappo(obs_dims, n_actions, config) -> MAPPO:
    check_action_space(config)
    return MAPPO(obs_dims, n_actions, config.mappo, gae=gae_settings(config),
                 gae_boundaries=config.gae_boundaries, hidden_sizes=config.hidden_sizes,
                 activation=config.activation, seed=config.seed, sampling_noise=config.sampling_noise)


def _fdmarl(obs_dims, n_actions, config) -> FDMARL:
    check_action_space(config)
    graph = communication_graph(config.admm.graph, len(obs_dims), p=config.admm.graph_p, seed=config.seed)
    return FDMARL(obs_dims, n_actions, config.fdmarl, graph=graph, gae=gae_settings(config),
                  gae_boundaries=config.gae_boundaries, hidden_sizes=config.hidden_sizes,
                  activation=config.activation, seed=config.seed, sampling_noise=config.sampling_noise)


# name -> constructor (obs_dims, n_actions (continuous: action dims), TrainConfig): the one place where each algorithm's own settings are built
# from the training configuration (marl.algos.from_config); the algorithms never see the TrainConfig.
ALGORITHM_CLASSES = {"matrpo": _matrpo, "itrpo": _itrpo, "ctrpo": _ctrpo, "mappo": _mappo, "fdmarl": _fdmarl}


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
    "Learner",
    "LearnerSettings",
    "MAPPO",
    "MAPPOSettings",
    "MATRPO",
    "MATRPOAgent",
    "MATRPOSettings",
    "PrivacyViolation",
    "PrivateStore",
    "acting_as",
    "check_action_space",
    "communication_graph",
    "gae_settings",
    "learner_settings",
    "make_algorithm",
    "matrpo_settings",
    "trpo_settings",
]
