r"""Local objectives f_i and their proximal operators.

Every local objective is used only through its proximal operator

.. math::  \operatorname{prox}_{t f}(v) = \arg\min_x \; f(x) + \tfrac{1}{2t}\|x - v\|_2^2,          \tag{P1}

and optionally its value ``value(x)`` (for diagnostics). Any object with a method ``prox(v, t)`` (and a ``dim``
attribute, unless another agent's built-in objective fixes the dimension) works through the generic path, which
calls it from Python once per agent update; the MATRPO-style opaque local solver plugs in the same way, or drives
:class:`consensus_admm.EdgeConsensus` directly.

Two optional methods let a user objective take part in preconditioning (:mod:`consensus_admm.precondition`):
``hessian() -> (dim, dim)`` (its curvature, e.g. at a typical point) and ``scaled(d)`` (the objective
y -> f(d * y)); without them the solver uses no scaling. All built-ins have both.

Built-ins (all are the *composite quadratic* family, plus logistic regression)
-----------------------------------------------------------------------------
The built-ins except :class:`LogisticRegression` are instances of

.. math::  f(x) = \tfrac12 x^\top H x - g^\top x + c + \ell_1 \|x\|_1 + \iota_{[lo, hi]}(x),           \tag{P2}

with H symmetric positive semidefinite. With s = 1/t the prox (P1) minimises
``0.5 x'(H + sI)x - (g + s v)'x + l1 |x|_1 + box``, solved as

* (P3) H diagonal: elementwise ``x = clip(soft(g + s v, l1) / (h + s), lo, hi)`` (exact);
* (P4) H dense, no l1, no box: ``x = (H + sI)^{-1}(g + s v)`` with a Cholesky factor cached per value of s
  (the penalty) -- the per-agent factor is recomputed only when the penalty changes;
* (P5) H dense with l1 or box: cyclic coordinate descent, warm-started from the agent's current x, until the
  largest coordinate change is below ``inner_tol * max(1, ||x||_inf)`` (each 1-D step is exact: clip of a
  soft-threshold, which is the exact coordinate minimiser because the 1-D problem is convex).

=====================  ==================================================  ==========
class                  f(x)                                                solved by
=====================  ==================================================  ==========
Averaging(a, w)        (w/2) ||x - a||^2                                   (P3)
Quadratic(P, q)        0.5 x'Px + q'x                                      (P4)
LeastSquares(A, b)     0.5 ||Ax - b||^2                                    (P4)
Lasso(A, b, l1)        0.5 ||Ax - b||^2 + l1 ||x||_1                       (P5)
Box(lower, upper)      indicator of lower <= x <= upper                    (P3)
LogisticRegression     sum_k log(1 + exp(-y_k a_k'x)) + (l2/2)||x||^2      damped Newton
=====================  ==================================================  ==========

Averaging, Quadratic, LeastSquares and Lasso also take optional ``lower``/``upper`` bounds (box-constrained
variants, solved by (P3) or (P5)).
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "Objective",
    "Averaging",
    "Quadratic",
    "LeastSquares",
    "Lasso",
    "Box",
    "LogisticRegression",
]

KIND_AVG, KIND_SEP, KIND_DENSE = 0, 1, 2


def _as_array(name: str, value, ndim: int) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real array, got {type(value).__name__}") from exc
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return arr


def _as_scalar(name: str, value, *, low: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < low or (strict and value == low):
        raise ValueError(f"{name} must be finite and {'>' if strict else '>='} {low}, got {value}")
    return value


def _bounds(dim: int, lower, upper) -> tuple[np.ndarray, np.ndarray]:
    lo = np.full(dim, -np.inf) if lower is None else np.broadcast_to(np.asarray(lower, float), (dim,)).copy()
    hi = np.full(dim, np.inf) if upper is None else np.broadcast_to(np.asarray(upper, float), (dim,)).copy()
    if np.any(np.isnan(lo)) or np.any(np.isnan(hi)) or np.any(lo == np.inf) or np.any(hi == -np.inf):
        raise ValueError("box bounds must not be nan, +inf lower or -inf upper")
    if np.any(lo > hi):
        raise ValueError(f"box bounds must satisfy lower <= upper; violated at indices {np.flatnonzero(lo > hi)[:10]}")
    return lo, hi


def soft_threshold(v: np.ndarray, thresh: float) -> np.ndarray:
    """Return sign(v) * max(|v| - thresh, 0) elementwise."""
    return np.sign(v) * np.maximum(np.abs(v) - thresh, 0.0)


class Objective:
    """Base class of the built-in objectives (P2). Subclasses set the fields in ``__init__``.

    Attributes: ``dim``, ``kind`` (KIND_AVG / KIND_SEP / KIND_DENSE), ``hdiag`` (dim,) or ``hmat`` (dim, dim),
    ``g`` (dim,), ``const``, ``l1``, ``lower``, ``upper``, ``weight`` (KIND_AVG only).
    """

    dim: int
    kind: int
    hdiag: np.ndarray | None = None
    hmat: np.ndarray | None = None
    g: np.ndarray
    const: float = 0.0
    l1: float = 0.0
    weight: float = 1.0
    lower: np.ndarray
    upper: np.ndarray

    @property
    def nonsmooth(self) -> bool:
        """True when the prox needs the inner solver (l1 term or finite bounds)."""
        return bool(np.any(self.l1 > 0) or np.any(np.isfinite(self.lower)) or np.any(np.isfinite(self.upper)))

    def _hess_dense(self) -> np.ndarray:
        return self.hmat if self.hmat is not None else np.diag(self.hdiag)

    def smooth_gradient(self, x: np.ndarray) -> np.ndarray:
        """Gradient H x - g of the smooth part of (P2)."""
        x = np.asarray(x, float)
        return (self.hmat @ x if self.hmat is not None else self.hdiag * x) - self.g

    def value(self, x: np.ndarray) -> float:
        """f(x) of (P2); +inf outside the box (with a 1e-9 relative slack for round-off)."""
        x = np.asarray(x, float)
        slack = 1e-9 * (1.0 + np.abs(x))
        if np.any(x < self.lower - slack) or np.any(x > self.upper + slack):
            return float("inf")
        hx = self.hmat @ x if self.hmat is not None else self.hdiag * x
        return float(0.5 * x @ hx - self.g @ x + self.const + np.sum(self.l1 * np.abs(x)))

    def prox(self, v: np.ndarray, t: float, x0: np.ndarray | None = None, *, tol: float = 1e-12,
             max_iter: int = 1000) -> np.ndarray:
        """Return prox_{t f}(v) of (P1), by (P3), (P4) or (P5).

        Parameters
        ----------
        v : ndarray, shape (dim,)
        t : float > 0
        x0 : ndarray, shape (dim,), optional
            Warm start of the coordinate-descent solver (P5).
        tol, max_iter : inner solver tolerance and sweep cap (P5 only).
        """
        v = np.asarray(v, float)
        s = 1.0 / float(t)
        rhs = self.g + s * v
        if self.hmat is None:
            return np.clip(soft_threshold(rhs, self.l1) / (self.hdiag + s), self.lower, self.upper)
        hs = self.hmat + s * np.eye(self.dim)
        if not self.nonsmooth:
            return np.linalg.solve(hs, rhs)
        x = np.clip(v if x0 is None else np.asarray(x0, float), self.lower, self.upper).copy()
        return coordinate_descent_np(hs, rhs, self.l1, self.lower, self.upper, x, tol, max_iter)

    def scaled(self, d) -> "Objective":
        """Return the objective y -> f(D y), D = diag(d), d > 0 (used by preconditioning, consensus_admm.precondition).

        (P2) maps to H -> D H D, g -> D g, l1 -> l1 d (per coordinate), [lo, hi] -> [lo / d, hi / d].

        Example
        -------
        >>> f = LeastSquares([[2.0, 0.0], [0.0, 3.0]], [2.0, 3.0])
        >>> f.scaled([0.5, 2.0]).value([2.0, 0.5]) == f.value([1.0, 1.0])
        True
        """
        d = np.asarray(d, float)
        if d.shape != (self.dim,) or not np.all(np.isfinite(d)) or np.any(d <= 0):
            raise ValueError(f"scale must be a finite positive array of shape ({self.dim},)")
        out = Objective.__new__(Objective)
        out.dim, out.const = self.dim, self.const
        if self.hmat is not None:
            out.hmat, out.kind = self.hmat * d[:, None] * d[None, :], KIND_DENSE
        else:
            out.hdiag, out.kind = self.hdiag * d * d, KIND_SEP
        out.g = self.g * d
        out.l1 = self.l1 * d if np.any(self.l1 > 0) else 0.0
        out.lower, out.upper = self.lower / d, self.upper / d
        return out

    def curvature(self) -> tuple[float, float]:
        """(smallest, largest) eigenvalue of H (the smooth part's curvature range)."""
        if self.hmat is None:
            return float(self.hdiag.min()), float(self.hdiag.max())
        ev = np.linalg.eigvalsh(self.hmat)
        return float(max(ev[0], 0.0)), float(ev[-1])

    def mean_curvature(self) -> float:
        """trace(H) / dim: the mean eigenvalue of the smooth part's Hessian (used by the penalty heuristic)."""
        return float(np.trace(self.hmat) if self.hmat is not None else self.hdiag.sum()) / self.dim

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"


def coordinate_descent_np(hs, rhs, l1, lo, hi, x, tol, max_iter) -> np.ndarray:
    """NumPy twin of ``_kernels.coordinate_descent``: minimise 0.5 x'Hs x - rhs'x + sum_k l1_k |x_k| on [lo, hi]
    (P5); ``l1`` is a scalar or a per-coordinate array."""
    n = x.shape[0]
    l1 = np.broadcast_to(np.asarray(l1, float), (n,))
    hx = hs @ x
    for _ in range(max_iter):
        biggest = 0.0
        for k in range(n):
            hkk = hs[k, k]
            r = rhs[k] - hx[k] + hkk * x[k]
            a = abs(r) - l1[k]
            new = 0.0 if a <= 0 else (a if r > 0 else -a) / hkk
            new = min(max(new, lo[k]), hi[k])
            delta = new - x[k]
            if delta != 0.0:
                hx += delta * hs[:, k]
                x[k] = new
                biggest = max(biggest, abs(delta))
        if biggest <= tol * max(1.0, float(np.max(np.abs(x)))):
            break
    return x


class Averaging(Objective):
    """f(x) = (weight / 2) ||x - target||^2, optionally restricted to a box.

    Example
    -------
    >>> Averaging([1.0, 2.0]).prox([0.0, 0.0], 1.0).tolist()
    [0.5, 1.0]
    """

    def __init__(self, target, weight: float = 1.0, *, lower=None, upper=None):
        a = _as_array("Averaging.target", target, 1)
        self.weight = _as_scalar("Averaging.weight", weight, strict=True)
        self.target = a
        self.dim = a.shape[0]
        self.hdiag = np.full(self.dim, self.weight)
        self.g = self.weight * a
        self.const = 0.5 * self.weight * float(a @ a)
        self.lower, self.upper = _bounds(self.dim, lower, upper)
        self.kind = KIND_AVG if not self.nonsmooth else KIND_SEP


class Box(Objective):
    """Indicator of the box lower <= x <= upper (prox = projection).

    Example
    -------
    >>> Box(0.0, 1.0, dim=3).prox([-1.0, 0.5, 2.0], 1.0).tolist()
    [0.0, 0.5, 1.0]
    """

    def __init__(self, lower, upper, *, dim: int | None = None):
        lo, hi = np.asarray(lower, float), np.asarray(upper, float)
        if dim is None:
            shape = np.broadcast_shapes(lo.shape, hi.shape)
            if len(shape) != 1:
                raise ValueError("Box needs 1-D bounds or an explicit dim")
            dim = shape[0]
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise ValueError(f"Box.dim must be a positive int, got {dim!r}")
        self.dim = int(dim)
        self.lower, self.upper = _bounds(self.dim, lo, hi)
        self.hdiag = np.zeros(self.dim)
        self.g = np.zeros(self.dim)
        self.kind = KIND_SEP


class Quadratic(Objective):
    """f(x) = 0.5 x'Px + q'x + r with P symmetric positive semidefinite.

    Example
    -------
    >>> Quadratic([[2.0, 0.0], [0.0, 2.0]], [-2.0, 0.0]).prox([0.0, 0.0], 1e9).round(6).tolist()
    [1.0, 0.0]
    """

    def __init__(self, P, q, r: float = 0.0, *, lower=None, upper=None):
        P = _as_array("Quadratic.P", P, 2)
        q = _as_array("Quadratic.q", q, 1)
        if P.shape != (q.shape[0], q.shape[0]):
            raise ValueError(f"Quadratic.P must have shape ({q.shape[0]}, {q.shape[0]}) to match q, got {P.shape}")
        if not np.allclose(P, P.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(P).max())):
            raise ValueError("Quadratic.P must be symmetric")
        P = 0.5 * (P + P.T)
        if np.linalg.eigvalsh(P)[0] < -1e-10 * max(1.0, np.abs(P).max()):
            raise ValueError("Quadratic.P must be positive semidefinite (convex objective)")
        self.dim = q.shape[0]
        self.hmat, self.g, self.const = P, -q, _as_scalar("Quadratic.r", r, low=-np.inf)
        self.lower, self.upper = _bounds(self.dim, lower, upper)
        self.kind = KIND_DENSE


