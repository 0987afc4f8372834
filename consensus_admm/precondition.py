r"""Preconditioning: a diagonal scaling of the consensus variable and an initial penalty, both computed from
curvature statistics that the agents average among themselves (no central node).

Why
---
ADMM's iteration count depends on the penalty relative to the curvature of the f_i in every direction. With
cond(sum_i H_i) = 1e6 or feature scales spanning 1e-3..1e2 no single scalar penalty suits every direction, and
the mean-curvature rule (H1) of :mod:`consensus_admm.solver` picks a penalty near the *largest* curvatures, 10-100x
too large (BENCHMARKS.md, "ADMM on ill-conditioned problems"). OSQP's answer for a single QP is Ruiz equilibration
plus a penalty chosen on the scaled problem; here the data is spread over agents, so the scaling must come from
statistics the agents can agree on by average consensus.

Symbols
-------
=============  ==================  =========  =============================================================
symbol         code                shape      meaning
=============  ==================  =========  =============================================================
H_i            ``hessian``         (n, n)     Hessian of agent i's smooth part (logistic: at x = 0, its upper
                                              bound); diagonal objectives report only its diagonal
h_i            ``diag``            (n,)       diag(H_i)
h̄, H̄           ``CurvatureStatistics``        averages (1/N) sum_i h_i and (1/N) sum_i H_i
d              ``Preconditioner.scale`` (n,)  diagonal scale, x = D y with D = diag(d)
mu, L          ``curvature``       scalars    extreme eigenvalues of the scaled mean Hessian D H̄ D
lambda_2, _N   -                   scalars    extreme nonzero eigenvalues of the graph Laplacian
=============  ==================  =========  =============================================================

Equations
---------
Every agent computes (h_i, H_i) locally; one average consensus (in-process: the mean; under MPI: a neighbour-only
gather of every agent's statistics, then the same mean in node order, :func:`consensus_admm.mpi.agreed_preconditioner`)
gives h̄ and H̄ to all. Then every agent evaluates the same deterministic function :func:`preconditioner`:

    c_k  = h̄_k if h̄_k > 0 else geomean{h̄_j : h̄_j > 0}                                                    (P1)
    d_k  = (geomean_j c_j / c_k)^{1/2}          (Jacobi equilibration of H̄, normalised to geomean(d) = 1)
    mu, L = smallest eigenvalue above 1e-10 L, and largest eigenvalue, of D H̄ D                              (P2)
    rho_0 = 2 sqrt(mu L) / sqrt(lambda_2 lambda_N)   (sync, async);     rho_0 = sqrt(mu L)   (star)          (P3)

and ADMM runs on the equivalent problem minimize sum_i g_i(y), g_i(y) = f_i(D y), reporting x = D y, duals
lam_x = D^{-1} lam_y, and residuals in the original units (OSQP's unscaled termination).

(P1) is applied only when max(c) / min(c) > ``SCALING_THRESHOLD`` (below it the problem is left in its own units;
the penalty rule (P2)-(P3) still applies) and when every objective can be rescaled (a ``scaled(d)`` method:
all built-ins; a user objective may provide one). With H̄ diagonal (averaging, separable objectives) D H̄ D has
equal diagonal entries, so mu = L and (P3) reduces to (H1). (P3) is (H1) with the mean curvature replaced by the
geometric mean sqrt(mu L) of the curvature range: for a quadratic with curvatures in [mu, L] the best scalar
penalty of ADMM is proportional to sqrt(mu L) (Ghadimi et al. 2015, quoted from memory), and our sweeps put the best
fixed penalty within a factor of about 1.5 of (P3) for cond(H̄) from 1e2 to 1e6 (BENCHMARKS.md).

Departures and limits
---------------------
* Only the diagonal scaling is agreed; a full (non-diagonal) preconditioner would need the agents to agree on an
  n x n factor and would change every prox into a metric prox.
* H̄ is averaged only while n <= ``DENSE_STATISTICS_MAX_DIM`` (an n x n average costs n^2 floats per agent, once);
  above it the diagonal h̄ stands in for the spectrum in (P2).
* Objectives without curvature information (a user ``prox`` without ``hessian()``) make :func:`solve` fall back to
  (H1) with no scaling: nothing can be agreed about an agent that reports nothing.

References
----------
B. Stellato et al., "OSQP", Math. Prog. Comp. 2020, §5.1 (scaling) and §5.2 (penalty).
E. Ghadimi, A. Teixeira, I. Shames, M. Johansson, "Optimal parameter selection for the ADMM", IEEE TAC 2015.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["CurvatureStatistics", "Preconditioner", "local_statistics", "mean_statistics", "preconditioner",
           "SCALING_THRESHOLD", "DENSE_STATISTICS_MAX_DIM"]

SCALING_THRESHOLD = 10.0
DENSE_STATISTICS_MAX_DIM = 1024
_EIG_FLOOR = 1e-10


@dataclass(frozen=True, eq=False)
class CurvatureStatistics:
    """Curvature statistics of one agent, or their average over agents (what average consensus agrees on)."""

    diag: np.ndarray  # (n,) diag(H_i), or the mean over agents
    hessian: np.ndarray | None  # (n, n) H_i or the mean; None when every H_i is diagonal (then diag is exact)


@dataclass(frozen=True, eq=False)
class Preconditioner:
    """Outcome of (P1)-(P3): the scale d (x = d * y), whether it differs from ones, and rho_0 for y."""

    scale: np.ndarray  # (n,)
    scaled: bool
    penalty: float
    curvature: tuple[float, float]  # (mu, L) of the scaled mean Hessian


def local_statistics(objective, dim: int) -> CurvatureStatistics | None:
    """Return agent i's (h_i, H_i), or None when the objective exposes no curvature.

    Built-in objectives (:class:`consensus_admm.Objective`) report their smooth part's Hessian (only the diagonal
    when it is diagonal); any other object may define ``hessian() -> (dim, dim)`` (e.g. at a typical point).
    """
    hdiag = getattr(objective, "hdiag", None)
    hmat = getattr(objective, "hmat", None)
    if hmat is None and hdiag is not None:
        return CurvatureStatistics(np.asarray(hdiag, float).copy(), None)
    if hmat is None:
        fn = getattr(objective, "hessian", None)
        if not callable(fn):
            return None
        hmat = np.asarray(fn(), float)
        if hmat.shape != (dim, dim) or not np.all(np.isfinite(hmat)):
            raise ValueError(f"{type(objective).__name__}.hessian() must return a finite ({dim}, {dim}) array, "
                             f"got shape {hmat.shape}")
    hmat = np.asarray(hmat, float)
    return CurvatureStatistics(np.diag(hmat).copy(), hmat if dim <= DENSE_STATISTICS_MAX_DIM else None)


def mean_statistics(stats: Sequence[CurvatureStatistics | None]) -> CurvatureStatistics | None:
    """Average of the agents' statistics (the value average consensus converges to); None if any is None.

    A diagonal agent contributes diag(h_i) to the mean Hessian when another agent reports a dense one.
    """
    if not stats or any(s is None for s in stats):
        return None
    diag = np.mean([s.diag for s in stats], axis=0)
    dense = [s for s in stats if s.hessian is not None]
    hess = None
    if dense and len(diag) <= DENSE_STATISTICS_MAX_DIM:
        hess = sum(s.hessian if s.hessian is not None else np.diag(s.diag) for s in stats) / len(stats)
    return CurvatureStatistics(diag, hess)


def _geomean(values: np.ndarray) -> float:
    return float(np.exp(np.mean(np.log(values))))


def preconditioner(stats: CurvatureStatistics, laplacian_eigenvalues: tuple[float, float], method: str, *,
                   scalable: bool = True) -> Preconditioner:
    """(P1)-(P3) from the agreed mean statistics.

    Parameters
    ----------
    stats : CurvatureStatistics
        The mean over agents (:func:`mean_statistics`, in-process and under MPI on the gathered statistics).
    laplacian_eigenvalues : (lambda_2, lambda_N) of the graph Laplacian (unused for ``method="star"``).
    method : "sync", "async" or "star".
    scalable : bool
        False when some objective cannot be rescaled: d = 1 and only the penalty rule applies.

    Returns
    -------
    Preconditioner

    Examples
    --------
    >>> st = CurvatureStatistics(np.array([1e-4, 1.0, 1e4]), None)
    >>> p = preconditioner(st, (1.0, 1.0), "star")
    >>> p.scaled, np.round(p.scale, 6).tolist(), round(p.penalty, 6)
    (True, [100.0, 1.0, 0.01], 1.0)
    """
    diag = np.asarray(stats.diag, float)
    n = diag.shape[0]
    pos = diag[diag > 0]
    if pos.size == 0:  # no curvature anywhere (e.g. only boxes and l1): unit scale and curvature
        return Preconditioner(np.ones(n), False, _penalty(1.0, laplacian_eigenvalues, method), (1.0, 1.0))
    c = np.where(diag > 0, diag, _geomean(pos))  # (P1)
    scaled = bool(scalable and c.max() > SCALING_THRESHOLD * c.min())
    d = np.sqrt(_geomean(c) / c) if scaled else np.ones(n)
    if stats.hessian is not None:  # (P2)
        ev = np.linalg.eigvalsh(stats.hessian * d[:, None] * d[None, :])
    else:
        ev = np.sort(diag * d * d)
    big = float(ev[-1])
    if not big > 0:
        return Preconditioner(d, scaled, _penalty(1.0, laplacian_eigenvalues, method), (1.0, 1.0))
    small = float(ev[ev > _EIG_FLOOR * big][0])
    return Preconditioner(d, scaled, _penalty(math.sqrt(small * big), laplacian_eigenvalues, method), (small, big))


def _penalty(kappa: float, laplacian_eigenvalues, method: str) -> float:
    """(P3) (and (H1) of the solver, given kappa = mean curvature)."""
    if method == "star":
        return kappa
    lam2, lamn = laplacian_eigenvalues
    return 2.0 * kappa / math.sqrt(lam2 * lamn)
