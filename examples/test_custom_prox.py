"""Property-test your own objective with ``consensus_admm.testing``.

A user-defined local objective, the Huber distance to a private point plus a small ridge term, is known to the
solver only through its ``prox``. For every connected graph that Hypothesis draws (with arbitrary node labels),
the decentralized answer must

* match a centralized minimiser computed independently (SciPy L-BFGS on the sum of the values and gradients),
* satisfy the KKT conditions of the consensus problem (``check_result`` checks them through the objective's prox),
* not depend on how the nodes are labelled.

    python -m pytest examples/test_custom_prox.py        (needs hypothesis: pip install -e ".[testing]")
"""

from __future__ import annotations

import networkx as nx
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from consensus_admm import ADMMSettings, solve
from consensus_admm.testing import check_result, connected_graphs

TIGHT = ADMMSettings(eps_abs=1e-10, eps_rel=1e-10, max_iter=50_000)
# Deterministic examples so that CI is reproducible; drop derandomize to explore new examples on every run.
PROPERTY = settings(max_examples=20, deadline=None, derandomize=True, database=None)


class HuberToPoint:
    """f(x) = sum_k huber_delta(x_k - a_k) + (mu / 2) ||x||^2, with huber_delta(u) = u^2 / 2 for |u| <= delta and
    delta (|u| - delta / 2) beyond."""

    def __init__(self, point, delta: float = 1.0, mu: float = 0.1):
        self.point = np.asarray(point, float)
        self.dim = self.point.shape[0]
        self.delta, self.mu = float(delta), float(mu)

    def value(self, x) -> float:
        u = np.abs(np.asarray(x, float) - self.point)
        hub = np.where(u <= self.delta, 0.5 * u * u, self.delta * (u - 0.5 * self.delta))
        return float(hub.sum() + 0.5 * self.mu * np.dot(x, x))

    def gradient(self, x) -> np.ndarray:
        x = np.asarray(x, float)
        return np.clip(x - self.point, -self.delta, self.delta) + self.mu * x

    def prox(self, v, t):
        """argmin_x f(x) + ||x - v||^2 / (2t): fold the ridge into the quadratic, then Huber's closed-form prox."""
        tp = t / (1.0 + t * self.mu)
        r = np.asarray(v, float) / (1.0 + t * self.mu) - self.point
        inner = np.abs(r) <= self.delta * (1.0 + tp)
        return self.point + np.where(inner, r / (1.0 + tp), r - tp * self.delta * np.sign(r))


def centralized_minimiser(objectives) -> np.ndarray:
    dim = objectives[0].dim
    res = minimize(lambda x: sum(o.value(x) for o in objectives), np.zeros(dim),
                   jac=lambda x: sum(o.gradient(x) for o in objectives), method="L-BFGS-B",
                   options=dict(ftol=1e-15, gtol=1e-12, maxiter=10_000))
    return res.x


@PROPERTY
@given(graph=connected_graphs(max_nodes=7), seed=st.integers(0, 2**32 - 1), dim=st.integers(1, 3))
def test_huber_consensus_matches_the_centralized_minimiser(graph, seed, dim):
    rng = np.random.default_rng(seed)
    objectives = [HuberToPoint(rng.normal(scale=3.0, size=dim)) for _ in graph.nodes]
    result = solve(objectives, graph, TIGHT)
    check_result(result, objectives, solution=centralized_minimiser(objectives), rtol=1e-5, atol=1e-5)


@PROPERTY
@given(graph=connected_graphs(max_nodes=6), seed=st.integers(0, 2**32 - 1))
def test_relabelling_the_nodes_changes_nothing(graph, seed):
    rng = np.random.default_rng(seed)
    points = {node: rng.normal(scale=3.0, size=2) for node in graph.nodes}
    result = solve([HuberToPoint(points[v]) for v in graph.nodes], graph, TIGHT)
    relabel = {v: ("renamed", k) for k, v in enumerate(graph.nodes)}
    renamed = nx.relabel_nodes(graph, relabel)
    again = solve([HuberToPoint(points[v]) for v in graph.nodes], renamed, TIGHT)
    for v in graph.nodes:
        np.testing.assert_allclose(again.x_by_node()[relabel[v]], result.x_by_node()[v], rtol=1e-9, atol=1e-9)