class LeastSquares(Objective):
    """f(x) = 0.5 ||A x - b||^2 (the factor of A'A + s I is cached per penalty by the solver).

    Example
    -------
    >>> LeastSquares([[1.0, 0.0], [0.0, 1.0]], [1.0, 2.0]).prox([0.0, 0.0], 1e12).round(6).tolist()
    [1.0, 2.0]
    """

    def __init__(self, A, b, *, lower=None, upper=None):
        A = _as_array(f"{type(self).__name__}.A", A, 2)
        b = _as_array(f"{type(self).__name__}.b", b, 1)
        if A.shape[0] != b.shape[0]:
            raise ValueError(f"{type(self).__name__}: A has {A.shape[0]} rows but b has {b.shape[0]} entries")
        if A.shape[1] < 1:
            raise ValueError(f"{type(self).__name__}.A must have at least one column")
        self.A, self.b = A, b
        self.dim = A.shape[1]
        self.hmat, self.g, self.const = A.T @ A, A.T @ b, 0.5 * float(b @ b)
        self.lower, self.upper = _bounds(self.dim, lower, upper)
        self.kind = KIND_DENSE


class Lasso(LeastSquares):
    """f(x) = 0.5 ||A x - b||^2 + l1 ||x||_1 (prox by coordinate descent (P5)).

    Example
    -------
    >>> Lasso([[1.0, 0.0], [0.0, 1.0]], [3.0, 0.5], l1=1.0).prox([0.0, 0.0], 1e12).round(6).tolist()
    [2.0, 0.0]
    """

    def __init__(self, A, b, l1: float, *, lower=None, upper=None):
        super().__init__(A, b, lower=lower, upper=upper)
        self.l1 = _as_scalar("Lasso.l1", l1)


