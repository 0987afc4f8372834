"""Cases of the MPI oracle (tests/consensus_admm/test_admm_mpi.py), and the worker that runs them under mpiexec.

Imported by pytest (no mpi4py needed) to build the in-process reference, and run as
``mpiexec -n K python _mpi_cases.py OUT_DIR CASE...`` where each rank builds only its own agent's objective, calls
``consensus_admm.mpi.solve`` and writes its result to ``OUT_DIR/<case>_<rank>.npz``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from consensus_admm import ADMMSettings, Averaging, Lasso, LeastSquares
from consensus_admm.testing import build_problem


class ShrunkQuadratic:
    """f(x) = (w/2)||x - a||^2 with a hand-written prox: an objective that takes the generic (non-compiled) path."""

    def __init__(self, a, w):
        self.a, self.w, self.dim = np.asarray(a, float), float(w), len(a)

    def prox(self, v, t):
        return (v + t * self.w * self.a) / (1.0 + t * self.w)

    def value(self, x):
        return 0.5 * self.w * float(np.sum((x - self.a) ** 2))


class FailsAfter(ShrunkQuadratic):
    """A generic objective whose prox returns nan from its ``after``-th call on (only agent 2 gets one)."""

    def __init__(self, a, w, after):
        super().__init__(a, w)
        self.after, self.calls = after, 0

    def prox(self, v, t):
        self.calls += 1
        return np.full(self.dim, np.nan) if self.calls >= self.after else super().prox(v, t)


class BadHessian(ShrunkQuadratic):
    """A generic objective whose ``hessian()`` has the wrong shape (the preconditioning set-up must refuse it)."""

    def hessian(self):
        return np.eye(self.dim + 1)


def _failing(i, seed, dim=3):
    rng = np.random.default_rng([seed, i])
    return FailsAfter(rng.normal(size=dim), 1.0, 37) if i == 2 else ShrunkQuadratic(rng.normal(size=dim), 1.0)


def _random_graph():
    g = nx.gnp_random_graph(5, 0.5, seed=4)
    g.add_edges_from(nx.path_graph(5).edges)  # connected whatever the draw
    return g


def _five_graph():
    g = nx.cycle_graph(5)
    g.add_edge(1, 3)  # non-adjacent pairs such as (0, 4) and (1, 2) can run concurrently
    return g


def _four_graph():
    g = nx.cycle_graph(4)
    g.add_edge(0, 2)
    return g


def _lasso(i, seed, dim=6):
    rng = np.random.default_rng([seed, i])
    return Lasso(rng.normal(size=(8, dim)), rng.normal(size=8), 0.1)


def _least_squares(i, seed, dim=5):
    rng = np.random.default_rng([seed, i])
    return LeastSquares(rng.normal(size=(dim + 2, dim)), rng.normal(size=dim + 2))


def _generic(i, seed, dim=4):
    rng = np.random.default_rng([seed, i])
    return ShrunkQuadratic(rng.normal(size=dim), 0.5 + i)


def _built(kind, n_agents, dim, **kwargs):
    """Agent i's objective of ``testing.build_problem`` (the builder draws the stacked data; the rank keeps only
    its own agent's objective)."""
    def objective(i, seed):
        return build_problem(kind, n_agents, dim, seed, **kwargs).objectives[i]
    return objective


# Ill-conditioned problems for the preconditioned default: feature scales spanning 1e-2..1e2 (diag(H̄) spans 1e8:
# the default solves in 50 iterations, preconditioning="none" does not in 3000) and cond(A'A) = 1e4.
_LS_SCALES = _built("least_squares", 4, 5, feature_scales=np.logspace(-2, 2, 5))
_LASSO_SCALES = _built("lasso", 5, 4, feature_scales=np.logspace(-1.5, 1.5, 4))
_LS_COND = _built("least_squares", 4, 5, condition_number=1e4)
_AVERAGING = _built("averaging", 4, 3)
# Logistic regression: the generic path (a Python damped-Newton prox), where one ulp of difference in the prox's
# argument moves the Newton stopping test; with feature scales spanning 1e-2..1e2 such a difference grew to 4e-11
# while the NumPy twin summed neighbours in another order than the kernel and the MPI node (_kernels docstring).
_LOGISTIC_SCALES = _built("logistic", 4, 6, feature_scales=np.logspace(-2, 2, 6))


