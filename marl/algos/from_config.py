"""The config edge: each algorithm's settings, built once from a :class:`~marl.config.TrainConfig`.

The algorithms take their own frozen settings, never the training configuration: ``trpo_core.TRPOSettings`` for the
trust-region step, :class:`~marl.algos.learner.LearnerSettings` for a learner, and
:class:`~marl.algos.matrpo.MATRPOSettings` for MATRPO's consensus (MAPPO and FDMARL read their ``[mappo]`` and
``[fdmarl]`` sections, which are their settings classes). Paper Table III values are resolved here, through the
config's properties.
"""

from __future__ import annotations

from trpo_core import GAESettings, TRPOSettings, ValueFitSettings

from ..config import TrainConfig
from .learner import LearnerSettings
from .matrpo import MATRPOSettings


def trpo_settings(config: TrainConfig) -> TRPOSettings:
    """The local trust-region step of the original MATRPO code, with ``max_kl`` from the config (δ/N)."""
    t = config.trpo
    return TRPOSettings.matrpo(
        max_kl=config.max_kl,
        damping=t.damping,
        cg_max_iter=t.cg_max_iter,
        backtrack_coeff=t.backtrack_coeff,
        max_backtracks=t.max_backtracks,
        fvp_subsample_every=t.fvp_subsample_every,
        fisher_form=t.fisher_form,
    )


def gae_settings(config: TrainConfig) -> GAESettings:
    """gamma and lambda of every algorithm's advantage estimate."""
    return GAESettings(gamma=config.gamma, lam=config.gae_lambda)


def learner_settings(config: TrainConfig) -> LearnerSettings:
    """A TRPO learner's networks, advantages, value regression (none when ``vf_epochs = 0``) and action noise."""
    value_fit = (ValueFitSettings(lr=config.vf_lr, epochs=config.vf_epochs, minibatch_size=config.vf_minibatch)
                 if config.vf_epochs > 0 else None)
    return LearnerSettings(
        hidden_sizes=config.hidden_sizes, activation=config.activation, gae=gae_settings(config),
        gae_boundaries=config.gae_boundaries, value_fit=value_fit, sampling_noise=config.sampling_noise,
        stack_value_fits=config.stack_value_fits, concurrent_value_fit=config.concurrent_value_fit,
        continuous_actions=config.env.continuous_actions,
    )


def matrpo_settings(config: TrainConfig) -> MATRPOSettings:
    """MATRPO's consensus loop ([admm], Table III resolved) and its CG warm start ([trpo])."""
    a = config.admm
    return MATRPOSettings(
        iterations=config.admm_iterations, penalty=config.admm_penalty, graph=a.graph, graph_p=a.graph_p,
        edge_order=a.edge_order, exchange=a.exchange, theta_update=a.theta_update, step_length=a.step_length,
        dual_init=a.dual_init, drop_prob=a.drop_prob, adv_norm=a.adv_norm, parallel_endpoints=a.parallel_endpoints,
        warm_start_cg=config.trpo.warm_start_cg, cg_max_iter_warm=config.trpo.cg_max_iter_warm,
    )