class LogisticRegression:
    """f(x) = sum_k log(1 + exp(-y_k a_k'x)) + (l2/2) ||x||^2, labels y_k in {-1, +1} (or {0, 1}).

    The prox is computed by damped Newton on the strongly convex (P1), warm-started at v, to a gradient norm below
    ``tol * max(1, ||x||)``. It runs through the generic (Python) path.

    Example
    -------
    >>> f = LogisticRegression([[1.0], [-1.0]], [1, -1])
    >>> bool(f.prox([0.0], 1.0)[0] > 0)
    True
    """

    def __init__(self, A, y, l2: float = 0.0):
        A = _as_array("LogisticRegression.A", A, 2)
        y = _as_array("LogisticRegression.y", y, 1)
        if A.shape[0] != y.shape[0]:
            raise ValueError(f"LogisticRegression: A has {A.shape[0]} rows but y has {y.shape[0]} labels")
        labels = set(np.unique(y).tolist())
        if not labels <= {-1.0, 1.0} and not labels <= {0.0, 1.0}:
            raise ValueError(f"LogisticRegression.y must be in {{-1, +1}} or {{0, 1}}, got values {sorted(labels)}")
        self.A = A
        self.y = np.where(y > 0, 1.0, -1.0)
        self.l2 = _as_scalar("LogisticRegression.l2", l2)
        self.dim = A.shape[1]
        self._ya = self.y[:, None] * A

    def scaled(self, d) -> "LogisticRegression":
        """Return y -> f(D y): data A D and a per-coordinate l2 d^2 (preconditioning)."""
        d = np.asarray(d, float)
        if d.shape != (self.dim,) or not np.all(np.isfinite(d)) or np.any(d <= 0):
            raise ValueError(f"scale must be a finite positive array of shape ({self.dim},)")
        out = LogisticRegression.__new__(LogisticRegression)
        out.A, out.y, out.dim = self.A * d, self.y, self.dim
        out.l2 = self.l2 * d * d
        out._ya = self._ya * d
        return out

    def hessian(self) -> np.ndarray:
        """Hessian at x = 0, A'A / 4 + diag(l2): an upper bound of the Hessian everywhere (preconditioning)."""
        return 0.25 * self.A.T @ self.A + np.diag(np.broadcast_to(self.l2, (self.dim,)))

    def value(self, x) -> float:
        m = self._ya @ np.asarray(x, float)
        x = np.asarray(x, float)
        return float(np.logaddexp(0.0, -m).sum() + 0.5 * np.sum(self.l2 * x * x))

    def gradient(self, x) -> np.ndarray:
        x = np.asarray(x, float)
        m = self._ya @ x
        sig = np.exp(-np.logaddexp(0.0, m))  # 1 / (1 + e^m)
        return -self._ya.T @ sig + self.l2 * x

    def curvature(self) -> tuple[float, float]:
        ev = np.linalg.eigvalsh(self.hessian())
        return float(max(ev[0], 0.0)), float(ev[-1])

    def mean_curvature(self) -> float:
        """trace of the Hessian at 0 over dim: (||A||_F^2 / 4) / dim + l2."""
        return float(0.25 * np.sum(self.A * self.A) / self.dim + np.mean(self.l2))

    def prox(self, v, t: float, x0=None, *, tol: float = 1e-12, max_iter: int = 100) -> np.ndarray:
        """prox_{t f}(v) by damped Newton (Armijo backtracking)."""
        v = np.asarray(v, float)
        s = 1.0 / float(t)
        x = (v if x0 is None else np.asarray(x0, float)).copy()

        def phi(z):
            return self.value(z) + 0.5 * s * float((z - v) @ (z - v))

        for _ in range(max_iter):
            m = self._ya @ x
            sig = np.exp(-np.logaddexp(0.0, m))
            grad = -self._ya.T @ sig + self.l2 * x + s * (x - v)
            if np.max(np.abs(grad)) <= tol * max(1.0, s * max(1.0, float(np.max(np.abs(x))))):
                break
            wts = sig * (1.0 - sig)
            hess = (self._ya.T * wts) @ self._ya + np.diag(np.broadcast_to(self.l2 + s, (self.dim,)))
            step = np.linalg.solve(hess, grad)
            f0, dec, lr = phi(x), float(grad @ step), 1.0
            while lr > 1e-10 and phi(x - lr * step) > f0 - 0.25 * lr * dec:
                lr *= 0.5
            x = x - lr * step
            if lr * np.max(np.abs(step)) <= 1e-16 * max(1.0, float(np.max(np.abs(x)))):
                break
        return x

    def __repr__(self) -> str:
        return f"LogisticRegression(dim={self.dim}, n={self.A.shape[0]})"
