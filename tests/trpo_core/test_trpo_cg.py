"""Conjugate gradient on random SPD systems (Hypothesis), with honest residuals and warm starts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from trpo_core import conjugate_gradient


def random_spd(n: int, seed: int, cond: float) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eig = np.geomspace(1.0, cond, n)
    return torch.from_numpy((q * eig) @ q.T)


@given(n=st.integers(1, 30), seed=st.integers(0, 2**31 - 1), log_cond=st.floats(0.0, 3.0))
def test_solves_random_spd_systems(n, seed, log_cond):
    A = random_spd(n, seed, 10.0**log_cond)
    b = torch.from_numpy(np.random.default_rng(seed + 1).standard_normal(n))
    x, info = conjugate_gradient(lambda v: A @ v, b, max_iter=3 * n, residual_tol=1e-24)
    x_ref = torch.linalg.solve(A, b)
    torch.testing.assert_close(x, x_ref, rtol=1e-6, atol=1e-8 * float(x_ref.norm()))
    assert info.n_iter <= 3 * n
    assert not info.nonpositive_curvature


@given(n=st.integers(2, 40), seed=st.integers(0, 2**31 - 1), max_iter=st.integers(1, 10))
def test_reported_residual_is_the_true_residual(n, seed, max_iter):
    A = random_spd(n, seed, 100.0)
    b = torch.from_numpy(np.random.default_rng(seed + 1).standard_normal(n))
    x, info = conjugate_gradient(lambda v: A @ v, b, max_iter=max_iter, residual_tol=0.0)
    true = float((b - A @ x).norm())
    assert info.residual_norm == pytest.approx(true, rel=1e-6, abs=1e-10)
    assert info.initial_residual_norm == pytest.approx(float(b.norm()))
    # From x0 = 0 the iterate satisfies x^T A x = b^T x (used by max_step_length in trust_region_step).
    assert float(x @ (A @ x)) == pytest.approx(float(b @ x), rel=1e-8)


def test_stops_on_residual_tolerance():
    A = torch.eye(5, dtype=torch.float64) * 2.0
    b = torch.ones(5, dtype=torch.float64)
    x, info = conjugate_gradient(lambda v: A @ v, b)
    assert info.n_iter == 1 and info.converged
    torch.testing.assert_close(x, b / 2)


def test_warm_start_at_the_solution_takes_no_iteration():
    A = random_spd(8, 0, 10.0)
    b = torch.ones(8, dtype=torch.float64)
    x_star = torch.linalg.solve(A, b)
    x, info = conjugate_gradient(lambda v: A @ v, b, max_iter=10, x0=x_star)
    assert info.n_iter == 0 and info.converged
    torch.testing.assert_close(x, x_star)


def test_warm_start_near_the_solution_helps():
    A = random_spd(30, 1, 1e3)
    b = torch.ones(30, dtype=torch.float64)
    x_star = torch.linalg.solve(A, b)
    _, cold = conjugate_gradient(lambda v: A @ v, b, max_iter=5, residual_tol=0.0)
    _, warm = conjugate_gradient(lambda v: A @ v, b, max_iter=5, residual_tol=0.0, x0=x_star + 1e-3)
    assert warm.residual_norm < cold.residual_norm


@given(n=st.integers(2, 30), seed=st.integers(0, 2**31 - 1), max_iter=st.integers(1, 8))
def test_known_a_x0_saves_a_product_and_changes_nothing(n, seed, max_iter):
    """Passing A x0 (kept from an earlier solve as b' - r') gives the same iterate with one product fewer."""
    A = random_spd(n, seed, 100.0)
    rng = np.random.default_rng(seed + 1)
    b_prev, b = (torch.from_numpy(rng.standard_normal(n)) for _ in range(2))
    s_prev, info_prev = conjugate_gradient(lambda v: A @ v, b_prev, max_iter=max_iter, residual_tol=0.0)
    torch.testing.assert_close(b_prev - info_prev.residual, A @ s_prev, rtol=1e-8, atol=1e-10)
    products = []

    def counted(v):
        products.append(1)
        return A @ v

    x_plain, info_plain = conjugate_gradient(counted, b, max_iter=max_iter, residual_tol=0.0, x0=s_prev)
    n_plain = len(products)
    products.clear()
    x_known, info_known = conjugate_gradient(counted, b, max_iter=max_iter, residual_tol=0.0, x0=s_prev,
                                             ax0=b_prev - info_prev.residual)
    assert len(products) == n_plain - 1 == info_known.n_iter
    torch.testing.assert_close(x_known, x_plain, rtol=1e-7, atol=1e-9 * (1 + float(x_plain.norm())))
    torch.testing.assert_close(info_known.residual, b - A @ x_known, rtol=1e-6, atol=1e-9)


def test_reports_nonpositive_curvature():
    x, info = conjugate_gradient(lambda v: -v, torch.ones(3, dtype=torch.float64))
    assert info.nonpositive_curvature and not info.converged
    assert torch.all(x == 0)


@pytest.mark.parametrize("bad", [dict(max_iter=0), dict(x0=torch.zeros(2)), dict(ax0=torch.zeros(3)),
                                 dict(x0=torch.zeros(3), ax0=torch.zeros(2))])
def test_invalid_input_raises(bad):
    with pytest.raises(ValueError):
        conjugate_gradient(lambda v: v, torch.ones(3), **bad)
