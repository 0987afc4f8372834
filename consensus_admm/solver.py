r"""Consensus ADMM over a graph: ``solve(objectives, graph, settings, seed=...)``.

Problem
-------
minimize_x  sum_{i in V} f_i(x)  over a connected undirected graph G = (V, E), agent i holding f_i privately and
talking only to its neighbours. Equivalently (edge form, admm-reference §3.5):

    minimize  sum_i f_i(x_i)   subject to  x_i = z_e,  x_j = z_e   for every edge e = (i, j).          (C)

Symbols
-------
=============  ==================  ============  ======================================================
symbol         code                shape         meaning
=============  ==================  ============  ======================================================
N, M, n        n_agents, n_edges,  -             agents, edges, variable length
               dim
x_i            ``x[i]``            (N, n)        agent i's local copy
z_e            ``z[e]``            (M, n)        edge variable (edge-state kernels)
lam_{e,q}      ``lam[e, s]``       (M, 2, n)     dual of x_q = z_e, q = edges[e, s]
lam_i          ``lam[i]``/``Lam``  (N, n)        aggregate dual sum_{e in E(i)} lam_{e,i}
d_i            ``degree[i]``       (N,)          degree
rho            ``rho``             scalar        penalty (DADMM's c = rho / 2)
alpha          ``alpha``           scalar        over-relaxation, (0, 2)
x̄_i            ``xbar``            (N, n)        neighbour mean (1/d_i) sum_{j in N_i} x_j
z̄_i            ``zbar``            (N, n)        incident-edge mean (1/d_i) sum_{e in E(i)} z_e
=============  ==================  ============  ======================================================

Methods and equations
---------------------
``sync`` (Jacobi edge form = DADMM, §3.5/§3.7). With the dual invariant lam_{e,i} + lam_{e,j} = 0 (true after
any edge update, so assumed of the warm start), z_e = (x_i + x_j)/2 and the edge form collapses to the node form
with one neighbour average per iteration:

    x_i^{k+1}   = prox_{f_i/(rho d_i)}( z̄_i^k - lam_i^k / (rho d_i) )                                   (S1)
    x̄_i^{k+1}   = (1/d_i) sum_{j in N_i} x_j^{k+1}                                                       (S2)
    lam_i^{k+1} = lam_i^k + (rho d_i / 2)(x_i^{k+1} - x̄_i^{k+1})        [= lam + c (L x)_i]              (S3)
    z̄_i^{k+1}   = (x_i^{k+1} + x̄_i^{k+1}) / 2                                                           (S4)

This is Shi et al. (2014) eq. (9) with c = rho/2 (test: ``test_edge_form_with_rho_equals_dadmm_with_c_half_rho`` in
tests/consensus_admm/test_admm_kernels.py). With ``alpha != 1`` or ``drop_prob > 0`` sync runs on the explicit edge
state: all edges active each tick, (A1)-(A3).

``async`` (Wei & Ozdaglar 2013, §3.6): per tick one edge e = (i, j) is drawn (i.i.d., optionally weighted, or
cyclic); both endpoints take (A1) from the current state, then the edge takes (A2)-(A3) (see
:mod:`consensus_admm.edge`). One async *iteration* is one epoch of M ticks, so ``max_iter``, ``check_interval``
and ``n_iter`` count epochs; ``n_activations`` counts ticks.

``star`` (Boyd et al. 2011 §7.1, global consensus through a centre, scaled duals u_i = y_i / rho):

    x_i^{k+1} = prox_{f_i/rho}( z^k - u_i^k );   x̂_i = alpha x_i^{k+1} + (1 - alpha) z^k                  (B1)
    z^{k+1}   = mean_i( x̂_i + u_i^k )                                                                    (B2)
    u_i^{k+1} = u_i^k + x̂_i - z^{k+1}                                                                    (B3)

Residuals and stopping (norm convention: infinity norms over all stacked entries, as OSQP)
------------------------------------------------------------------------------------------
Edge form (Boyd §3.3 applied to (C); sync uses z_e = (x_i + x_j)/2):

    r   = max_{e=(i,j), q in {i,j}} ||x_q - z_e||_inf                                                     (R1)
    s   = max_i rho ||sum_{e in E(i)} (z_e^{k+1} - z_e^k)||_inf     (over the last iteration)              (R2)
    eps_pri  = eps_abs + eps_rel max( max_i ||x_i||_inf, max_e ||z_e||_inf )                               (R3)
    eps_dual = eps_abs + eps_rel max_i ||lam_i||_inf                                                       (R4)

Star: r = max_i ||x_i - z||_inf, s = rho ||z^{k+1} - z^k||_inf, eps_pri as (R3) with z, eps_dual with y = rho u.
The run stops with SOLVED when r <= eps_pri and s <= eps_dual at a check (every ``check_interval`` iterations);
at ``max_iter`` it reports SOLVED_INACCURATE if the test holds with both tolerances x10 (``success`` is False:
inaccurate is not solved), else MAX_ITER. DIVERGED: a non-finite value, or max |x| more than 1e30 times its size at
the first check (at least 1 and the warm start's size), so the cut-off follows the problem's scale. STOPPED: the
callback raised StopIteration.

Preconditioning (default, ``preconditioning="curvature"``; :mod:`consensus_admm.precondition`)
---------------------------------------------------------------------------------------------
The agents average curvature statistics (diag(H_i) and, for n <= 1024, H_i) -- one average consensus, no central
node -- and all evaluate :func:`consensus_admm.precondition.preconditioner` on the average: a diagonal scale d
(Jacobi equilibration of the mean Hessian, applied when its diagonal spans more than 10x) and

    rho_0 = 2 sqrt(mu L) / sqrt(lambda_2 lambda_N) (sync, async),   rho_0 = sqrt(mu L) (star),           (H3)

mu, L the extreme eigenvalues of the scaled mean Hessian. ADMM then runs on y = x / d (objectives y -> f_i(d y),
their ``scaled(d)``); iterates, duals and residuals are reported in the original units (x = d y, lam_x = lam_y / d),
so the stopping test (R1)-(R4) is OSQP's unscaled one, while (H2) balances the scaled residuals. ``penalty`` and
the reported ``penalty`` are rho of y. Objectives without curvature information (a user prox without
``hessian()``) fall back to (H1) with no scaling; ``preconditioning="none"`` is the behaviour before (H3).

Penalty
-------
Initial with ``preconditioning="none"`` (``penalty=None``): with kappa = geometric mean over agents of the mean Hessian eigenvalue
trace(H_i)/n of the smooth part (objectives (P2); logistic: at x = 0; 1 if unknown) and lambda_2, lambda_N the
extreme nonzero Laplacian eigenvalues,

    rho_0 = 2 kappa / sqrt(lambda_2 lambda_N)   (sync, async),      rho_0 = kappa   (star).              (H1)

(H1) follows the optimal-scaling rule for quadratic consensus (c* ~ curvature / sqrt(lambda_2 lambda_N); Ghadimi
et al. 2015, Teixeira et al. 2016, quoted from memory, not re-derived here) with the mean curvature, which matched
the best grid penalty within a factor of about 2 in our measurements (BENCHMARKS.md); it is a heuristic for
non-quadratic f_i. Adaptive (``adaptive_penalty=True``; residual balancing, OSQP's rule on a deterministic
schedule): every ``adaptive_penalty_interval`` iterations,

    rho' = clip( rho sqrt( (r / max(||x||, ||z||)) / (s / ||lam||) ), penalty_min, penalty_max )           (H2)

applied only when rho'/rho is outside [1/tol, tol] (``adaptive_penalty_tolerance``). The unscaled duals lam are
kept (star: u is rescaled by rho/rho'), and cached Cholesky factors are refreshed.

Departures from the papers
--------------------------
* Residuals use infinity norms (OSQP) rather than Boyd's sqrt(p)-scaled 2-norms, so tolerances do not grow with
  N and n.
* Async counts iterations in epochs of M activations (the papers count ticks) so that settings mean the same for
  every method.
* Message loss (``drop_prob``) is a simulation feature, not in Wei-Ozdaglar: a lost message leaves the edge state
  unchanged, which keeps the dual invariant and is equivalent to that edge not being activated.

References
----------
S. Boyd et al., "Distributed optimization and statistical learning via ADMM", FnT ML 2011, §3.3, §3.4, §7.1.
W. Shi, Q. Ling, K. Yuan, G. Wu, W. Yin, "On the linear convergence of the ADMM in decentralized consensus
optimization", IEEE TSP 2014, eq. (9).
E. Wei, A. Ozdaglar, "On the O(1/k) convergence of asynchronous distributed ADMM", arXiv:1307.8254, 2013.
B. Stellato et al., "OSQP: an operator splitting solver for quadratic programs", 2020 (residuals, adaptive rho).
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from . import _kernels as K
from ._problem import Problem
from .edge import EdgeStream, as_generator
from .graphs import GraphArrays, graph_arrays
from .precondition import Preconditioner, local_statistics, mean_statistics, preconditioner
from .results import ADMMHistory, ADMMResult, ADMMStatus, SolverState
from .settings import ADMMSettings

__all__ = [
    "solve",
    "initial_penalty",
    "problem_preconditioner",
    "x_update",
    "z_update",
    "dual_update",
    "residuals",
    "adapt_penalty",
    "should_stop",
]

# DIVERGED when max |x| exceeds this factor times its size at the first check (or 1, or the warm start's size).
DIVERGENCE_FACTOR = 1e30
_MAX_TICKS_PER_CALL = 1 << 20


# ----------------------------------------------------------------------------------------------------------------
# One function per update (readable NumPy reference of one edge-form Jacobi iteration; the kernels fuse them)
# ----------------------------------------------------------------------------------------------------------------


def x_update(prox_batch, z, lam, rho, ga: GraphArrays, x_warm):
    """(A1)/(S1): x_i = prox_{f_i/(rho d_i)}((1/d_i) sum_{e in E(i)} (z_e - lam_{e,i}/rho)) for every agent."""
    n, dim = ga.n_agents, z.shape[1]
    arg = np.zeros((n, dim), dtype=z.dtype)
    for e, (i, j) in enumerate(ga.edges):  # sum over incident edges
        arg[i] += z[e] - lam[e, 0] / rho
        arg[j] += z[e] - lam[e, 1] / rho
    arg /= ga.degree[:, None]
    return prox_batch(np.arange(n), arg, rho * ga.degree.astype(float), x_warm)


def z_update(x, z, lam, rho, alpha, ga: GraphArrays):
    """(A2): z_e = (x̂_i + x̂_j)/2 + (lam_{e,i} + lam_{e,j})/(2 rho), x̂_q = alpha x_q + (1 - alpha) z_e^old."""
    i, j = ga.edges[:, 0], ga.edges[:, 1]
    xhi = alpha * x[i] + (1.0 - alpha) * z
    xhj = alpha * x[j] + (1.0 - alpha) * z
    return 0.5 * (xhi + xhj) + (lam[:, 0] + lam[:, 1]) / (2.0 * rho)


def dual_update(x, z_old, z_new, lam, rho, alpha, ga: GraphArrays):
    """(A3): lam_{e,q} += rho (x̂_q - z_e^new) for q in {i, j}; returns a new (M, 2, n) array."""
    out = lam.copy()
    for side in range(2):
        xh = alpha * x[ga.edges[:, side]] + (1.0 - alpha) * z_old
        out[:, side] += rho * (xh - z_new)
    return out


class Residuals(NamedTuple):
    r: float  # (R1)
    s: float  # (R2)
    eps_pri: float  # (R3)
    eps_dual: float  # (R4)
    x_scale: float  # max(||x||_inf, ||z||_inf)
    lam_scale: float  # max_i ||lam_i||_inf


def residuals(x, z_for_r, dz_sum, lam_agg, rho, eps_abs, eps_rel, *, edges=None) -> "Residuals":
    """(R1)-(R4). Returns Residuals(r, s, eps_pri, eps_dual, x_scale, lam_scale).

    Parameters
    ----------
    x : (N, n) local copies.
    z_for_r : (M, n) edge variables with ``edges`` (edge form), or (n,) the centre z (star, ``edges=None``).
    dz_sum : (N, n) sum_{e in E(i)} (z_e^{k+1} - z_e^k) (star: (n,) z^{k+1} - z^k).
    lam_agg : (N, n) aggregate duals lam_i (star: y_i).
    """
    if edges is None:
        r = float(np.max(np.abs(x - z_for_r[None, :])))
    else:
        r = float(max(np.max(np.abs(x[edges[:, 0]] - z_for_r)), np.max(np.abs(x[edges[:, 1]] - z_for_r))))
    s = float(rho * np.max(np.abs(dz_sum)))
    x_scale = max(float(np.max(np.abs(x))), float(np.max(np.abs(z_for_r))))
    lam_scale = float(np.max(np.abs(lam_agg)))
    return Residuals(r, s, eps_abs + eps_rel * x_scale, eps_abs + eps_rel * lam_scale, x_scale, lam_scale)


def should_stop(r, s, eps_pri, eps_dual, factor: float = 1.0) -> bool:
    """Stopping test r <= factor eps_pri and s <= factor eps_dual (factor 10 for SOLVED_INACCURATE)."""
    return r <= factor * eps_pri and s <= factor * eps_dual


def adapt_penalty(rho, r, s, x_scale, lam_scale, settings: ADMMSettings) -> float:
    """(H2): residual balancing. Returns the new rho (equal to ``rho`` when no change is warranted)."""
    if not (r > 0 and s > 0 and x_scale > 0 and lam_scale > 0):
        return rho
    ratio = math.sqrt((r / x_scale) / (s / lam_scale))
    new = min(max(rho * ratio, settings.penalty_min), settings.penalty_max)
    tol = settings.adaptive_penalty_tolerance
    if new > tol * rho or new < rho / tol:
        return new
    return rho


def initial_penalty(problem: Problem, ga: GraphArrays, method: str) -> float:
    """(H1): rho_0 from the agents' curvature scale and the Laplacian's extreme nonzero eigenvalues."""
    return penalty_for_curvature(problem.curvature_scale(), ga, method)


def penalty_for_curvature(kappa: float, ga: GraphArrays, method: str) -> float:
    """(H1) for a given curvature scale kappa (the rule shared with :mod:`consensus_admm.mpi`)."""
    if method == "star":
        return kappa
    lam2, lamn = ga.laplacian_eigenvalues
    return 2.0 * kappa / math.sqrt(lam2 * lamn)


def problem_preconditioner(problem: Problem, ga: GraphArrays, settings: ADMMSettings) -> Preconditioner | None:
    """(H3): the preconditioner of :mod:`consensus_admm.precondition` from the agents' curvature statistics, or
    None (use (H1), no scaling) when preconditioning is off or some agent reports no curvature."""
    if settings.preconditioning == "none":
        return None
    stats = mean_statistics([local_statistics(o, problem.dim) for o in problem.objectives])
    if stats is None:
        return None
    eigs = ga.laplacian_eigenvalues if settings.method != "star" else (1.0, 1.0)
    return preconditioner(stats, eigs, settings.method, scalable=problem.scalable)


def _residuals(runner, settings: ADMMSettings, scale):
    """(R1)-(R4) in the original units (x = scale * y, lam_x = lam_y / scale) and in the scaled ones (for (H2))."""
    x, z, dz, lam, edges = runner.residual_inputs()
    in_scaled = residuals(x, z, dz, lam, runner.rho, settings.eps_abs, settings.eps_rel, edges=edges)
    if scale is None:
        return in_scaled, in_scaled
    return residuals(x * scale, z * scale, dz / scale, lam / scale, runner.rho, settings.eps_abs,
                     settings.eps_rel, edges=edges), in_scaled


# ----------------------------------------------------------------------------------------------------------------
# Runners: the state of one method, advanced by a compiled kernel (or its twin on the generic path)
# ----------------------------------------------------------------------------------------------------------------


class _GraphRunner:
    """What the graph runners share: a penalty change refreshes the cached local factorizations (d_i rho)."""

    def set_penalty(self, rho):
        self.rho = rho
        if self.p.fused:
            self.p.packed.refresh_cholesky(rho * self.ga.degree.astype(float))


class _NodeRunner(_GraphRunner):
    """sync, alpha = 1, no drops: fused DADMM kernel (S1)-(S4)."""

    def __init__(self, problem: Problem, ga: GraphArrays, settings: ADMMSettings, rho, x0, lam0):
        self.p, self.ga, self.st = problem, ga, settings
        self.rho = rho
        self.x = x0
        self.lam = lam0
        self.xbuf = np.empty_like(x0)
        self.zbar_prev = np.empty_like(x0)
        self.zbar = np.empty_like(x0)
        self.n_iter = 0
        self._prox = problem.prox_batch(settings.inner_tol, settings.inner_max_iter)
        self.set_penalty(rho)


    def run(self, n):
        ga = self.ga
        if self.p.fused:
            K.sync_node_run(n, self.x, self.lam, self.xbuf, self.zbar_prev, self.zbar, self.rho, ga.indptr,
                            ga.indices, ga.degree,
                            *self.p.packed.args(self.st.inner_tol, self.st.inner_max_iter))
        else:
            self.x, self.lam, self.zbar_prev, self.zbar = K.sync_node_run_np(
                n, self.x, self.lam, self.rho, ga.indptr, ga.indices, ga.degree, self._prox)
        self.n_iter += n

    def residual_inputs(self):
        e = self.ga.edges
        z = 0.5 * (self.x[e[:, 0]] + self.x[e[:, 1]])
        return self.x, z, self.ga.degree[:, None] * (self.zbar - self.zbar_prev), self.lam, e

    def finite(self):
        return bool(np.all(np.isfinite(self.x)) and np.all(np.isfinite(self.lam)))

    def comm(self):
        deg = self.ga.degree.astype(np.int64)
        return (deg * self.n_iter, deg * self.n_iter * self.x.shape[1],
                np.full(self.ga.n_edges, 2 * self.n_iter, np.int64))

    def extras(self):
        return dict(edge_z=None, edge_duals=None, dual=self.lam.copy(), n_activations=self.n_iter * self.ga.n_edges)


class _EdgeRunner(_GraphRunner):
    """async (one edge per tick) or sync on explicit edge state (all edges per tick): (A1)-(A3)."""

    def __init__(self, problem, ga, settings, rho, x0, z0, lam0, stream: EdgeStream, is_async: bool):
        self.p, self.ga, self.st = problem, ga, settings
        self.x, self.z, self.lam = x0, z0, lam0
        n, m = ga.n_agents, ga.n_edges
        self.S = np.zeros_like(x0)
        self.Lam = np.zeros_like(x0)
        np.add.at(self.S, ga.edges[:, 0], z0)
        np.add.at(self.S, ga.edges[:, 1], z0)
        np.add.at(self.Lam, ga.edges[:, 0], lam0[:, 0])
        np.add.at(self.Lam, ga.edges[:, 1], lam0[:, 1])
        self.S_snap = self.S.copy()
        self.stamp = np.full(n, -1, np.int64)
        self.msgs = np.zeros(n, np.int64)
        self.floats = np.zeros(n, np.int64)
        self.activations = np.zeros(m, np.int64)
        self.balanced = np.all(lam0[:, 0] + lam0[:, 1] == 0, axis=1)
        self.stream, self.is_async = stream, is_async
        self.ticks = 0
        self.n_iter = 0
        self.recorded = [] if settings.record_schedule and is_async else None
        self._prox = problem.prox_batch(settings.inner_tol, settings.inner_max_iter)
        self.set_penalty(rho)


    def _ticks(self, n_ticks):
        m = self.ga.n_edges
        while n_ticks > 0:
            if self.is_async:
                t = min(n_ticks, _MAX_TICKS_PER_CALL)
                edges_ = self.stream.edges(t)
                ptr = np.arange(t + 1, dtype=np.int64)
                if self.recorded is not None:
                    self.recorded.append(edges_.copy())
            else:
                t = 1
                edges_ = np.arange(m, dtype=np.int64)
                ptr = np.array([0, m], dtype=np.int64)
            drops = self.stream.drops(len(edges_))
            args = (ptr, edges_, drops, self.st.drop_prob, self.x, self.z, self.lam, self.S, self.Lam, self.rho,
                    self.st.alpha, self.ga.edges, self.ga.degree, self.stamp, self.ticks, self.msgs, self.floats,
                    self.activations, self.balanced)
            if self.p.fused:
                K.edge_run(*args, *self.p.packed.args(self.st.inner_tol, self.st.inner_max_iter))
            else:
                K.edge_run_np(*args, self._prox)
            self.ticks += t
            n_ticks -= t

    def run(self, n):
        per_iter = self.ga.n_edges if self.is_async else 1
        if n > 1:
            self._ticks((n - 1) * per_iter)
        self.S_snap[:] = self.S
        self._ticks(per_iter)
        self.n_iter += n

    def residual_inputs(self):
        return self.x, self.z, self.S - self.S_snap, self.Lam, self.ga.edges

    def finite(self):
        return bool(np.all(np.isfinite(self.x)) and np.all(np.isfinite(self.z)) and np.all(np.isfinite(self.lam)))

    def comm(self):
        return self.msgs.copy(), self.floats.copy(), 2 * self.activations

    def extras(self):
        sched = np.concatenate(self.recorded) if self.recorded else (
            np.zeros(0, np.int64) if self.recorded is not None else None)
        return dict(edge_z=self.z.copy(), edge_duals=self.lam.copy(), dual=self.Lam.copy(),
                    n_activations=int(self.activations.sum()), schedule=sched)


class _StarRunner:
    """Boyd global consensus (B1)-(B3)."""

    def __init__(self, problem, ga, settings, rho, x0, y0):
        self.p, self.ga, self.st = problem, ga, settings
        self.x = x0
        self.u = y0 / rho
        self.zc = x0.mean(axis=0)
        self.zc_prev = self.zc.copy()
        self.n_iter = 0
        self.rho = rho
        self._prox = problem.prox_batch(settings.inner_tol, settings.inner_max_iter)
        self.set_penalty(rho)

    def set_penalty(self, rho):
        self.u *= self.rho / rho  # keep y = rho u
        self.rho = rho
        if self.p.fused:
            self.p.packed.refresh_cholesky(np.full(self.ga.n_agents, rho))

    def run(self, n):
        if self.p.fused:
            K.star_run(n, self.x, self.u, self.zc, self.zc_prev, self.rho, self.st.alpha,
                       *self.p.packed.args(self.st.inner_tol, self.st.inner_max_iter))
        else:
            self.x, self.u, self.zc, self.zc_prev = K.star_run_np(n, self.x, self.u, self.zc, self.rho,
                                                                  self.st.alpha, self._prox)
        self.n_iter += n

    def residual_inputs(self):
        return self.x, self.zc, self.zc - self.zc_prev, self.rho * self.u, None

    def finite(self):
        return bool(np.all(np.isfinite(self.x)) and np.all(np.isfinite(self.u)) and np.all(np.isfinite(self.zc)))

    def comm(self):
        n, dim = self.ga.n_agents, self.x.shape[1]
        return (np.full(n, self.n_iter, np.int64), np.full(n, self.n_iter * dim, np.int64), None)

    def extras(self):
        return dict(edge_z=None, edge_duals=None, dual=self.rho * self.u, n_activations=0)


# ----------------------------------------------------------------------------------------------------------------
# Warm start
# ----------------------------------------------------------------------------------------------------------------


def _array(name, value, shape, dtype):
    try:
        arr = np.array(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"warm_start {name} must be a real array of shape {shape}: {exc}") from None
    if arr.shape != shape:
        raise ValueError(f"warm_start {name} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"warm_start {name} must be finite")
    return arr


def _edge_duals_from_aggregate(lam_agg, ga: GraphArrays):
    """Minimum-norm per-edge duals (lam_{e,i} = -lam_{e,j}) with the given node aggregates (sum-zero part)."""
    inc = np.zeros((ga.n_edges, ga.n_agents))
    inc[np.arange(ga.n_edges), ga.edges[:, 0]] = 1.0
    inc[np.arange(ga.n_edges), ga.edges[:, 1]] = -1.0
    lam_e = np.linalg.lstsq(inc.T, lam_agg - lam_agg.mean(axis=0), rcond=None)[0]
    return np.stack([lam_e, -lam_e], axis=1)


def _initial_state(warm_start, ga: GraphArrays, dim, dtype, settings: ADMMSettings):
    """Return (x0, lam_agg0 or None, z0 or None, edge_duals0 or None, penalty or None), in the original units."""
    n, m = ga.n_agents, ga.n_edges
    if warm_start is None:
        return np.zeros((n, dim), dtype), None, None, None, None
    if isinstance(warm_start, Mapping):
        unknown = sorted(set(warm_start) - {"x", "dual", "edge_z", "edge_duals", "penalty"})
        if unknown:
            raise ValueError(f"unknown warm_start keys {unknown}; use x, dual, edge_z, edge_duals, penalty")
        get = warm_start.get
    elif isinstance(warm_start, ADMMResult):
        def get(key):
            return getattr(warm_start, key)
    else:
        raise TypeError("warm_start must be None, an ADMMResult or a dict with keys x, dual, edge_z, edge_duals, "
                        f"penalty; got {type(warm_start).__name__}")
    x = get("x")
    x0 = np.zeros((n, dim), dtype) if x is None else _array("x", x, (n, dim), dtype)
    dual = get("dual")
    lam = None if dual is None else _array("dual", dual, (n, dim), dtype)
    ez = get("edge_z")
    ez = None if ez is None else _array("edge_z", ez, (m, dim), dtype)
    ed = get("edge_duals")
    ed = None if ed is None else _array("edge_duals", ed, (m, 2, dim), dtype)
    pen = get("penalty")
    if pen is not None:
        if isinstance(pen, bool) or not isinstance(pen, numbers.Real) or not (
                settings.penalty_min <= float(pen) <= settings.penalty_max):
            raise ValueError(f"warm_start penalty must be a real number in [penalty_min, penalty_max] = "
                             f"[{settings.penalty_min}, {settings.penalty_max}], got {pen!r}")
        pen = float(pen)
    return x0, lam, ez, ed, pen


# ----------------------------------------------------------------------------------------------------------------
# The driver
# ----------------------------------------------------------------------------------------------------------------


def solve(objectives, graph, settings: ADMMSettings | None = None, *, seed=None, callback=None, warm_start=None,
          schedule=None) -> ADMMResult:
    """Minimise sum_i f_i(x) over a graph by consensus ADMM.

    Parameters
    ----------
    objectives : sequence of objectives, one per node in ``list(graph.nodes)`` order
        Built-ins (:mod:`consensus_admm.objectives`) run in compiled kernels; any object with ``prox(v, t)`` works
        through the generic path.
    graph : networkx.Graph
        Connected, undirected, simple, >= 2 nodes; labels may be any hashables (rows of ``result.x`` follow
        ``result.nodes``).
    settings : ADMMSettings, optional
        Defaults precondition the problem (see "Preconditioning" in the module docstring).
    seed : int >= 0, numpy Generator or None
        Seeds the async schedule and message drops (sync and star without drops are deterministic anyway).
    callback : callable(SolverState) -> None, optional
        Called at each stopping check; raising StopIteration ends the run with status STOPPED.
    warm_start : ADMMResult or dict with optional keys x (N, n), dual (N, n) aggregate duals, edge_z (M, n),
        edge_duals (M, 2, n), penalty
        Initial primal/dual values in the original units (e.g. a previous result). Aggregate duals are projected
        to sum zero. ``penalty`` (in [penalty_min, penalty_max]) is used when ``settings.penalty`` is None.
    schedule : 1-D integer array, optional
        Replay a recorded async schedule (``ADMMResult.schedule``) instead of drawing one (floats are refused).

    Returns
    -------
    ADMMResult

    Raises
    ------
    TypeError, ValueError
        Invalid graph, objectives, settings or warm start (see the messages).

    Examples
    --------
    >>> import networkx as nx, numpy as np
    >>> from consensus_admm import solve, Averaging
    >>> res = solve([Averaging([float(i)]) for i in range(4)], nx.cycle_graph(4))
    >>> res.status.name, np.round(res.x[:, 0], 5).tolist()
    ('SOLVED', [1.5, 1.5, 1.5, 1.5])
    """
    t_start = time.perf_counter()
    settings = ADMMSettings() if settings is None else settings
    if not isinstance(settings, ADMMSettings):
        raise TypeError(f"settings must be an ADMMSettings, got {type(settings).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable")
    ga = graph_arrays(graph)
    problem = Problem(objectives, ga.n_agents)
    if settings.method == "star" and settings.drop_prob > 0:
        raise ValueError("ADMMSettings.drop_prob > 0 is not supported with method='star' (it needs all messages)")
    if settings.edge_probabilities is not None and len(settings.edge_probabilities) != ga.n_edges:
        raise ValueError(f"ADMMSettings.edge_probabilities has {len(settings.edge_probabilities)} entries but the "
                         f"graph has {ga.n_edges} edges")
    if schedule is not None and settings.method != "async":
        raise ValueError("schedule replay applies to method='async' only")
    dim, dtype = problem.dim, np.float64
    x0, lam0, ez0, ed0, pen0 = _initial_state(warm_start, ga, dim, dtype, settings)
    rng = as_generator(seed)
    prec = problem_preconditioner(problem, ga, settings)
    scale = prec.scale if prec is not None and prec.scaled else None
    if settings.penalty is not None or pen0 is not None:
        rho = settings.penalty if settings.penalty is not None else pen0
    else:
        rho = prec.penalty if prec is not None else initial_penalty(problem, ga, settings.method)
        rho = min(max(float(rho), settings.penalty_min), settings.penalty_max)
    rho_init = rho
    x_ref = max(1.0, float(np.max(np.abs(x0))))
    if scale is not None:  # the solver runs on y = x / scale, lam_y = scale * lam_x
        problem_y = problem.scaled(scale)
        x0 = x0 / scale
        lam0 = None if lam0 is None else lam0 * scale
        ez0 = None if ez0 is None else ez0 / scale
        ed0 = None if ed0 is None else ed0 * scale
    else:
        problem_y = problem

    if settings.method == "star":
        y0 = np.zeros((ga.n_agents, dim)) if lam0 is None else lam0 - lam0.mean(axis=0)
        runner = _StarRunner(problem_y, ga, settings, rho, x0, y0)
    elif not settings.uses_edge_kernel:
        if lam0 is None and ed0 is not None:
            lam0 = np.zeros((ga.n_agents, dim))
            np.add.at(lam0, ga.edges[:, 0], ed0[:, 0])
            np.add.at(lam0, ga.edges[:, 1], ed0[:, 1])
        lam0 = np.zeros((ga.n_agents, dim)) if lam0 is None else lam0 - lam0.mean(axis=0)
        runner = _NodeRunner(problem_y, ga, settings, rho, x0, np.ascontiguousarray(lam0))
    else:
        if ed0 is None:
            ed0 = np.zeros((ga.n_edges, 2, dim)) if lam0 is None else _edge_duals_from_aggregate(lam0, ga)
        if ez0 is None:
            ez0 = 0.5 * (x0[ga.edges[:, 0]] + x0[ga.edges[:, 1]])
        stream = EdgeStream(rng, ga.n_edges, settings.schedule, settings.edge_probabilities, settings.drop_prob,
                            replay=schedule)
        runner = _EdgeRunner(problem_y, ga, settings, rho, x0, np.ascontiguousarray(ez0),
                             np.ascontiguousarray(ed0), stream, settings.method == "async")
    setup_time = time.perf_counter() - t_start

    t_solve = time.perf_counter()
    hist = {k: [] for k in ("iteration", "primal_residual", "dual_residual", "eps_primal", "eps_dual",
                            "consensus_error", "objective", "penalty")}
    status, message = None, ""
    n_updates = 0
    k = 0
    r = s = eps_pri = eps_dual = float("nan")
    ci, ai = settings.check_interval, settings.adaptive_penalty_interval
    unscale = (lambda y: y) if scale is None else (lambda y: y * scale)
    first_check = True
    while k < settings.max_iter:
        nxt = min((k // ci + 1) * ci, settings.max_iter)
        if settings.adaptive_penalty:
            nxt = min(nxt, (k // ai + 1) * ai)
        runner.run(nxt - k)
        k = nxt
        res, res_y = _residuals(runner, settings, scale)
        r, s, eps_pri, eps_dual = res.r, res.s, res.eps_pri, res.eps_dual
        if first_check:  # the problem's own scale: the iterates' size after the first check_interval steps
            x_ref, first_check = max(x_ref, res.x_scale), False
        if not runner.finite() or not (math.isfinite(r) and math.isfinite(s)) or \
                res.x_scale > DIVERGENCE_FACTOR * x_ref:
            status, message = ADMMStatus.DIVERGED, f"non-finite or exploding iterates at iteration {k}"
            break
        if k % ci == 0 or k == settings.max_iter:
            x_now = unscale(runner.x)
            cons = _consensus_error(x_now)
            if settings.record_history:
                for key, val in (("iteration", k), ("primal_residual", r), ("dual_residual", s),
                                 ("eps_primal", eps_pri), ("eps_dual", eps_dual), ("consensus_error", cons),
                                 ("objective", problem.value(np.broadcast_to(x_now.mean(0), x_now.shape))),
                                 ("penalty", runner.rho)):
                    hist[key].append(val)
            if callback is not None:
                try:
                    callback(SolverState(k, x_now.copy(), r, s, eps_pri, eps_dual, cons, runner.rho))
                except StopIteration:
                    status, message = ADMMStatus.STOPPED, f"callback raised StopIteration at iteration {k}"
                    break
            if should_stop(r, s, eps_pri, eps_dual):
                status, message = ADMMStatus.SOLVED, f"converged at iteration {k}"
                break
        if settings.adaptive_penalty and k % ai == 0 and k < settings.max_iter:
            n_updates += adapt_runner_penalty(runner, res_y, settings)  # (H2) on the scaled problem
    if status is None:
        status, message = limit_status(res, settings)
    solve_time = time.perf_counter() - t_solve

    x = unscale(runner.x.copy())
    consensus = x.mean(axis=0)
    extras = original_units(runner.extras(), scale)
    msgs, floats, per_edge = runner.comm()
    history = ADMMHistory(**{key: np.asarray(val, dtype=np.int64 if key == "iteration" else float)
                             for key, val in hist.items()}) if settings.record_history else None
    objective = problem.value(np.broadcast_to(consensus, x.shape)) if status != ADMMStatus.DIVERGED else float("nan")
    return ADMMResult(
        x=x, consensus=consensus, dual=extras["dual"], edge_z=extras["edge_z"], edge_duals=extras["edge_duals"],
        nodes=list(ga.nodes), edges=ga.edges.copy(), method=settings.method,
        status=status, message=message,
        primal_residual=r, dual_residual=s, eps_primal=eps_pri, eps_dual=eps_dual,
        consensus_error=_consensus_error(x), objective=objective,
        n_iter=k, n_activations=int(extras["n_activations"]), n_penalty_updates=n_updates, penalty=runner.rho,
        initial_penalty=rho_init,
        messages_per_node=msgs, floats_per_node=floats, messages_per_edge=per_edge,
        setup_time=setup_time, solve_time=solve_time, scale=np.ones(dim) if scale is None else scale.copy(),
        history=history, schedule=extras.get("schedule"),
    )


def adapt_runner_penalty(runner, res: Residuals, settings: ADMMSettings) -> int:
    """(H2) applied to a runner; returns 1 when the penalty changed, else 0."""
    new = adapt_penalty(runner.rho, res.r, res.s, res.x_scale, res.lam_scale, settings)
    if new == runner.rho:
        return 0
    runner.set_penalty(new)
    return 1


def original_units(extras: dict, scale: np.ndarray | None) -> dict:
    """The runner's duals and edge variables back in the problem's units (x = scale y, lam_x = lam_y / scale)."""
    if scale is not None:
        extras["dual"] = extras["dual"] / scale
        if extras["edge_z"] is not None:
            extras["edge_z"], extras["edge_duals"] = extras["edge_z"] * scale, extras["edge_duals"] / scale
    return extras


def limit_status(res: Residuals, settings: ADMMSettings) -> tuple[ADMMStatus, str]:
    """Status at ``max_iter``: SOLVED_INACCURATE when the stopping test holds at 10x tolerance, else MAX_ITER."""
    if should_stop(res.r, res.s, res.eps_pri, res.eps_dual, 10.0):
        return ADMMStatus.SOLVED_INACCURATE, (f"max_iter={settings.max_iter} reached; "
                                              "stopping test holds at 10x tolerance")
    return ADMMStatus.MAX_ITER, f"max_iter={settings.max_iter} reached"


def _consensus_error(x) -> float:
    return float(np.max(np.abs(x - x.mean(axis=0, keepdims=True))))

