"""The trust-region step: natural-gradient direction, step length, backtracking line search.

Problem (Schulman et al. 2015, eq. 14): maximise a surrogate L(theta) subject to KLbar(theta_old, theta) <= delta.
Linearising L and taking the quadratic model of KLbar gives the step theta_old + beta s with s = F^{-1} g. Callers
that compose their own objective (MATRPO's augmented Lagrangian, whose gradient is not a surrogate's) can pass the
gradient g and an acceptance loss directly, or assemble the pieces themselves.

Symbols
-------
theta_old  current flat parameters                                 [P]
g          gradient of the surrogate at theta_old (ascent direction) [P]
F          Fisher at theta_old (an FVP), lambda its damping           [P] -> [P]
s          natural-gradient direction, (F + lambda I) s = g            [P]
beta       maximal step length                                      scalar
delta      trust-region radius ``max_kl``                            scalar
c          backtracking coefficient, the k-th try uses c^k            scalar

Equations
---------
(T1) s = (F + lambda I)^{-1} g            by K conjugate-gradient iterations         (TRPO App. C; HARL; MATRPO §4.4.5)
(T2) beta = sqrt(2 delta / s^T (F + lambda I) s)                                     (TRPO App. C; HARL ``shs``)
     from x_0 = 0, CG gives s^T (F + lambda I) s = g^T s, which is MATRPO's form (§4.4.6)
(T3) Delta = beta s,   expected improvement E = g^T Delta                            (HARL ``expected_improve``)
(T4) try theta_k = theta_old + c^k Delta, k = 0 .. max_backtracks - 1, accept the first that passes
     "harl":   KL(theta_k) < delta  and  (L(theta_k) - L(theta_old)) / (c^k E) > accept_ratio  and  improvement > 0
     "matrpo": all finite  and  KL(theta_k) <= kl_slack * delta  and  loss(theta_k) <= loss(theta_old)
(T5) nothing accepted: theta = theta_old, restored bit for bit

A loss to minimise is handled as the surrogate -loss, so "loss not increased" is "surrogate not decreased".

References
----------
Schulman et al., "Trust Region Policy Optimization", ICML 2015, eq. (14) and Appendix C.
HARL ``harl/algorithms/actors/hatrpo.py`` (marl-reference.md §1.4); MATRPO ``AgentModel.update``
(matrpo-reference-code.md §4.4).

Departures
----------
- No "expected improvement" test under the MATRPO rule: MATRPO's loss is nonlinear and its gradient is not g.
- A zero gradient or a non-positive/non-finite curvature s^T F s is a status (no step), not an exception.
- Each candidate's KL is evaluated first and the objective only where the KL test passes (both rules need it), so a
  ``kl_fn`` may stop early and return any value above the bound once it knows the candidate fails (e.g. a partial
  sum of the non-negative per-sample KL terms). Accepted steps are unchanged by this.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor

from .cg import CGInfo, conjugate_gradient
from .params import ParamsLike, flat_grad, flat_params, set_flat_params, trainable_parameters
from .settings import TRPOSettings

__all__ = [
    "StepStatus",
    "StepInfo",
    "LineSearchResult",
    "natural_gradient_direction",
    "max_step_length",
    "backtracking_line_search",
    "trust_region_step",
]

ObjectiveFn = Callable[[Tensor], "float | Tensor"]


class StepStatus(Enum):
    """Outcome of a trust-region step."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"  # no line-search try passed the acceptance rule
    ZERO_GRADIENT = "zero_gradient"  # g = 0: nothing to do
    NONPOSITIVE_CURVATURE = "nonpositive_curvature"  # s^T (F + lambda I) s <= 0 or non-finite


@dataclass(frozen=True)
class LineSearchResult:
    """Result of :func:`backtracking_line_search`."""

    # solution: the returned flat parameters (theta_old when rejected)
    params: Tensor
    accepted: bool
    # algorithm: rejected tries before the accepted one (max_backtracks when none was accepted), and the fraction
    # c^k of the full step taken (0 when none)
    n_backtracks: int
    step_fraction: float
    # quality, at the returned parameters: KL to theta_old and surrogate (-loss) values
    kl: float
    surrogate_before: float
    surrogate_after: float
    # g^T Delta for the full step (T3)
    expected_improvement: float