def _mixed(i, seed):
    """Agent 0 diagonal (its diag(h_0) enters the mean Hessian), the others dense with feature scales."""
    return Averaging(np.arange(1.0, 6.0), weight=2.0) if i == 0 else _LS_SCALES(i, seed)


@dataclass(frozen=True)
class Case:
    n_agents: int
    graph: object  # () -> nx.Graph
    objective: object  # (node index, seed) -> objective of that agent only
    settings: ADMMSettings
    seed: int = 0
    stopping: str = "residuals"
    replay: bool = False  # replay a fixed schedule (the record) instead of drawing one
    relabel: bool = False  # string labels, rank r owning the node at index N - 1 - r
    # Iterates equal bit for bit: the same arithmetic on both sides, compiled kernels or the generic NumPy path
    # (mixed kinds, packed with each agent's own kind under MPI and with the widest in-process, agree to rounding).
    bitwise: bool = True
    kwargs: dict = field(default_factory=dict)

    def build_graph(self):
        g = self.graph()
        return nx.relabel_nodes(g, {k: f"n{k}" for k in g.nodes}) if self.relabel else g

    def node_of_rank(self, rank):
        return self.n_agents - 1 - rank if self.relabel else rank

    def schedule(self):
        if not self.replay:
            return None
        n_edges = self.graph().number_of_edges()
        return np.random.default_rng(99).integers(0, n_edges, size=self.settings.max_iter * n_edges)


CASES = {
    "sync_lasso": Case(4, _four_graph, _lasso, ADMMSettings(penalty=1.0, max_iter=500, eps_abs=1e-8, eps_rel=1e-8)),
    "sync_default_penalty_adaptive": Case(4, _four_graph, _least_squares, ADMMSettings(
        max_iter=300, adaptive_penalty=True, adaptive_penalty_interval=20, eps_abs=1e-9, eps_rel=1e-9)),
    "sync_generic_relabelled": Case(4, _four_graph, _generic, ADMMSettings(penalty=0.7, max_iter=200),
                                    relabel=True),
    "sync_edge_alpha_drops": Case(4, _four_graph, _lasso, ADMMSettings(penalty=1.0, alpha=1.6, drop_prob=0.2,
                                                                       max_iter=120), seed=5),
    "async_random": Case(5, _five_graph, _least_squares, ADMMSettings(method="async", penalty=1.0, max_iter=40,
                                                                      record_schedule=True), seed=7),
    "async_cyclic_drops_lasso": Case(5, _five_graph, _lasso, ADMMSettings(
        method="async", schedule="cyclic", penalty=2.0, drop_prob=0.3, max_iter=30), seed=3),
    "async_replay": Case(5, _five_graph, _least_squares, ADMMSettings(method="async", penalty=1.0, max_iter=25),
                         replay=True),
    "async_budget": Case(5, _five_graph, _least_squares, ADMMSettings(method="async", penalty=1.0, max_iter=25,
                                                                      eps_abs=0.0, eps_rel=0.0), seed=11,
                         stopping="budget"),
    "async_weighted_random_graph": Case(5, _random_graph, _lasso, ADMMSettings(
        method="async", penalty=1.5, max_iter=30, edge_probabilities=tuple(float(k + 1) for k in range(
            _random_graph().number_of_edges()))), seed=2),
    "sync_diverges_on_one_rank": Case(4, _four_graph, _failing, ADMMSettings(penalty=1.0, max_iter=200)),
    # The preconditioned default (ADMMSettings() apart from budgets) and preconditioning="none" on the same problems.
    "default_least_squares_scales": Case(4, _four_graph, _LS_SCALES, ADMMSettings()),
    "none_least_squares_scales": Case(4, _four_graph, _LS_SCALES, ADMMSettings(preconditioning="none",
                                                                               max_iter=300)),
    "default_least_squares_cond": Case(4, _four_graph, _LS_COND, ADMMSettings(max_iter=2000)),
    "default_adaptive_edge_scales": Case(4, _four_graph, _LS_SCALES, ADMMSettings(
        alpha=1.5, adaptive_penalty=True, adaptive_penalty_interval=20, penalty=50.0, max_iter=400)),
    "default_async_lasso_scales": Case(5, _five_graph, _LASSO_SCALES, ADMMSettings(method="async", max_iter=60),
                                       seed=4),
    "none_async_lasso_scales": Case(5, _five_graph, _LASSO_SCALES, ADMMSettings(
        method="async", preconditioning="none", max_iter=60), seed=4),
    "default_averaging": Case(4, _four_graph, _AVERAGING, ADMMSettings()),
    "default_mixed_diagonal_dense": Case(4, _four_graph, _mixed, ADMMSettings(max_iter=300), bitwise=False),
    "default_generic_fallback": Case(4, _four_graph, _generic, ADMMSettings(max_iter=200)),  # no curvature: (H1)
    "default_logistic_scales": Case(4, _four_graph, _LOGISTIC_SCALES, ADMMSettings(max_iter=2000)),
    "none_logistic_scales": Case(4, _four_graph, _LOGISTIC_SCALES, ADMMSettings(preconditioning="none",
                                                                                max_iter=300)),
}


