"""Frozen settings for the TRPO building blocks.

Every default of ``trpo_core`` lives here (STYLE.md §2). Variants are made with :func:`dataclasses.replace`; the
``harl`` and ``matrpo`` constructors return the two parameter sets in use (HARL's HATRPO, MATRPO's local update).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["TRPOSettings", "GAESettings", "ValueFitSettings"]

AcceptanceName = Literal["harl", "matrpo"]
FisherForm = Literal["fast", "exact"]


def _check(condition: bool, field: str, rule: str, value: Any) -> None:
    if not condition:
        raise ValueError(f"{field} must be {rule}, got {value!r}")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _from_dict(cls, data: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {unknown}; valid keys are {sorted(names)}")
    return cls(**data)


@dataclass(frozen=True)
class TRPOSettings:
    """Settings of one trust-region step (conjugate gradient, Fisher product, step size, line search).

    The defaults are HARL's HATRPO constants (marl-reference.md §1.4); :meth:`matrpo` gives MATRPO's
    (matrpo-reference-code.md §4.4, §6).
    """

    # delta: trust-region radius on the mean KL(pi_old || pi_theta); > 0. MATRPO's max_kl is the paper's delta/N.
    max_kl: float = 0.01
    # lambda_damp: Tikhonov damping added to the Fisher, (F + damping I) s = g; >= 0. HARL 0.1, MATRPO 0.01.
    damping: float = 0.1
    # K: conjugate-gradient iterations; integer >= 1.
    cg_max_iter: int = 10
    # CG stops once the squared residual r^T r falls below this; >= 0.
    cg_residual_tol: float = 1e-10
    # Line-search acceptance rule: "harl" (KL < delta, actual/expected > accept_ratio, improvement > 0) or
    # "matrpo" (KL <= kl_slack * delta, loss not increased, all finite).
    acceptance: AcceptanceName = "harl"
    # c: the k-th line-search try uses fraction c**k of the full step; in (0, 1). HARL 0.8, MATRPO 0.5.
    backtrack_coeff: float = 0.8
    # Number of tries of the line search (k = 0 .. max_backtracks - 1); integer >= 1.
    max_backtracks: int = 10
    # HARL rule only: minimum actual/expected improvement ratio; >= 0.
    accept_ratio: float = 0.5
    # MATRPO rule only: accepted KL may reach kl_slack * delta; >= 1.
    kl_slack: float = 1.5
    # Fisher-vector product form: "fast" (Gauss-Newton J^T F_out J v) or "exact" (double-backward Hessian of mean KL).
    fisher_form: FisherForm = "fast"
    # The FVP uses every k-th sample of the batch (MATRPO uses 5); integer >= 1.
    fvp_subsample_every: int = 1

    def __post_init__(self) -> None:
        _check(_finite(self.max_kl) and self.max_kl > 0, "max_kl", "a finite float > 0", self.max_kl)
        _check(_finite(self.damping) and self.damping >= 0, "damping", "a finite float >= 0", self.damping)
        _check(
            isinstance(self.cg_max_iter, int) and not isinstance(self.cg_max_iter, bool) and self.cg_max_iter >= 1,
            "cg_max_iter",
            "an integer >= 1",
            self.cg_max_iter,
        )
        _check(
            _finite(self.cg_residual_tol) and self.cg_residual_tol >= 0,
            "cg_residual_tol",
            "a finite float >= 0",
            self.cg_residual_tol,
        )
        _check(self.acceptance in ("harl", "matrpo"), "acceptance", "one of 'harl', 'matrpo'", self.acceptance)
        _check(
            _finite(self.backtrack_coeff) and 0 < self.backtrack_coeff < 1,
            "backtrack_coeff",
            "a float in (0, 1)",
            self.backtrack_coeff,
        )
        _check(
            isinstance(self.max_backtracks, int)
            and not isinstance(self.max_backtracks, bool)
            and self.max_backtracks >= 1,
            "max_backtracks",
            "an integer >= 1",
            self.max_backtracks,
        )
        _check(_finite(self.accept_ratio) and self.accept_ratio >= 0, "accept_ratio", "a finite float >= 0",
               self.accept_ratio)
        _check(_finite(self.kl_slack) and self.kl_slack >= 1, "kl_slack", "a finite float >= 1", self.kl_slack)
        _check(self.fisher_form in ("fast", "exact"), "fisher_form", "one of 'fast', 'exact'", self.fisher_form)
        _check(
            isinstance(self.fvp_subsample_every, int)
            and not isinstance(self.fvp_subsample_every, bool)
            and self.fvp_subsample_every >= 1,
            "fvp_subsample_every",
            "an integer >= 1",
            self.fvp_subsample_every,
        )

    @property
    def kl_bound(self) -> float:
        """The largest KL the acceptance rule admits: delta (HARL, strict) or kl_slack * delta (MATRPO)."""
        return self.max_kl if self.acceptance == "harl" else self.kl_slack * self.max_kl

    @classmethod
    def harl(cls, **overrides: Any) -> "TRPOSettings":
        """HARL's HATRPO constants (marl-reference.md §1.4): damping 0.1, backtrack 0.8, ratio 0.5, full batch."""
        return cls(**{"acceptance": "harl", "damping": 0.1, "backtrack_coeff": 0.8, "fvp_subsample_every": 1,
                      **overrides})

    @classmethod
    def matrpo(cls, **overrides: Any) -> "TRPOSettings":
        """MATRPO's local-update constants (matrpo-reference-code.md §4.4, §6): damping 0.01, halving, KL slack
        1.5, every 5th sample in the FVP, max_kl 0.003 (the Navigation N=3 value of delta/N)."""
        return cls(**{"acceptance": "matrpo", "max_kl": 0.003, "damping": 0.01, "backtrack_coeff": 0.5,
                      "kl_slack": 1.5, "fvp_subsample_every": 5, **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TRPOSettings":
        """Build from a mapping, rejecting unknown keys with a ``ValueError``."""
        return _from_dict(cls, data)


@dataclass(frozen=True)
class GAESettings:
    """Settings of generalized advantage estimation (Schulman et al. 2016, eq. 16)."""

    # gamma: discount factor; in [0, 1].
    gamma: float = 0.99
    # lambda: GAE trace parameter; in [0, 1]. 0 gives the TD residual, 1 the Monte-Carlo advantage.
    lam: float = 0.95

    def __post_init__(self) -> None:
        _check(_finite(self.gamma) and 0 <= self.gamma <= 1, "gamma", "a float in [0, 1]", self.gamma)
        _check(_finite(self.lam) and 0 <= self.lam <= 1, "lam", "a float in [0, 1]", self.lam)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GAESettings":
        """Build from a mapping, rejecting unknown keys with a ``ValueError``."""
        return _from_dict(cls, data)


@dataclass(frozen=True)
class ValueFitSettings:
    """Settings of the value-function regression (minibatch Adam on the squared error to the returns)."""

    # Adam learning rate; > 0. MATRPO vf_stepsize 3e-4, HARL critic_lr 5e-4.
    lr: float = 3e-4
    # Passes over the batch per call; integer >= 1. MATRPO vf_iters 3, HARL critic_epoch 5.
    epochs: int = 5
    # Samples per Adam step; integer >= 1. MATRPO uses 64.
    minibatch_size: int = 64
    # Gradient-norm clip per Adam step, or None for no clipping; > 0 when given.
    max_grad_norm: float | None = None

    def __post_init__(self) -> None:
        _check(_finite(self.lr) and self.lr > 0, "lr", "a finite float > 0", self.lr)
        _check(isinstance(self.epochs, int) and not isinstance(self.epochs, bool) and self.epochs >= 1, "epochs",
               "an integer >= 1", self.epochs)
        _check(
            isinstance(self.minibatch_size, int)
            and not isinstance(self.minibatch_size, bool)
            and self.minibatch_size >= 1,
            "minibatch_size",
            "an integer >= 1",
            self.minibatch_size,
        )
        _check(
            self.max_grad_norm is None or (_finite(self.max_grad_norm) and self.max_grad_norm > 0),
            "max_grad_norm",
            "None or a finite float > 0",
            self.max_grad_norm,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ValueFitSettings":
        """Build from a mapping, rejecting unknown keys with a ``ValueError``."""
        return _from_dict(cls, data)