@dataclass(frozen=True)
class StepInfo:
    """Diagnostics of :func:`trust_region_step` (STYLE.md §3)."""

    # status
    status: StepStatus
    # quality, at the returned parameters: KL(theta_old || theta), surrogate (= -loss) before and after
    kl: float
    surrogate_before: float
    surrogate_after: float
    # g^T Delta of the full step (T3), and beta (T2)
    expected_improvement: float
    step_length: float
    # line search: rejected tries, fraction of the full step taken (0 when none)
    n_backtracks: int
    step_fraction: float
    # conjugate gradient (T1)
    cg_n_iter: int
    cg_residual: float
    # ||g||
    gradient_norm: float

    @property
    def accepted(self) -> bool:
        """Whether the parameters moved."""
        return self.status is StepStatus.ACCEPTED

    @property
    def improvement(self) -> float:
        """Surrogate after minus before (loss decrease)."""
        return self.surrogate_after - self.surrogate_before

    @property
    def loss_before(self) -> float:
        return -self.surrogate_before

    @property
    def loss_after(self) -> float:
        return -self.surrogate_after


def natural_gradient_direction(
    fisher_vector_product: Callable[[Tensor], Tensor],
    gradient: Tensor,
    settings: TRPOSettings,
    *,
    x0: Tensor | None = None,
    ax0: Tensor | None = None,
) -> tuple[Tensor, CGInfo]:
    """Solve (F + lambda I) s = g by conjugate gradient, eq. (T1).

    Parameters
    ----------
    fisher_vector_product : callable
        v -> F v, undamped; ``settings.damping`` (lambda) is added here.
    gradient : torch.Tensor
        g, shape [P].
    settings : TRPOSettings
        Uses ``damping``, ``cg_max_iter``, ``cg_residual_tol``.
    x0 : torch.Tensor, optional
        CG warm start.
    ax0 : torch.Tensor, optional
        (F + lambda I) x0 if known (saves CG's first product; ``info.residual`` of an earlier solve gives
        A s = g - r).

    Returns
    -------
    s : torch.Tensor
        Shape [P].
    info : CGInfo

    Example
    -------
    >>> s, info = natural_gradient_direction(lambda v: 2 * v, torch.ones(3), TRPOSettings(damping=0.0))
    >>> s
    tensor([0.5000, 0.5000, 0.5000])
    """
    damping = settings.damping

    def damped(v: Tensor) -> Tensor:
        return fisher_vector_product(v) + damping * v if damping else fisher_vector_product(v)

    return conjugate_gradient(damped, gradient, max_iter=settings.cg_max_iter,
                              residual_tol=settings.cg_residual_tol, x0=x0, ax0=ax0)


def max_step_length(direction: Tensor, curvature: Tensor, max_kl: float) -> float:
    """Return beta = sqrt(2 delta / s^T A s), the step along s that reaches the KL model's boundary, eq. (T2).

    Parameters
    ----------
    direction : torch.Tensor
        s, shape [P].
    curvature : torch.Tensor
        A s = (F + lambda I) s, shape [P]; or g when s came from CG started at 0 (then s^T g = s^T A s, MATRPO's form).
    max_kl : float
        delta > 0.

    Returns
    -------
    float
        beta; ``nan`` when s^T A s is not positive and finite (no step is possible).

    Example
    -------
    >>> max_step_length(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0]), 0.01)
    0.1
    """
    shs = float(torch.dot(direction, curvature))
    if not math.isfinite(shs) or shs <= 0.0:
        return math.nan
    # (T2)
    return math.sqrt(2.0 * max_kl / shs)


def _as_float(x: float | Tensor) -> float:
    return float(x.detach()) if isinstance(x, Tensor) else float(x)


def _objective(surrogate_fn: ObjectiveFn | None, loss_fn: ObjectiveFn | None) -> tuple[ObjectiveFn, float]:
    if (surrogate_fn is None) == (loss_fn is None):
        raise ValueError("pass exactly one of surrogate_fn (to maximise) and loss_fn (to minimise)")
    if surrogate_fn is not None:
        return surrogate_fn, 1.0
    return loss_fn, -1.0  # type: ignore[return-value]


