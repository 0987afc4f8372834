"""ADMM settings: the single home of every default (STYLE.md §2)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["ADMMSettings", "METHODS", "SCHEDULES", "PRECONDITIONINGS"]

METHODS = ("sync", "async", "star")
SCHEDULES = ("random", "cyclic")
PRECONDITIONINGS = ("curvature", "none")


def _check_range(name: str, value, low, high, *, low_open: bool, high_open: bool) -> float:
    """Validate a real setting (any numbers.Real, NumPy scalars included) and return it as a Python float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"ADMMSettings.{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    ok = math.isfinite(value) or (high == math.inf and value == math.inf and not high_open)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lb = "(" if low_open else "["
        rb = ")" if high_open else "]"
        raise ValueError(f"ADMMSettings.{name} must lie in {lb}{low}, {high}{rb}, got {value!r}")
    return value


def _check_int(name: str, value, low: int) -> int:
    """Validate an integral setting (any numbers.Integral, NumPy integers included) and return a Python int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"ADMMSettings.{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < low:
        raise ValueError(f"ADMMSettings.{name} must be an int >= {low}, got {value!r}")
    return value


@dataclass(frozen=True)
class ADMMSettings:
    """Settings of :func:`consensus_admm.solve` (frozen; make variants with ``dataclasses.replace``).

    Examples
    --------
    >>> s = ADMMSettings(method="async", drop_prob=0.1)
    >>> dataclasses.replace(s, alpha=1.5).alpha
    1.5
    """

    # Algorithm: "sync" (edge-form Jacobi ADMM = DADMM, admm-reference §3.5/§3.7), "async" (Wei-Ozdaglar random
    # edge activation, §3.6), "star" (Boyd global consensus through a centre, §3.1).
    method: str = "sync"
    # Initial penalty rho in [penalty_min, penalty_max] (edge form; DADMM's c = rho / 2), in the preconditioned
    # variable when preconditioning is on. None: from the agents' curvature and the Laplacian spectrum, (H1) or (H3).
    penalty: float | None = None
    # "curvature" (default): diagonal scaling of the consensus variable and a penalty from the spread of curvature,
    # both from curvature statistics averaged over the agents ((P1)-(P3) of consensus_admm.precondition).
    # "none": no scaling and the mean-curvature penalty (H1), the behaviour before preconditioning.
    preconditioning: str = "curvature"
    # Residual balancing of rho (OSQP-style sqrt ratio of normalised residuals) on a fixed iteration schedule.
    # Off by default: it rescues a badly chosen manual penalty (5-50x fewer iterations) but on rings its fixed point
    # lies 5-12x below the best penalty, so it undoes the heuristic (H1) there (BENCHMARKS.md).
    adaptive_penalty: bool = False
    # Iterations between penalty adaptations, >= 1. Deterministic: independent of check_interval and wall clock.
    adaptive_penalty_interval: int = 50
    # A new rho is applied only if it differs from the current one by more than this factor, > 1.
    adaptive_penalty_tolerance: float = 5.0
    # Range of rho, 0 < penalty_min < penalty_max: an explicit penalty must lie in it; the heuristic and the
    # adaptation are clipped to it.
    penalty_min: float = 1e-6
    penalty_max: float = 1e6
    # Over-relaxation alpha in (0, 2) (Boyd §3.4.3); 1 = none. alpha != 1 runs sync on the explicit edge kernel.
    alpha: float = 1.0
    # Stopping: ||r||_inf <= eps_abs + eps_rel * max(||x||_inf, ||z||_inf) and ||s||_inf <= eps_abs + eps_rel *
    # ||lam_agg||_inf (see solver module docstring, eq. (R1)-(R4)). eps_abs >= 0, eps_rel >= 0.
    eps_abs: float = 1e-6
    eps_rel: float = 1e-6
    # Iterations between stopping checks (and callback calls, history rows), >= 1.
    check_interval: int = 10
    # Iteration limit, >= 1. One async iteration is one epoch of n_edges activations.
    max_iter: int = 10_000
    # Async edge schedule: "random" (i.i.d. draws, optionally weighted) or "cyclic" (edges[t % M], as in MATRPO).
    schedule: str = "random"
    # Async activation probabilities, one per edge in GraphArrays.edges order (normalised); None = uniform.
    edge_probabilities: tuple[float, ...] | None = None
    # Probability in [0, 1) that one message is lost; an edge update needs both of its messages.
    drop_prob: float = 0.0
    # Record residuals, consensus error, objective and penalty at every check (ADMMResult.history).
    record_history: bool = False
    # Record the async edge schedule (ADMMResult.schedule) so that it can be replayed.
    record_schedule: bool = False
    # Inner solvers (lasso / box coordinate descent, logistic Newton): tolerance > 0 and iteration cap >= 1.
    inner_tol: float = 1e-12
    inner_max_iter: int = 1000

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"ADMMSettings.method must be one of {METHODS}, got {self.method!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"ADMMSettings.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.preconditioning not in PRECONDITIONINGS:
            raise ValueError(f"ADMMSettings.preconditioning must be one of {PRECONDITIONINGS}, "
                             f"got {self.preconditioning!r}")
        put = object.__setattr__  # frozen: store the normalised Python numbers
        put(self, "penalty_min", _check_range("penalty_min", self.penalty_min, 0.0, math.inf, low_open=True,
                                              high_open=True))
        put(self, "penalty_max", _check_range("penalty_max", self.penalty_max, self.penalty_min, math.inf,
                                              low_open=True, high_open=True))
        if self.penalty is not None:
            try:
                put(self, "penalty", _check_range("penalty", self.penalty, self.penalty_min, self.penalty_max,
                                                  low_open=False, high_open=False))
            except ValueError as exc:
                raise ValueError(f"{exc} (the range is [penalty_min, penalty_max]; change those to go beyond it)") \
                    from None
        put(self, "adaptive_penalty_interval", _check_int("adaptive_penalty_interval",
                                                          self.adaptive_penalty_interval, 1))
        put(self, "adaptive_penalty_tolerance", _check_range("adaptive_penalty_tolerance",
                                                             self.adaptive_penalty_tolerance, 1.0, math.inf,
                                                             low_open=True, high_open=True))
        put(self, "alpha", _check_range("alpha", self.alpha, 0.0, 2.0, low_open=True, high_open=True))
        put(self, "eps_abs", _check_range("eps_abs", self.eps_abs, 0.0, math.inf, low_open=False, high_open=True))
        put(self, "eps_rel", _check_range("eps_rel", self.eps_rel, 0.0, math.inf, low_open=False, high_open=True))
        put(self, "check_interval", _check_int("check_interval", self.check_interval, 1))
        put(self, "max_iter", _check_int("max_iter", self.max_iter, 1))
        put(self, "drop_prob", _check_range("drop_prob", self.drop_prob, 0.0, 1.0, low_open=False, high_open=True))
        put(self, "inner_tol", _check_range("inner_tol", self.inner_tol, 0.0, math.inf, low_open=True,
                                            high_open=True))
        put(self, "inner_max_iter", _check_int("inner_max_iter", self.inner_max_iter, 1))
        for name in ("adaptive_penalty", "record_history", "record_schedule"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"ADMMSettings.{name} must be True or False, got {type(value).__name__}")
            put(self, name, bool(value))
        if self.edge_probabilities is not None:
            if isinstance(self.edge_probabilities, (str, bytes)) or not hasattr(self.edge_probabilities, "__len__"):
                raise TypeError("ADMMSettings.edge_probabilities must be a sequence of reals, one per edge")
            if any(isinstance(p, bool) or not isinstance(p, numbers.Real) for p in self.edge_probabilities):
                raise TypeError("ADMMSettings.edge_probabilities must hold real numbers")
            probs = tuple(float(p) for p in self.edge_probabilities)
            if not probs or any(not math.isfinite(p) or p < 0 for p in probs) or sum(probs) <= 0:
                raise ValueError("ADMMSettings.edge_probabilities must be finite, >= 0, with a positive sum")
            object.__setattr__(self, "edge_probabilities", probs)

    @classmethod
    def from_dict(cls, values: dict) -> "ADMMSettings":
        """Build settings from a dict, rejecting unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ADMMSettings keys {unknown}; known keys are {sorted(known)}")
        return cls(**values)

    @property
    def uses_edge_kernel(self) -> bool:
        """True when sync must run on the explicit edge-state kernel (message drops or over-relaxation)."""
        return self.method == "async" or (self.method == "sync" and (self.drop_prob > 0 or self.alpha != 1.0))
