"""Preconditioning (consensus_admm.precondition): the equations (P1)-(P3) by hand, the scaled problem has the same
solution, results come back in the original units, and preconditioning="none" is the previous behaviour."""

from __future__ import annotations

import dataclasses
import math

import networkx as nx
import numpy as np
import pytest

from consensus_admm import ADMMSettings, ADMMStatus, Averaging, Box, Lasso, LogisticRegression, solve
from consensus_admm._problem import Problem
from consensus_admm.graphs import graph_arrays
from consensus_admm.precondition import (SCALING_THRESHOLD, CurvatureStatistics, local_statistics, mean_statistics,
                                         preconditioner)
from consensus_admm.solver import initial_penalty
from consensus_admm.testing import build_problem, check_result

SCALES = np.logspace(-3, 2, 6)
TIGHT = ADMMSettings(eps_abs=1e-10, eps_rel=1e-10, max_iter=20_000)


def test_equations_by_hand():
    hbar = np.array([[4.0, 1.0], [1.0, 400.0]])
    stats = CurvatureStatistics(np.diag(hbar).copy(), hbar)
    p = preconditioner(stats, (0.5, 2.0), "sync")
    c = np.diag(hbar)
    d = np.sqrt(math.sqrt(c[0] * c[1]) / c)  # (P1): geomean(d) = 1
    np.testing.assert_allclose(p.scale, d)
    scaled = hbar * d[:, None] * d[None, :]
    np.testing.assert_allclose(np.diag(scaled), np.sqrt(c[0] * c[1]))  # Jacobi: equal diagonal
    mu, big = np.linalg.eigvalsh(scaled)  # (P2)
    assert p.curvature == pytest.approx((mu, big))
    assert p.penalty == pytest.approx(2 * math.sqrt(mu * big) / math.sqrt(0.5 * 2.0))  # (P3)
    assert preconditioner(stats, (0.5, 2.0), "star").penalty == pytest.approx(math.sqrt(mu * big))


def test_no_scaling_below_the_threshold_or_when_not_scalable():
    mild = CurvatureStatistics(np.array([1.0, SCALING_THRESHOLD * 0.99]), None)
    assert not preconditioner(mild, (1.0, 1.0), "star").scaled
    wide = CurvatureStatistics(np.array([1.0, 1e4]), None)
    p = preconditioner(wide, (1.0, 1.0), "star", scalable=False)
    assert not p.scaled and np.all(p.scale == 1.0)
    assert p.penalty == pytest.approx(100.0)  # sqrt(mu L) of the unscaled diagonal


def test_zero_curvature_coordinates_get_the_typical_scale():
    p = preconditioner(CurvatureStatistics(np.array([0.0, 1.0, 100.0]), None), (1.0, 1.0), "star")
    np.testing.assert_allclose(p.scale, [1.0, math.sqrt(10.0), 1.0 / math.sqrt(10.0)])


def test_statistics_average_like_the_stacked_problem():
    # The mean of the agents' statistics is the statistic of the mean objective: what average consensus (or an
    # MPI allreduce) of the local statistics gives every agent.
    p = build_problem("lasso", 5, 4, seed=3, rows=6)
    stats = mean_statistics([local_statistics(o, 4) for o in p.objectives])
    A = p.data["A"]
    np.testing.assert_allclose(stats.hessian, A.T @ A / 5)
    np.testing.assert_allclose(stats.diag, np.diag(A.T @ A) / 5)
    mixed = mean_statistics([local_statistics(Averaging([1.0, 2.0]), 2), local_statistics(Box(0, 1, dim=2), 2),
                             local_statistics(LogisticRegression([[1.0, 0.0]], [1], l2=0.5), 2)])
    np.testing.assert_allclose(mixed.hessian, (np.eye(2) + np.diag([0.25 + 0.5, 0.5])) / 3)
    assert mean_statistics([local_statistics(object(), 2)]) is None


@pytest.mark.parametrize("kind", ["least_squares", "lasso", "logistic"])
def test_scaled_objectives_are_the_same_function(kind):
    p = build_problem(kind, 3, 6, seed=0, feature_scales=SCALES)
    d = 1.0 / np.sqrt(SCALES)
    rng = np.random.default_rng(0)
    for obj in p.objectives:
        g = obj.scaled(d)
        for y in rng.normal(size=(5, 6)):
            assert g.value(y) == pytest.approx(obj.value(d * y), rel=1e-12)
        v, t = rng.normal(size=6), 0.7
        # prox of g(y) = f(d y) in the Euclidean metric of y is the metric prox of f; check its optimality in y
        y = g.prox(v, t)
        step = 1e-6 * rng.normal(size=6)
        phi = lambda z: g.value(z) + np.sum((z - v) ** 2) / (2 * t)  # noqa: E731
        assert phi(y) <= phi(y + step) + 1e-12 and phi(y) <= phi(y - step) + 1e-12


@pytest.mark.parametrize("method", ["sync", "async", "star"])
def test_scaled_runs_report_in_original_units(method):
    p = build_problem("lasso", 6, 6, seed=4, rows=8, feature_scales=SCALES)
    g = nx.cycle_graph(6)
    res = solve(p.objectives, g, dataclasses.replace(TIGHT, method=method), seed=0)
    assert np.ptp(res.scale) > 0  # the scaling was applied
    check_result(res, p, kkt_tol=1e-5)  # x, duals and the centralized KKT in the problem's own units
    again = solve(p.objectives, g, dataclasses.replace(TIGHT, method=method), seed=1, warm_start=res)
    assert again.status == ADMMStatus.SOLVED and again.n_iter <= TIGHT.check_interval


def test_none_restores_the_previous_default():
    p = build_problem("least_squares", 6, 6, seed=1, feature_scales=SCALES)
    g = nx.cycle_graph(6)
    res = solve(p.objectives, g, ADMMSettings(preconditioning="none", max_iter=50))
    assert np.all(res.scale == 1.0)
    assert res.initial_penalty == pytest.approx(initial_penalty(Problem(p.objectives, 6), graph_arrays(g), "sync"))


def test_user_objectives_without_curvature_fall_back():
    class Plain:
        dim = 2

        def __init__(self, c):
            self.c = np.asarray(c, float)

        def prox(self, v, t):
            return (v + t * self.c) / (1 + t)

    res = solve([Plain([k, 2 * k]) for k in range(4)], nx.cycle_graph(4), TIGHT)
    assert np.all(res.scale == 1.0) and res.success
    np.testing.assert_allclose(res.consensus, [1.5, 3.0], atol=1e-8)


def test_lasso_weights_scale_per_coordinate():
    f = Lasso(np.eye(2), [3.0, 3.0], l1=1.0)
    g = f.scaled(np.array([2.0, 0.5]))
    np.testing.assert_allclose(g.l1, [2.0, 0.5])
    assert g.value([1.0, 4.0]) == pytest.approx(f.value([2.0, 2.0]))
