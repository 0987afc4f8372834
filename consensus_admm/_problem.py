"""Validation of the objective list and packing of built-in objectives into per-agent arrays for the kernels."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular

from ._kernels import prox_node  # noqa: F401  (re-exported for tests)
from .objectives import KIND_AVG, KIND_DENSE, KIND_SEP, LogisticRegression, Objective, coordinate_descent_np

__all__ = ["Problem", "make_problem"]


@dataclass
class Packed:
    """Per-agent arrays of objectives (P2) in the layout ``_kernels.prox_node`` reads."""

    kind: int
    wgt: np.ndarray
    g: np.ndarray
    hdiag: np.ndarray
    hmat: np.ndarray
    chol: np.ndarray
    l1: np.ndarray  # (N, n) per-coordinate l1 weights (empty for averaging)
    lo: np.ndarray
    hi: np.ndarray
    nonsmooth: np.ndarray
    chol_s: np.ndarray  # the s_i each chol[i] was factored for (nan = not yet)

    def args(self, inner_tol: float, inner_max: int) -> tuple:
        return (self.kind, self.wgt, self.g, self.hdiag, self.hmat, self.chol, self.l1, self.lo, self.hi,
                self.nonsmooth, float(inner_tol), int(inner_max))

    def refresh_cholesky(self, s: np.ndarray) -> None:
        """Cache L_i L_i' = H_i + s_i I for the smooth dense agents (objectives (P4)); only where s_i changed."""
        if self.kind != KIND_DENSE:
            return
        need = (~self.nonsmooth) & (self.chol_s != s)
        if np.any(need):
            idx = np.flatnonzero(need)
            eye = np.eye(self.g.shape[1])
            self.chol[idx] = np.linalg.cholesky(self.hmat[idx] + s[idx, None, None] * eye)
            self.chol_s[idx] = s[idx]

    def prox_batch_np(self, idx, v, s, x_warm, inner_tol, inner_max):
        """NumPy twin of ``prox_node`` for the agents ``idx`` (rows of v, s, x_warm)."""
        sc = s[:, None]
        if self.kind == KIND_AVG:
            return (self.g[idx] + sc * v) * (1.0 / (self.wgt[idx][:, None] + sc))
        if self.kind == KIND_SEP:
            r = self.g[idx] + sc * v
            a = np.abs(r) - self.l1[idx]
            val = np.where(a > 0, np.where(r > 0, a, -a), 0.0) / (self.hdiag[idx] + sc)
            return np.minimum(np.maximum(val, self.lo[idx]), self.hi[idx])
        out = np.empty_like(v)
        eye = np.eye(v.shape[1])
        for row, i in enumerate(idx):
            rhs = self.g[i] + s[row] * v[row]
            if not self.nonsmooth[i]:
                y = solve_triangular(self.chol[i], rhs, lower=True)
                out[row] = solve_triangular(self.chol[i].T, y, lower=False)
            else:
                x0 = np.minimum(np.maximum(x_warm[row], self.lo[i]), self.hi[i]).copy()
                out[row] = coordinate_descent_np(self.hmat[i] + s[row] * eye, rhs, self.l1[i], self.lo[i],
                                                 self.hi[i], x0, inner_tol, inner_max)
        return out


