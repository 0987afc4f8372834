"""The config edge: each algorithm's settings built once from a :class:`~marl.config.TrainConfig`."""

from __future__ import annotations

from trpo_core import TRPOSettings

from ..config import TrainConfig


def trpo_settings(config: TrainConfig) -> TRPOSettings:
    """The local trust-region step of the original MATRPO code, with ``max_kl`` from the config (δ/N)."""
    t = config.trpo
    return TRPOSettings.matrpo(
        max_kl=config.max_kl,
        damping=t.cg_damping,
        cg_max_iter=t.cg_iters,
        backtrack_coeff=t.ls_backtrack,
        max_backtracks=t.ls_steps,
        fvp_subsample_every=t.fvp_subsample,
        fisher_form=t.fisher_form,
    )
