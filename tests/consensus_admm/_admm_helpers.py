"""Shared builders for the consensus_admm tests: Hypothesis graph strategy, seeded problems, centralized oracles."""

from __future__ import annotations

import networkx as nx
import numpy as np
from hypothesis import strategies as st

from consensus_admm import Averaging, Lasso, LeastSquares
from consensus_admm.objectives import coordinate_descent_np


@st.composite
def connected_graphs(draw, min_nodes: int = 2, max_nodes: int = 8):
    """A connected simple graph: a random spanning tree plus random extra edges."""
    n = draw(st.integers(min_nodes, max_nodes))
    g = nx.Graph()
    g.add_nodes_from(range(n))
    for k in range(1, n):
        g.add_edge(k, draw(st.integers(0, k - 1)))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if not g.has_edge(i, j)]
    if pairs:
        extra = draw(st.lists(st.sampled_from(pairs), max_size=len(pairs), unique=True))
        g.add_edges_from(extra)
    return g


def averaging_problem(n, dim, seed):
    rng = np.random.default_rng(seed)
    targets = rng.normal(size=dim) + rng.normal(size=(n, dim))
    return [Averaging(t) for t in targets], targets.mean(axis=0)


def least_squares_problem(n, dim, seed, rows=None):
    rng = np.random.default_rng(seed)
    rows = dim + 2 if rows is None else rows
    A = rng.normal(size=(n, rows, dim))
    b = rng.normal(size=(n, rows))
    xs = np.linalg.lstsq(A.reshape(-1, dim), b.ravel(), rcond=None)[0]
    return [LeastSquares(A[i], b[i]) for i in range(n)], xs


def lasso_reference(A, b, l1_total):
    dim = A.shape[-1]
    H = np.einsum("kmi,kmj->ij", A, A)
    g = np.einsum("kmi,km->i", A, b)
    return coordinate_descent_np(H, g, l1_total, np.full(dim, -np.inf), np.full(dim, np.inf), np.zeros(dim),
                                 1e-15, 100_000)


def lasso_problem(n, dim, seed, rows=4):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, rows, dim))
    x_true = np.zeros(dim)
    x_true[: max(1, dim // 3)] = 2.0
    b = A @ x_true + 0.1 * rng.normal(size=(n, rows))
    lam = 0.2 * np.max(np.abs(np.einsum("kmi,km->i", A, b)))
    return [Lasso(A[i], b[i], lam / n) for i in range(n)], lasso_reference(A, b, lam), (A, b, lam)