def backtracking_line_search(
    old_params: Tensor,
    full_step: Tensor,
    *,
    kl_fn: ObjectiveFn,
    settings: TRPOSettings,
    surrogate_fn: ObjectiveFn | None = None,
    loss_fn: ObjectiveFn | None = None,
    expected_improvement: float = math.nan,
    surrogate_before: float | None = None,
    params: ParamsLike | None = None,
) -> LineSearchResult:
    """Backtrack theta_old + c^k Delta until the acceptance rule holds, eqs. (T4)-(T5).

    Parameters
    ----------
    old_params : torch.Tensor
        theta_old, shape [P].
    full_step : torch.Tensor
        Delta = beta s, shape [P].
    kl_fn : callable
        theta -> mean KL(pi_old || pi_theta) (float or 0-d tensor). Called before the objective at each candidate;
        for a candidate it knows to fail it may return any value above the bound (``max_kl`` under "harl",
        ``kl_slack * max_kl`` under "matrpo") without finishing the computation.
    settings : TRPOSettings
        Uses ``acceptance``, ``max_kl``, ``backtrack_coeff``, ``max_backtracks``, ``accept_ratio``, ``kl_slack``.
    surrogate_fn, loss_fn : callable
        Exactly one: theta -> surrogate to maximise, or theta -> loss to minimise (MATRPO's augmented Lagrangian).
    expected_improvement : float
        E = g^T Delta of the full step (T3); required by the "harl" rule.
    surrogate_before : float, optional
        Surrogate (or -loss) at theta_old if already known; evaluated otherwise.
    params : torch.nn.Module or iterable of torch.Tensor, optional
        If given, each candidate is written into these parameters before ``kl_fn`` and the objective are called, and
        on return they hold the returned vector (theta_old restored bit for bit on rejection).

    Returns
    -------
    LineSearchResult

    Example
    -------
    >>> res = backtracking_line_search(
    ...     torch.zeros(1), torch.ones(1), kl_fn=lambda th: float(th[0] ** 2),
    ...     surrogate_fn=lambda th: float(th[0]), expected_improvement=1.0,
    ...     settings=TRPOSettings(max_kl=0.5))
    >>> res.accepted, res.n_backtracks
    (True, 2)
    """
    fn, sign = _objective(surrogate_fn, loss_fn)
    harl = settings.acceptance == "harl"
    if harl and not (math.isfinite(expected_improvement) and expected_improvement > 0):
        # No predicted ascent: the HARL ratio test cannot pass (HARL would divide by a non-positive number).
        expected_improvement = math.nan

    kl_bound = settings.kl_bound

    def evaluate(theta: Tensor) -> tuple[float, float]:
        if params is not None:
            set_flat_params(params, theta)
        with torch.no_grad():
            kl = _as_float(kl_fn(theta))
            if not (math.isfinite(kl) and kl <= kl_bound):
                return math.nan, kl  # rejected by the KL test: the objective is not needed
            return sign * _as_float(fn(theta)), kl

    with torch.no_grad():
        if surrogate_before is None:
            if params is not None:
                set_flat_params(params, old_params)
            surrogate_before = sign * _as_float(fn(old_params))
    n_tries = settings.max_backtracks
    for k in range(n_tries):
        frac = settings.backtrack_coeff**k
        theta = old_params + frac * full_step
        surr, kl = evaluate(theta)
        improvement = surr - surrogate_before
        finite = math.isfinite(surr) and math.isfinite(kl)
        if harl:
            # (T4) HARL: KL strictly inside, enough of the predicted improvement, and a real improvement.
            ok = finite and kl < settings.max_kl and improvement > 0 and (
                improvement / (frac * expected_improvement) > settings.accept_ratio)
        else:
            # (T4) MATRPO: KL within the slack and the loss not increased.
            ok = finite and kl <= kl_bound and improvement >= 0
        if ok:
            return LineSearchResult(theta, True, k, frac, kl, surrogate_before, surr, expected_improvement)
    # (T5)
    if params is not None:
        set_flat_params(params, old_params)
    return LineSearchResult(old_params.clone(), False, n_tries, 0.0, 0.0, surrogate_before, surrogate_before,
                            expected_improvement)