class Problem:
    """The validated list of local objectives: dimension, packing, prox and values."""

    def __init__(self, objectives, n_agents: int, *, dtype=np.float64):
        if isinstance(objectives, (str, bytes)) or not hasattr(objectives, "__len__"):
            raise TypeError("objectives must be a sequence with one local objective per agent")
        objectives = list(objectives)
        if len(objectives) != n_agents:
            raise ValueError(f"got {len(objectives)} objectives for a graph with {n_agents} nodes; "
                             "give exactly one local objective per node, in the graph's node order")
        for k, obj in enumerate(objectives):
            if not callable(getattr(obj, "prox", None)):
                raise TypeError(f"objective {k} ({type(obj).__name__}) has no callable prox(v, t)")
        dims = {}
        for k, obj in enumerate(objectives):
            d = getattr(obj, "dim", None)
            if d is not None:
                if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1:
                    raise ValueError(f"objective {k} has invalid dim {d!r}")
                dims.setdefault(int(d), []).append(k)
        if not dims:
            raise TypeError("cannot infer the variable dimension: give at least one objective a `dim` attribute")
        if len(dims) > 1:
            desc = ", ".join(f"dim {d} at agents {ks[:6]}" for d, ks in sorted(dims.items()))
            raise ValueError(f"objectives have mismatched dimensions: {desc}")
        self.objectives = objectives
        self.n_agents = n_agents
        self.dim = next(iter(dims))
        self.dtype = np.dtype(dtype)
        self.packed = self._pack() if all(isinstance(o, Objective) for o in objectives) else None

    @property
    def fused(self) -> bool:
        """True when every agent has a built-in (P2) objective, so the Numba kernels run end to end."""
        return self.packed is not None

    def _pack(self) -> Packed:
        objs, n, dim, dt = self.objectives, self.n_agents, self.dim, self.dtype
        kind = max(o.kind for o in objs)
        wgt = np.array([o.weight for o in objs], dtype=dt)
        g = np.array([o.g for o in objs], dtype=dt)
        nonsmooth = np.array([o.nonsmooth for o in objs], dtype=np.bool_)
        empty2, empty3 = np.zeros((0, 0), dt), np.zeros((0, 0, 0), dt)
        hdiag = np.array([np.diag(o._hess_dense()) for o in objs], dtype=dt) if kind == KIND_SEP else empty2
        if kind == KIND_DENSE:
            hmat = np.array([o._hess_dense() for o in objs], dtype=dt)
            chol = np.zeros((n, dim, dim), dt)
        else:
            hmat, chol = empty3, empty3
        if kind == KIND_AVG:
            lo = hi = l1 = empty2
        else:
            l1 = np.array([np.broadcast_to(o.l1, (dim,)) for o in objs], dtype=dt)
            lo = np.array([o.lower for o in objs], dtype=dt)
            hi = np.array([o.upper for o in objs], dtype=dt)
        return Packed(kind, wgt, g, hdiag, hmat, chol, l1, lo, hi, nonsmooth, np.full(n, np.nan))

    def prox_batch(self, inner_tol: float, inner_max: int):
        """Return prox_batch(idx, v, s, x_warm) -> (len(idx), dim) for the NumPy twins and the generic path."""
        if self.packed is not None:
            packed = self.packed

            def batch(idx, v, s, x_warm):
                return packed.prox_batch_np(idx, v, s, x_warm, inner_tol, inner_max)
            return batch

        objs, dt = self.objectives, self.dtype

        def batch(idx, v, s, x_warm):
            out = np.empty((len(idx), self.dim), dtype=dt)
            for row, i in enumerate(idx):
                obj = objs[i]
                if isinstance(obj, Objective):
                    res = obj.prox(v[row], 1.0 / s[row], x_warm[row], tol=inner_tol, max_iter=inner_max)
                elif isinstance(obj, LogisticRegression):
                    res = obj.prox(v[row], 1.0 / s[row], x_warm[row], tol=inner_tol)
                else:
                    res = obj.prox(np.array(v[row]), float(1.0 / s[row]))
                res = np.asarray(res, dtype=dt)
                if res.shape != (self.dim,):
                    raise ValueError(f"objective {i}: prox returned shape {res.shape}, expected ({self.dim},)")
                out[row] = res
            return out
        return batch

    def value(self, x_rows: np.ndarray) -> float:
        """sum_i f_i(x_i) over the rows of ``x_rows`` (nan if some objective has no ``value``)."""
        total = 0.0
        for obj, xi in zip(self.objectives, x_rows):
            fn = getattr(obj, "value", None)
            if not callable(fn):
                return float("nan")
            total += float(fn(xi))
        return total

    @property
    def scalable(self) -> bool:
        """True when every objective has ``scaled(d)`` (needed for the diagonal scaling of preconditioning)."""
        return all(callable(getattr(o, "scaled", None)) for o in self.objectives)

    def scaled(self, d: np.ndarray) -> "Problem":
        """The problem in the scaled variable y (x = d * y): objectives y -> f_i(d * y)."""
        return Problem([o.scaled(d) for o in self.objectives], self.n_agents, dtype=self.dtype)

    def curvature_scale(self) -> float:
        """kappa: geometric mean over agents of the mean Hessian eigenvalue trace(H_i)/dim (1.0 if unknown)."""
        return combine_curvatures([agent_curvature(obj) for obj in self.objectives])


def agent_curvature(objective) -> float:
    """One agent's mean Hessian eigenvalue trace(H_i)/dim, 0.0 when unknown (the per-agent statistic of kappa)."""
    fn = getattr(objective, "mean_curvature", None)
    c = float(fn()) if callable(fn) else 0.0
    return c if c > 0 and np.isfinite(c) else 0.0


def combine_curvatures(curvatures) -> float:
    """kappa from the agents' ``agent_curvature`` values in node order: geometric mean of the positive ones (1.0 if
    none)."""
    scales = [c for c in curvatures if c > 0]
    if not scales:
        return 1.0
    return float(np.exp(np.mean(np.log(scales))))


def make_problem(objectives, n_agents: int, *, dtype=np.float64) -> Problem:
    return Problem(objectives, n_agents, dtype=dtype)
