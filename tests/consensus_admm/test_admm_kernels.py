"""Equivalence tests: every Numba kernel against its NumPy twin, and the algebraic identities between methods
(edge form with rho == DADMM with c = rho/2; async with all edges active each tick == sync)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from conftest import NUMBA_VS_NUMPY_ATOL, NUMBA_VS_NUMPY_RTOL

from consensus_admm import Averaging, Box, Lasso, LeastSquares, Quadratic
from consensus_admm import _kernels as K
from consensus_admm._problem import Problem
from consensus_admm.graphs import graph_arrays
from consensus_admm.solver import dual_update, x_update, z_update

INNER_TOL = 1e-13


def build(kind: str, n: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    if kind == "averaging":
        return [Averaging(rng.normal(size=dim), weight=float(rng.uniform(0.5, 2))) for _ in range(n)]
    if kind == "separable":  # averaging with bounds plus a pure box agent: diagonal H with a box
        objs = [Averaging(rng.normal(size=dim), lower=-0.3, upper=0.8) for _ in range(n - 1)]
        return objs + [Box(-0.5, 0.5, dim=dim)]
    if kind == "dense":
        return [LeastSquares(rng.normal(size=(dim + 1, dim)), rng.normal(size=dim + 1)) for _ in range(n)]
    if kind == "dense-cd":  # lasso and a box-constrained quadratic: coordinate descent
        objs = [Lasso(rng.normal(size=(3, dim)), rng.normal(size=3), l1=0.3) for _ in range(n - 1)]
        return objs + [Quadratic(np.eye(dim), rng.normal(size=dim), lower=-1.0, upper=1.0)]
    raise ValueError(kind)


def graph_for(n: int, seed: int) -> nx.Graph:
    g = nx.cycle_graph(n)
    g.add_edge(0, n // 2)
    if seed % 2:
        g.add_edge(1, n - 2)
    return g


CASES = [
    ("averaging", np.float64), ("averaging", np.float32),
    ("separable", np.float64), ("separable", np.float32),
    ("dense", np.float64), ("dense", np.float32),
    ("dense-cd", np.float64),
]
SHAPES = [(5, 1), (6, 3), (9, 7)]


def tolerances(dtype):
    return dict(rtol=NUMBA_VS_NUMPY_RTOL[dtype], atol=NUMBA_VS_NUMPY_ATOL[dtype])


@pytest.mark.parametrize("kind,dtype", CASES)
@pytest.mark.parametrize("n,dim", SHAPES)
def test_sync_node_kernel_matches_numpy_twin(kind, dtype, n, dim):
    ga = graph_arrays(graph_for(n, dim))
    prob = Problem(build(kind, n, dim, seed=n + dim), n, dtype=dtype)
    rho = 1.7
    prob.packed.refresh_cholesky(rho * ga.degree.astype(float))
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(n, dim)).astype(dtype)
    lam0 = rng.normal(size=(n, dim)).astype(dtype)
    lam0 -= lam0.mean(axis=0)
    for n_iter in (1, 2, 7):
        x, lam = x0.copy(), lam0.copy()
        zp, zb, buf = np.empty_like(x), np.empty_like(x), np.empty_like(x)
        K.sync_node_run(n_iter, x, lam, buf, zp, zb, rho, ga.indptr, ga.indices, ga.degree,
                        *prob.packed.args(INNER_TOL, 500))
        xn, ln, zpn, zbn = K.sync_node_run_np(n_iter, x0.copy(), lam0.copy(), rho, ga.indptr, ga.indices,
                                              ga.degree, prob.prox_batch(INNER_TOL, 500))
        for a, b in ((x, xn), (lam, ln), (zp, zpn), (zb, zbn)):
            np.testing.assert_allclose(a, b, **tolerances(dtype))


def _edge_state(ga, dim, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ga.n_agents, dim)).astype(dtype)
    z = rng.normal(size=(ga.n_edges, dim)).astype(dtype)
    lam = rng.normal(size=(ga.n_edges, 2, dim)).astype(dtype)
    S = np.zeros_like(x)
    Lam = np.zeros_like(x)
    np.add.at(S, ga.edges[:, 0], z)
    np.add.at(S, ga.edges[:, 1], z)
    np.add.at(Lam, ga.edges[:, 0], lam[:, 0])
    np.add.at(Lam, ga.edges[:, 1], lam[:, 1])
    return dict(x=x, z=z, lam=lam, S=S, Lam=Lam, stamp=np.full(ga.n_agents, -1, np.int64),
                msgs=np.zeros(ga.n_agents, np.int64), floats=np.zeros(ga.n_agents, np.int64),
                act=np.zeros(ga.n_edges, np.int64), bal=np.zeros(ga.n_edges, np.bool_))


def _edge_args(st, ptr, edges_, drops, drop_prob, rho, alpha, ga):
    return (ptr, edges_, drops, drop_prob, st["x"], st["z"], st["lam"], st["S"], st["Lam"], rho, alpha, ga.edges,
            ga.degree, st["stamp"], 0, st["msgs"], st["floats"], st["act"], st["bal"])


@pytest.mark.parametrize("kind,dtype", CASES)
@pytest.mark.parametrize("alpha,drop_prob,per_tick", [(1.0, 0.0, 1), (1.4, 0.3, 1), (0.8, 0.2, 3)])
def test_edge_kernel_matches_numpy_twin(kind, dtype, alpha, drop_prob, per_tick):
    n, dim = 7, 3
    ga = graph_arrays(graph_for(n, 1))
    prob = Problem(build(kind, n, dim, seed=4), n, dtype=dtype)
    rho = 0.9
    prob.packed.refresh_cholesky(rho * ga.degree.astype(float))
    rng = np.random.default_rng(1)
    n_ticks = 40
    edges_ = rng.integers(0, ga.n_edges, size=n_ticks * per_tick).astype(np.int64)
    ptr = np.arange(0, n_ticks * per_tick + 1, per_tick, dtype=np.int64)
    drops = rng.random((len(edges_), 2))
    a, b = _edge_state(ga, dim, dtype, 2), _edge_state(ga, dim, dtype, 2)
    K.edge_run(*_edge_args(a, ptr, edges_, drops, drop_prob, rho, alpha, ga), *prob.packed.args(INNER_TOL, 500))
    K.edge_run_np(*_edge_args(b, ptr, edges_, drops, drop_prob, rho, alpha, ga), prob.prox_batch(INNER_TOL, 500))
    for key in ("x", "z", "lam", "S", "Lam"):
        np.testing.assert_allclose(a[key], b[key], **tolerances(dtype))
    for key in ("msgs", "floats", "act", "bal"):
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("kind,dtype", CASES)
@pytest.mark.parametrize("alpha", [1.0, 1.6])
def test_star_kernel_matches_numpy_twin(kind, dtype, alpha):
    n, dim = 6, 4
    prob = Problem(build(kind, n, dim, seed=5), n, dtype=dtype)
    rho = 2.5
    prob.packed.refresh_cholesky(np.full(n, rho))
    rng = np.random.default_rng(3)
    x0 = rng.normal(size=(n, dim)).astype(dtype)
    u0 = rng.normal(size=(n, dim)).astype(dtype)
    z0 = rng.normal(size=dim).astype(dtype)
    x, u, zc, zp = x0.copy(), u0.copy(), z0.copy(), np.empty_like(z0)
    K.star_run(9, x, u, zc, zp, rho, alpha, *prob.packed.args(INNER_TOL, 500))
    xn, un, zn, zpn = K.star_run_np(9, x0.copy(), u0.copy(), z0.copy(), rho, alpha, prob.prox_batch(INNER_TOL, 500))
    for p, q in ((x, xn), (u, un), (zc, zn), (zp, zpn)):
        np.testing.assert_allclose(p, q, **tolerances(dtype))


# -- identities between methods -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["averaging", "dense", "dense-cd"])
@pytest.mark.parametrize("rho", [0.3, 4.0])
def test_edge_form_with_rho_equals_dadmm_with_c_half_rho(kind, rho):
    """Reference edge-form Jacobi steps (A1)-(A3) with rho == node kernel (S1)-(S4) == DADMM with c = rho/2."""
    n, dim = 8, 3
    g = graph_for(n, 1)
    ga = graph_arrays(g)
    prob = Problem(build(kind, n, dim, seed=7), n)
    prob.packed.refresh_cholesky(rho * ga.degree.astype(float))
    prox = prob.prox_batch(INNER_TOL, 2000)
    # Edge form from x0 = 0, z0 = 0, lam0 = 0.
    x = np.zeros((n, dim))
    z = np.zeros((ga.n_edges, dim))
    lam = np.zeros((ga.n_edges, 2, dim))
    # Node kernel.
    xk, lk = np.zeros((n, dim)), np.zeros((n, dim))
    buf, zp, zb = np.empty_like(xk), np.empty_like(xk), np.empty_like(xk)
    # Shi et al. DADMM (closed form for averaging only) with c = rho / 2: alpha <- alpha + c L x.
    c = rho / 2
    lap = ga.laplacian()
    xs, al = np.zeros((n, dim)), np.zeros((n, dim))
    for _ in range(25):
        x = x_update(prox, z, lam, rho, ga, x)
        z_new = z_update(x, z, lam, rho, 1.0, ga)
        lam = dual_update(x, z, z_new, lam, rho, 1.0, ga)
        z = z_new
        np.testing.assert_allclose(lam[:, 0] + lam[:, 1], 0.0, atol=1e-12)  # dual invariant
        K.sync_node_run(1, xk, lk, buf, zp, zb, rho, ga.indptr, ga.indices, ga.degree, *prob.packed.args(INNER_TOL,
                                                                                                          2000))
        np.testing.assert_allclose(xk, x, rtol=1e-10, atol=1e-10)
        if kind == "averaging":
            w = prob.packed.wgt[:, None]
            a = prob.packed.g / w
            d = ga.degree[:, None]
            adj = np.diag(ga.degree) - lap
            # Shi et al. (2014) x-step for f_i = (w/2)||x - a_i||^2: (w a_i - alpha_i + c(d_i x_i + sum_j x_j))
            # / (w + 2 c d_i)
            xs = (w * a - al + c * (d * xs + adj @ xs)) / (w + 2 * c * d)
            al = al + c * lap @ xs
            np.testing.assert_allclose(xs, x, rtol=1e-10, atol=1e-10)
            np.testing.assert_allclose(al.sum(axis=0), 0.0, atol=1e-10)  # sum of DADMM duals stays 0


@pytest.mark.parametrize("kind", ["averaging", "separable", "dense", "dense-cd"])
def test_async_with_all_edges_active_each_tick_equals_sync(kind):
    n, dim = 9, 2
    ga = graph_arrays(graph_for(n, 0))
    prob = Problem(build(kind, n, dim, seed=2), n)
    rho = 1.3
    prob.packed.refresh_cholesky(rho * ga.degree.astype(float))
    st = _edge_state(ga, dim, np.float64, 0)
    for key in ("x", "z", "lam", "S", "Lam"):
        st[key][:] = 0.0
    xk, lk = np.zeros((n, dim)), np.zeros((n, dim))
    buf, zp, zb = np.empty_like(xk), np.empty_like(xk), np.empty_like(xk)
    all_edges = np.arange(ga.n_edges, dtype=np.int64)
    for t in range(30):
        K.edge_run(np.array([0, ga.n_edges], np.int64), all_edges, np.zeros((0, 2)), 0.0, st["x"], st["z"],
                   st["lam"], st["S"], st["Lam"], rho, 1.0, ga.edges, ga.degree, st["stamp"], t, st["msgs"],
                   st["floats"], st["act"], st["bal"], *prob.packed.args(INNER_TOL, 2000))
        K.sync_node_run(1, xk, lk, buf, zp, zb, rho, ga.indptr, ga.indices, ga.degree,
                        *prob.packed.args(INNER_TOL, 2000))
        np.testing.assert_allclose(st["x"], xk, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(st["Lam"], lk, rtol=1e-9, atol=1e-10)