def trust_region_step(
    params: ParamsLike,
    fisher_vector_product: Callable[[Tensor], Tensor],
    *,
    kl_fn: ObjectiveFn,
    settings: TRPOSettings,
    surrogate_fn: ObjectiveFn | None = None,
    loss_fn: ObjectiveFn | None = None,
    gradient: Tensor | None = None,
    cg_x0: Tensor | None = None,
) -> tuple[Tensor, StepInfo]:
    """One TRPO step from the current parameters theta_old, eqs. (T1)-(T5).

    Parameters
    ----------
    params : torch.nn.Module or iterable of torch.Tensor
        theta; updated in place (left exactly as they were when the step is not accepted).
    fisher_vector_product : callable
        v -> F v at theta_old, **undamped** (``settings.damping`` is added here); e.g. :func:`fisher_vector_product`.
    kl_fn : callable
        theta -> mean KL(pi_old || pi_theta). Called after theta has been written into ``params``, with theta as its
        argument (closures over the module can ignore it).
    settings : TRPOSettings
    surrogate_fn, loss_fn : callable
        Exactly one: theta -> surrogate (maximised) or loss (minimised), called like ``kl_fn``. Used by the line
        search, and, when ``gradient`` is None, differentiated at theta_old to give g (so it must then return a
        differentiable tensor built from ``params``).
    gradient : torch.Tensor, optional
        g, shape [P], the ascent direction of the surrogate (for a loss: minus its gradient). MATRPO passes the
        gradient of (1/M) sum_m sum_n w_{n,m} logratio_{n,m}(theta) here and its augmented Lagrangian as ``loss_fn``.
    cg_x0 : torch.Tensor, optional
        CG warm start (then s^T A s costs one more FVP).

    Returns
    -------
    new_params : torch.Tensor
        Flat theta after the step, shape [P] (theta_old if not accepted).
    info : StepInfo

    Example
    -------
    >>> lin = torch.nn.Linear(1, 1, bias=False)
    >>> w0 = flat_params(lin)
    >>> th, info = trust_region_step(
    ...     lin, lambda v: v, kl_fn=lambda th: 0.5 * float(((th - w0) ** 2).sum()),
    ...     surrogate_fn=lambda th: lin.weight.sum(), settings=TRPOSettings())
    >>> info.accepted, info.kl < 0.01
    (True, True)
    """
    fn, sign = _objective(surrogate_fn, loss_fn)
    tensors = trainable_parameters(params)
    old = flat_params(tensors)
    # Gradient of the surrogate (T1's right-hand side).
    if gradient is None:
        with torch.enable_grad():
            value = fn(old)
            if not isinstance(value, Tensor) or not value.requires_grad:
                raise ValueError("without gradient=, the objective must return a differentiable tensor of params")
            g = sign * flat_grad(value, tensors)
        surrogate_before = sign * float(value.detach())
    else:
        g = gradient.detach().to(old)
        if g.shape != old.shape:
            raise ValueError(f"gradient must have shape {tuple(old.shape)}, got {tuple(gradient.shape)}")
        with torch.no_grad():
            surrogate_before = sign * _as_float(fn(old))
    g_norm = float(g.norm())

    def no_step(status: StepStatus, beta: float, cg: CGInfo | None) -> tuple[Tensor, StepInfo]:
        set_flat_params(tensors, old)
        return old.clone(), StepInfo(status, 0.0, surrogate_before, surrogate_before, 0.0, beta, 0, 0.0,
                                     cg.n_iter if cg else 0, cg.residual_norm if cg else 0.0, g_norm)

    if not bool(g.any()):
        return no_step(StepStatus.ZERO_GRADIENT, 0.0, None)
    # (T1)
    s, cg = natural_gradient_direction(fisher_vector_product, g, settings, x0=cg_x0)
    # (T2): from x0 = 0, s^T A s = g^T s exactly in exact arithmetic (Krylov orthogonality of CG).
    if cg_x0 is None:
        curvature = g
    else:
        curvature = fisher_vector_product(s) + settings.damping * s
    beta = max_step_length(s, curvature, settings.max_kl)
    if not math.isfinite(beta):
        return no_step(StepStatus.NONPOSITIVE_CURVATURE, math.nan, cg)
    # (T3)
    full_step = beta * s
    expected = float(torch.dot(g, full_step))
    # (T4)-(T5)
    ls = backtracking_line_search(
        old,
        full_step,
        kl_fn=kl_fn,
        settings=settings,
        surrogate_fn=surrogate_fn,
        loss_fn=loss_fn,
        expected_improvement=expected,
        surrogate_before=surrogate_before,
        params=tensors,
    )
    if not ls.accepted:
        # (T5): the line search already wrote theta_old back; this makes it explicit.
        set_flat_params(tensors, old)
        return old.clone(), StepInfo(StepStatus.REJECTED, 0.0, surrogate_before, surrogate_before, expected, beta,
                                     ls.n_backtracks, 0.0, cg.n_iter, cg.residual_norm, g_norm)
    set_flat_params(tensors, ls.params)
    info = StepInfo(StepStatus.ACCEPTED, ls.kl, surrogate_before, ls.surrogate_after, expected, beta,
                    ls.n_backtracks, ls.step_fraction, cg.n_iter, cg.residual_norm, g_norm)
    return ls.params, info