def in_process(case: Case):
    """The reference: ``consensus_admm.solve`` on all agents in one process."""
    from consensus_admm import solve

    g = case.build_graph()
    objectives = [case.objective(k, case.seed) for k in range(case.n_agents)]
    return solve(objectives, g, case.settings, seed=case.seed, schedule=case.schedule())


def _run_worker(out_dir, names):
    from mpi4py import MPI

    from consensus_admm.mpi import solve

    rank = MPI.COMM_WORLD.Get_rank()
    for name in names:
        case = CASES[name]
        g = case.build_graph()
        k = case.node_of_rank(rank)
        node = list(g.nodes)[k] if case.relabel else None
        res = solve(case.objective(k, case.seed), g, case.settings, seed=case.seed, node=node,
                    schedule=case.schedule(), stopping=case.stopping)
        empty = np.zeros(0)
        np.savez(f"{out_dir}/{name}_{rank}.npz", x=res.x, dual=res.dual, status=res.status.name,
                 n_iter=res.n_iter, r=res.primal_residual, s=res.dual_residual, penalty=res.penalty,
                 initial_penalty=res.initial_penalty, objective=res.objective, consensus=res.consensus,
                 consensus_error=res.consensus_error, msgs=res.messages_per_node[0], floats=res.floats_per_node[0],
                 per_edge=res.messages_per_edge, node_index=res.extra["node_index"],
                 edge_z=empty if res.edge_z is None else res.edge_z,
                 schedule=empty if res.schedule is None else res.schedule,
                 bytes_sent=res.extra["bytes_sent"], n_updates=res.n_penalty_updates, scale=res.scale,
                 edge_duals=empty if res.edge_duals is None else res.edge_duals, success=res.success)


def _run_errors(out_dir):
    """Bad input on some ranks: every rank must raise the same error (written to OUT_DIR/errors_<rank>.txt)."""
    from mpi4py import MPI

    from consensus_admm.mpi import solve

    rank = MPI.COMM_WORLD.Get_rank()
    checks = {
        "dimension": lambda: solve(_least_squares(rank, 0, dim=5 if rank else 3), nx.cycle_graph(3),
                                   ADMMSettings(penalty=1.0)),
        "size": lambda: solve(_least_squares(rank, 0), nx.cycle_graph(4), ADMMSettings(penalty=1.0)),
        "settings": lambda: solve(_least_squares(rank, 0), nx.cycle_graph(3), ADMMSettings(penalty=1.0 + rank)),
        "bad_objective": lambda: solve(object() if rank == 2 else _least_squares(rank, 0), nx.cycle_graph(3)),
        "bad_hessian": lambda: solve(BadHessian([0.0, 1.0], 1.0) if rank == 1 else ShrunkQuadratic([0.0, 1.0], 1.0),
                                     nx.cycle_graph(3)),
    }
    lines = []
    for name, call in checks.items():
        try:
            call()
            lines.append(f"{name} no error")
        except (TypeError, ValueError) as exc:
            lines.append(f"{name} {type(exc).__name__}: {exc}")
    with open(f"{out_dir}/errors_{rank}.txt", "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "--errors":
        _run_errors(sys.argv[2])
    else:
        _run_worker(sys.argv[1], sys.argv[2:])
