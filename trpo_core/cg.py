"""Conjugate gradient for the natural-gradient system (F + lambda I) s = g.

Problem: solve A x = b for symmetric positive definite A given only x -> A x (a Fisher-vector product), with a
fixed, small number of iterations (TRPO uses 10).

Symbols
-------
A       the operator ``matvec``              [n] -> [n]
b       right-hand side (the gradient g)    [n]
x_k     iterate                             [n]
r_k     residual b - A x_k                  [n]
p_k     search direction                    [n]

Equations (Nocedal & Wright, Numerical Optimization, 2nd ed., Algorithm 5.2)
-----------------------------------------------------------------------------
(CG1) r_0 = b - A x_0,  p_0 = r_0
(CG2) alpha_k = r_k^T r_k / p_k^T A p_k
(CG3) x_{k+1} = x_k + alpha_k p_k
(CG4) r_{k+1} = r_k - alpha_k A p_k
(CG5) beta_k = r_{k+1}^T r_{k+1} / r_k^T r_k,  p_{k+1} = r_{k+1} + beta_k p_k

Stopping follows openai/baselines ``cg.py`` as HARL and MATRPO use it: stop when r^T r < ``residual_tol``
(a tolerance on the *squared* norm) or after ``max_iter`` products.

Departures
----------
- Warm start x_0 (``x0``) costs one extra product for r_0, unless the caller passes A x_0 (``ax0``), e.g. kept from
  an earlier solve as A x = b - r; baselines always starts from 0.
- The final residual vector r_k (from the recurrence (CG4)) is returned in ``CGInfo.residual``, so A x = b - r_k is
  available without another product.
- If p^T A p <= 0 (A not positive definite along p) the iteration stops before dividing and reports it, instead of
  returning a garbage step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["CGInfo", "conjugate_gradient"]


@dataclass(frozen=True)
class CGInfo:
    """Diagnostics of one conjugate-gradient solve."""

    # algorithm: number of products with A spent on iterations (x0's r_0 product not counted)
    n_iter: int
    # quality: ||r|| of the returned iterate, from the recurrence (CG4), and of the starting point
    residual_norm: float
    initial_residual_norm: float
    # status: r^T r < residual_tol reached; p^T A p <= 0 or non-finite met (iteration stopped there)
    converged: bool
    nonpositive_curvature: bool
    # the residual vector r_k = b - A x_k of the returned iterate, from the recurrence (CG4)
    residual: Tensor | None = field(default=None, repr=False, compare=False)


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    max_iter: int = 10,
    residual_tol: float = 1e-10,
    x0: Tensor | None = None,
    ax0: Tensor | None = None,
) -> tuple[Tensor, CGInfo]:
    """Approximately solve A x = b by conjugate gradient, eqs. (CG1)-(CG5).

    Parameters
    ----------
    matvec : callable
        x -> A x for a symmetric positive definite A, on vectors shaped like ``b``.
    b : torch.Tensor
        Right-hand side, shape [n].
    max_iter : int
        Maximum number of products with A (iterations).
    residual_tol : float
        Stop when the squared residual r^T r falls below this.
    x0 : torch.Tensor, optional
        Warm start, shape [n]. Default zero (no product spent on r_0).
    ax0 : torch.Tensor, optional
        A x0 when the caller already knows it (then r_0 = b - ax0 costs no product). Only with ``x0``.

    Returns
    -------
    x : torch.Tensor
        Shape [n], same dtype and device as ``b``.
    info : CGInfo
        Iterations and residual norms.

    Raises
    ------
    ValueError
        If ``b`` is not a vector, ``x0`` or ``ax0`` does not match it, ``ax0`` comes without ``x0``, or
        ``max_iter`` < 1.

    Notes
    -----
    Started from x_0 = 0, the returned x lies in the Krylov space K_k(A, b) and its residual is orthogonal to it, so
    x^T A x = b^T x: the step-length formula can use b^T x instead of another product (see ``max_step_length``).

    Example
    -------
    >>> A = torch.tensor([[4.0, 1.0], [1.0, 3.0]])
    >>> x, info = conjugate_gradient(lambda v: A @ v, torch.tensor([1.0, 2.0]))
    >>> bool(torch.allclose(A @ x, torch.tensor([1.0, 2.0]))), info.n_iter
    (True, 2)
    """
    if b.dim() != 1:
        raise ValueError(f"b must be a vector, got shape {tuple(b.shape)}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if x0 is not None and x0.shape != b.shape:
        raise ValueError(f"x0 must have shape {tuple(b.shape)}, got {tuple(x0.shape)}")
    if ax0 is not None and (x0 is None or ax0.shape != b.shape):
        raise ValueError(f"ax0 (= A x0) needs x0 and shape {tuple(b.shape)}, got {tuple(ax0.shape)}")

    # (CG1)
    if x0 is None:
        x = torch.zeros_like(b)
        r = b.clone()
    else:
        x = x0.detach().clone().to(b)
        r = b - (matvec(x) if ax0 is None else ax0.to(b))
    p = r.clone()
    rdotr = torch.dot(r, r)
    initial = float(rdotr.sqrt())
    n_iter = 0
    nonpositive = False
    converged = float(rdotr) < residual_tol
    while not converged and n_iter < max_iter:
        z = matvec(p)
        n_iter += 1
        pz = torch.dot(p, z)
        if not bool(torch.isfinite(pz)) or float(pz) <= 0.0:
            nonpositive = True
            break
        # (CG2)
        alpha = rdotr / pz
        # (CG3)
        x.add_(p, alpha=float(alpha))
        # (CG4)
        r.sub_(z, alpha=float(alpha))
        new_rdotr = torch.dot(r, r)
        # (CG5)
        p = r + (new_rdotr / rdotr) * p
        rdotr = new_rdotr
        converged = float(rdotr) < residual_tol
    info = CGInfo(
        n_iter=n_iter,
        residual_norm=float(rdotr.sqrt()),
        initial_residual_norm=initial,
        converged=converged,
        nonpositive_curvature=nonpositive,
        residual=r,
    )
    return x, info
