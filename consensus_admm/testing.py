r"""Property-based testing tools for consensus problems: problem builders with centralized solutions, Hypothesis
strategies, and a checker of results against the centralized answer and the KKT conditions.

Everything here except the strategies works without Hypothesis; the strategies import it when called
(``pip install "decentralized-marl[testing]"``).

Builders (seeded, no Hypothesis)
--------------------------------
``build_problem(kind, n_agents, dim, seed)`` returns a :class:`ConsensusProblem`: one built-in objective per agent
and the centralized minimiser x* of sum_i f_i, computed independently of ADMM:

=================  ===========================================================  ======================================
kind               f_i(x)                                                       x* by
=================  ===========================================================  ======================================
``averaging``      (w_i/2) ||x - a_i||^2                                        weighted mean (closed form)
``least_squares``  0.5 ||A_i x - b_i||^2                                        ``numpy.linalg.lstsq`` on stacked data
``ridge``          0.5 ||A_i x - b_i||^2 + (l2 / 2N) ||x||^2                    normal equations (Cholesky)
``lasso``          0.5 ||A_i x - b_i||^2 + (l1 / N) ||x||_1                     coordinate descent to 1e-15
``logistic``       sum_k log(1 + exp(-y_ik a_ik'x)) + (l2 / 2N) ||x||^2         damped Newton to 1e-14
``box_qp``         0.5 x'P_i x + q_i'x on [lo, hi] (every agent holds the box)  coordinate descent to 1e-15
=================  ===========================================================  ======================================

Checker
-------
:func:`check_result` asserts, with a message naming the agent, coordinate and allowed tolerance:

1. status SOLVED (optional);
2. consensus: max_i ||x_i - x̄||_inf <= atol + rtol ||x̄||_inf;
3. the centralized answer (when known): max_i ||x_i - x*||_inf <= atol + rtol ||x*||_inf;
4. the KKT conditions of the consensus problem, from the result alone (no x* needed; works for any objective with a
   ``prox``): dual balance ||sum_i lam_i||_inf and local stationarity -lam_i in ∂f_i(x_i), checked as the prox
   fixed point ||x_i - prox_{t f_i}(x_i - t lam_i)||_inf (t = 1) -- together with consensus these are the optimality
   conditions of minimize sum_i f_i(x_i) s.t. x_i = x_j;
5. the centralized KKT residual at x̄ (builders only): ||x̄ - clip(soft(x̄ - ∇s(x̄), l1), lo, hi)||_inf for the smooth
   part s = sum_i s_i, total l1 weight and box -- zero exactly at a minimiser.

Strategies (need Hypothesis)
----------------------------
``connected_graphs()`` draws connected simple networkx graphs with arbitrary hashable labels (ints, strings,
tuples, mixed) in a random node order; ``consensus_problems()`` draws a graph and a problem of one of the kinds
above sized to it.

Example
-------
>>> import networkx as nx
>>> from consensus_admm import solve
>>> p = build_problem("ridge", n_agents=4, dim=3, seed=0)
>>> check_result(solve(p.objectives, nx.cycle_graph(4)), p)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .objectives import Averaging, LeastSquares, Lasso, LogisticRegression, Quadratic, coordinate_descent_np
from .results import ADMMResult, ADMMStatus

__all__ = [
    "KINDS",
    "ConsensusProblem",
    "build_problem",
    "check_result",
    "connected_graphs",
    "consensus_problems",
    "hashable_labels",
]

KINDS = ("averaging", "least_squares", "ridge", "lasso", "logistic", "box_qp")


@dataclass(frozen=True, eq=False)
class ConsensusProblem:
    """A consensus problem with its centralized solution.

    ``smooth_gradient(x)`` is the gradient of the smooth part of sum_i f_i; ``l1`` the total l1 weight and
    ``lower``/``upper`` the box of the nonsmooth part (for the centralized KKT residual); ``graph`` is set by
    :func:`consensus_problems`.
    """

    kind: str
    objectives: list
    solution: np.ndarray
    smooth_gradient: object = None
    l1: float = 0.0
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    graph: object = None
    data: dict = field(default_factory=dict)

    @property
    def n_agents(self) -> int:
        return len(self.objectives)

    @property
    def dim(self) -> int:
        return int(self.solution.shape[0])

    def kkt_residual(self, x) -> float:
        """Centralized KKT residual ||x - clip(soft(x - ∇s(x), l1), lo, hi)||_inf (0 at a minimiser)."""
        x = np.asarray(x, float)
        v = x - self.smooth_gradient(x)
        p = np.sign(v) * np.maximum(np.abs(v) - self.l1, 0.0)
        if self.lower is not None:
            p = np.clip(p, self.lower, self.upper)
        return float(np.max(np.abs(x - p)))


# ----------------------------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------------------------


def _design(rng, n_agents, rows, dim, condition_number, feature_scales):
    """Stacked design (n_agents * rows, dim): Gaussian, or with singular values log-spaced so that
    cond(A'A) = condition_number, then columns multiplied by ``feature_scales``."""
    m = n_agents * rows
    if condition_number is None:
        A = rng.normal(size=(m, dim))
    else:
        if m < dim:
            raise ValueError("condition_number needs n_agents * rows >= dim")
        u = np.linalg.qr(rng.normal(size=(m, dim)))[0]
        v = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
        sig = np.logspace(0.0, -0.5 * np.log10(condition_number), dim)
        A = (u * sig) @ v.T * np.sqrt(m)
    if feature_scales is not None:
        A = A * np.broadcast_to(np.asarray(feature_scales, float), (dim,))
    return A


def _smooth_sum(objectives):
    def grad(x):
        return sum(o.smooth_gradient(x) if hasattr(o, "smooth_gradient") else o.gradient(x) for o in objectives)
    return grad


def build_problem(kind: str, n_agents: int, dim: int, seed: int = 0, *, rows: int | None = None,
                  condition_number: float | None = None, feature_scales=None) -> ConsensusProblem:
    """Return a seeded consensus problem of ``kind`` (see the module table) with its centralized solution.

    Parameters
    ----------
    kind : one of ``KINDS``.
    n_agents, dim : int >= 1
    seed : int
    rows : rows of data per agent (default dim + 2; lasso 4).
    condition_number : float, optional
        cond(A'A) of the stacked design (least squares, ridge, lasso, logistic).
    feature_scales : array (dim,), optional
        Column scales of the design (e.g. ``np.logspace(-3, 2, dim)``).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    for name, val in (("n_agents", n_agents), ("dim", dim)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name} must be an int >= 1, got {val!r}")
    rng = np.random.default_rng(seed)
    if kind == "averaging":
        a = rng.normal(size=dim) + rng.normal(size=(n_agents, dim))
        w = rng.uniform(0.5, 2.0, size=n_agents)
        objs = [Averaging(a[i], weight=float(w[i])) for i in range(n_agents)]
        return ConsensusProblem(kind, objs, (w[:, None] * a).sum(0) / w.sum(), _smooth_sum(objs),
                                data=dict(targets=a, weights=w))
    if kind == "box_qp":
        lo, hi = np.full(dim, -0.5), np.full(dim, 0.5)
        objs, P_sum, q_sum = [], np.zeros((dim, dim)), np.zeros(dim)
        for _ in range(n_agents):
            B = rng.normal(size=(dim + 1, dim))
            P, q = B.T @ B / (dim + 1), 2.0 * rng.normal(size=dim)
            objs.append(Quadratic(P, q, lower=lo, upper=hi))
            P_sum, q_sum = P_sum + P, q_sum + q
        xs = coordinate_descent_np(P_sum, -q_sum, 0.0, lo, hi, np.zeros(dim), 1e-15, 200_000)
        return ConsensusProblem(kind, objs, xs, _smooth_sum(objs), lower=lo, upper=hi)
    rows = (4 if kind == "lasso" else dim + 2) if rows is None else int(rows)
    A = _design(rng, n_agents, rows, dim, condition_number, feature_scales)
    x_true = rng.normal(size=dim)
    if feature_scales is not None:
        x_true = x_true / np.broadcast_to(np.asarray(feature_scales, float), (dim,))
    if kind == "lasso":
        x_true[rng.permutation(dim)[: dim - max(1, dim // 3)]] = 0.0
    Ai = A.reshape(n_agents, rows, dim)
    if kind == "logistic":
        y = np.where(A @ x_true + 0.5 * rng.normal(size=len(A)) > 0, 1.0, -1.0)
        l2 = 0.1
        objs = [LogisticRegression(Ai[i], y.reshape(n_agents, rows)[i], l2=l2 / n_agents) for i in range(n_agents)]
        xs = LogisticRegression(A, y, l2=l2).prox(np.zeros(dim), 1e15, tol=1e-14, max_iter=500)
        return ConsensusProblem(kind, objs, xs, _smooth_sum(objs), data=dict(A=A, y=y, l2=l2))
    b = A @ x_true + 0.1 * np.linalg.norm(A @ x_true) / np.sqrt(len(A)) * rng.normal(size=len(A))
    bi = b.reshape(n_agents, rows)
    H, g = A.T @ A, A.T @ b
    if kind == "least_squares":
        objs = [LeastSquares(Ai[i], bi[i]) for i in range(n_agents)]
        xs = np.linalg.lstsq(A, b, rcond=None)[0]
        return ConsensusProblem(kind, objs, xs, _smooth_sum(objs), data=dict(A=A, b=b))
    if kind == "ridge":
        l2 = 0.5 * float(np.trace(H)) / dim
        objs = [Quadratic(Ai[i].T @ Ai[i] + (l2 / n_agents) * np.eye(dim), -Ai[i].T @ bi[i],
                          0.5 * float(bi[i] @ bi[i])) for i in range(n_agents)]
        xs = np.linalg.solve(H + l2 * np.eye(dim), g)
        return ConsensusProblem(kind, objs, xs, _smooth_sum(objs), data=dict(A=A, b=b, l2=l2))
    l1 = 0.2 * float(np.max(np.abs(g)))
    objs = [Lasso(Ai[i], bi[i], l1 / n_agents) for i in range(n_agents)]
    xs = coordinate_descent_np(H, g, l1, np.full(dim, -np.inf), np.full(dim, np.inf), np.zeros(dim), 1e-15,
                               200_000)
    return ConsensusProblem(kind, objs, xs, _smooth_sum(objs), l1=l1, data=dict(A=A, b=b))


# ----------------------------------------------------------------------------------------------------------------
# Checker
# ----------------------------------------------------------------------------------------------------------------


def _where(result: ADMMResult, row: int) -> str:
    return f"agent {result.nodes[row]!r} (row {row})" if result.nodes else f"row {row}"


def check_result(result: ADMMResult, problem, *, solution=None, rtol: float = 1e-5, atol: float = 1e-6,
                 kkt_tol: float = 1e-4, require_solved: bool = True) -> None:
    """Assert that ``result`` solves ``problem`` (see the module docstring, checks 1-5).

    Parameters
    ----------
    result : ADMMResult from :func:`consensus_admm.solve`.
    problem : ConsensusProblem, or the list of objectives given to ``solve`` (any objects with ``prox(v, t)``).
    solution : array (dim,), optional
        The centralized answer (default: ``problem.solution`` for a ConsensusProblem; none for a list).
    rtol, atol : tolerances of the consensus and solution checks (relative to ||x*||_inf).
    kkt_tol : tolerance of the KKT checks, relative to max(1, largest |lam_i|, |x|).
    require_solved : also require ``result.status == SOLVED``.

    Raises
    ------
    AssertionError
        With a message naming the failed condition, the agent, the coordinate, the value and the allowance.
    """
    objectives = problem.objectives if isinstance(problem, ConsensusProblem) else list(problem)
    if solution is None and isinstance(problem, ConsensusProblem):
        solution = problem.solution
    run = (f"[status {result.status.name} after {result.n_iter} iterations, method {result.method}, "
           f"penalty {result.penalty:.3g}: {result.message}]")
    if require_solved and result.status != ADMMStatus.SOLVED:
        raise AssertionError(f"expected status SOLVED, got {result.status.name} {run}")
    x = np.asarray(result.x, float)
    if x.shape[0] != len(objectives):
        raise AssertionError(f"result has {x.shape[0]} rows but the problem has {len(objectives)} objectives")
    xbar = x.mean(axis=0)

    def worst(diff):
        row, col = np.unravel_index(int(np.argmax(np.abs(diff))), diff.shape)
        return int(row), int(col), float(np.abs(diff[row, col]))

    allowed = atol + rtol * float(np.max(np.abs(xbar)))
    row, col, err = worst(x - xbar)
    if err > allowed:
        raise AssertionError(f"no consensus: {_where(result, row)} differs from the agents' mean by {err:.3e} at "
                             f"coordinate {col} (allowed {allowed:.3e}) {run}")
    if solution is not None:
        xs = np.asarray(solution, float)
        allowed = atol + rtol * float(np.max(np.abs(xs)))
        row, col, err = worst(x - xs[None, :])
        if err > allowed:
            raise AssertionError(
                f"{_where(result, row)} is {err:.3e} from the centralized solution at coordinate {col} "
                f"(x = {x[row, col]:.9g}, x* = {xs[col]:.9g}; allowed {atol:g} + {rtol:g} * ||x*||_inf = "
                f"{allowed:.3e}) {run}")
    lam = np.asarray(result.dual, float)
    scale = max(1.0, float(np.max(np.abs(lam))), float(np.max(np.abs(x))))
    balance = float(np.max(np.abs(lam.sum(axis=0))))
    if balance > kkt_tol * scale:
        raise AssertionError(f"KKT: the duals do not sum to zero, ||sum_i lam_i||_inf = {balance:.3e} (allowed "
                             f"{kkt_tol * scale:.3e}) {run}")
    for i, obj in enumerate(objectives):
        p = np.asarray(obj.prox(x[i] - lam[i], 1.0), float)
        err = float(np.max(np.abs(x[i] - p)))
        if err > kkt_tol * scale:
            col = int(np.argmax(np.abs(x[i] - p)))
            raise AssertionError(
                f"KKT: {_where(result, i)} is not stationary: -lam_i is not a subgradient of f_i at x_i, "
                f"||x_i - prox_f_i(x_i - lam_i)||_inf = {err:.3e} at coordinate {col} (allowed "
                f"{kkt_tol * scale:.3e}) {run}")
    if isinstance(problem, ConsensusProblem) and problem.smooth_gradient is not None:
        r = problem.kkt_residual(xbar)
        if r > kkt_tol * scale:
            raise AssertionError(f"KKT: the centralized optimality residual at the agents' mean is {r:.3e} "
                                 f"(allowed {kkt_tol * scale:.3e}) {run}")


# ----------------------------------------------------------------------------------------------------------------
# Hypothesis strategies (Hypothesis is imported only here, when a strategy is built)
# ----------------------------------------------------------------------------------------------------------------


def _hypothesis():
    try:
        from hypothesis import strategies
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("consensus_admm.testing strategies need Hypothesis: "
                          "pip install 'decentralized-marl[testing]' (or pip install hypothesis)") from exc
    return strategies


def hashable_labels():
    """Strategy of node labels: ints, short strings and (int, str) tuples, mixed."""
    st = _hypothesis()
    return st.one_of(st.integers(-1000, 1000), st.text("abcxyz", min_size=1, max_size=4),
                     st.tuples(st.integers(0, 9), st.sampled_from("ab")))


def connected_graphs(min_nodes: int = 2, max_nodes: int = 8, labels=None):
    """Strategy of connected simple ``networkx.Graph`` s: a random spanning tree plus random extra edges, nodes
    labelled by ``labels`` (default :func:`hashable_labels`; pass ``st.integers()`` etc.) and inserted in a random
    order (results follow ``list(graph.nodes)``)."""
    st = _hypothesis()
    if min_nodes < 2 or max_nodes < min_nodes:
        raise ValueError(f"need 2 <= min_nodes <= max_nodes, got {min_nodes}, {max_nodes}")
    labels = hashable_labels() if labels is None else labels

    @st.composite
    def graphs(draw):
        import networkx as nx

        n = draw(st.integers(min_nodes, max_nodes))
        names = draw(st.lists(labels, min_size=n, max_size=n, unique=True))
        parent = [draw(st.integers(0, k - 1)) for k in range(1, n)]
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        extra = draw(st.lists(st.sampled_from(pairs), max_size=len(pairs), unique=True))
        order = draw(st.permutations(range(n)))
        g = nx.Graph()
        g.add_nodes_from(names[k] for k in order)
        g.add_edges_from((names[k], names[p]) for k, p in zip(range(1, n), parent))
        g.add_edges_from((names[i], names[j]) for i, j in extra)
        return g

    return graphs()


def consensus_problems(kinds=KINDS, graphs=None, dims=None):
    """Strategy of :class:`ConsensusProblem` with ``graph`` set: a graph from ``graphs`` (default
    ``connected_graphs()``), a kind from ``kinds``, a dimension from ``dims`` (default 1..4) and a seed."""
    st = _hypothesis()
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds}")
    graphs = connected_graphs() if graphs is None else graphs
    dims = st.integers(1, 4) if dims is None else dims

    @st.composite
    def problems(draw):
        g = draw(graphs)
        p = build_problem(draw(st.sampled_from(kinds)), g.number_of_nodes(), draw(dims),
                          draw(st.integers(0, 2**32 - 1)))
        return ConsensusProblem(p.kind, p.objectives, p.solution, p.smooth_gradient, p.l1, p.lower, p.upper,
                                graph=g, data=p.data)

    return problems()
