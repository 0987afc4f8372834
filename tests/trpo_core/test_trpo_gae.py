"""GAE: analytic cases, truncation versus termination, batched equals a per-trajectory loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from trpo_core import compute_gae


def _random(T, B, seed, p_term=0.1, p_trunc=0.1):
    rng = np.random.default_rng(seed)
    r = torch.from_numpy(rng.standard_normal((T, B)))
    v = torch.from_numpy(rng.standard_normal((T, B)))
    nv = torch.from_numpy(rng.standard_normal((T, B)))
    term = torch.from_numpy(rng.random((T, B)) < p_term)
    trunc = torch.from_numpy(rng.random((T, B)) < p_trunc) & ~term
    return r, v, nv, term, trunc


def test_lambda_zero_gives_td_residual():
    r, v, nv, term, trunc = _random(20, 3, 0)
    adv, ret = compute_gae(r, v, nv, term, trunc, gamma=0.9, lam=0.0)
    td = r + 0.9 * (~term) * nv - v
    torch.testing.assert_close(adv, td)
    torch.testing.assert_close(ret, td + v)


def test_lambda_one_gives_discounted_return_minus_value():
    T, gamma = 15, 0.95
    r, v, nv, _, _ = _random(T, 1, 1)
    nv[:-1] = v[1:]  # inside a trajectory the next state's value is the next value
    none = torch.zeros(T, 1, dtype=torch.bool)
    adv, ret = compute_gae(r, v, nv, none, none, gamma=gamma, lam=1.0)
    for t in range(T):
        # Monte-Carlo return to the end of the rollout, bootstrapped by the last next-value.
        g = sum(gamma**k * r[t + k, 0] for k in range(T - t)) + gamma ** (T - t) * nv[T - 1, 0]
        assert float(adv[t, 0]) == pytest.approx(float(g - v[t, 0]), rel=1e-12, abs=1e-12)
        assert float(ret[t, 0]) == pytest.approx(float(g), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_truncation_bootstraps_and_termination_does_not(lam):
    gamma = 0.9
    r = torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    v = torch.tensor([0.5, 0.5, 0.5, 0.5], dtype=torch.float64)
    nv = torch.tensor([0.5, 7.0, 0.5, 0.5], dtype=torch.float64)  # 7.0: value of the state after the episode end
    end = torch.tensor([False, True, False, False])
    no = torch.zeros(4, dtype=torch.bool)
    adv_trunc, _ = compute_gae(r, v, nv, no, end, gamma=gamma, lam=lam)
    adv_term, _ = compute_gae(r, v, nv, end, no, gamma=gamma, lam=lam)
    # At the end step: the truncated one bootstraps from 7.0, the terminated one from 0.
    assert float(adv_trunc[1]) == pytest.approx(1.0 + gamma * 7.0 - 0.5)
    assert float(adv_term[1]) == pytest.approx(1.0 - 0.5)
    # The trace is cut at both: the steps after the end do not leak into the steps before it.
    torch.testing.assert_close(adv_trunc[2:], adv_term[2:])
    delta0 = 1.0 + gamma * 0.5 - 0.5
    assert float(adv_trunc[0]) == pytest.approx(delta0 + gamma * lam * float(adv_trunc[1]))
    assert float(adv_term[0]) == pytest.approx(delta0 + gamma * lam * float(adv_term[1]))


def _reference_loop(r, v, nv, term, trunc, gamma, lam):
    """Scalar loop, one trajectory segment at a time."""
    T = len(r)
    adv = [0.0] * T
    ends = [t for t in range(T) if term[t] or trunc[t]] + [T - 1]
    start = 0
    for end in sorted(set(ends)):
        if end < start:
            continue
        running = 0.0
        for t in range(end, start - 1, -1):
            boot = 0.0 if term[t] else nv[t]
            delta = r[t] + gamma * boot - v[t]
            running = delta + (gamma * lam * running if t < end else 0.0)
            adv[t] = running
        start = end + 1
    return adv


@given(
    T=st.integers(1, 40),
    B=st.integers(1, 5),
    seed=st.integers(0, 10_000),
    gamma=st.floats(0.0, 1.0),
    lam=st.floats(0.0, 1.0),
)
def test_batched_equals_per_trajectory_loop(T, B, seed, gamma, lam):
    r, v, nv, term, trunc = _random(T, B, seed, p_term=0.15, p_trunc=0.15)
    adv, ret = compute_gae(r, v, nv, term, trunc, gamma=gamma, lam=lam)
    for b in range(B):
        ref = _reference_loop(r[:, b].tolist(), v[:, b].tolist(), nv[:, b].tolist(), term[:, b].tolist(),
                              trunc[:, b].tolist(), gamma, lam)
        np.testing.assert_allclose(adv[:, b].numpy(), ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ret, adv + v)


def test_trailing_dimensions_are_independent():
    r, v, nv, term, trunc = _random(10, 6, 3)
    adv, _ = compute_gae(r, v, nv, term, trunc, gamma=0.99, lam=0.95)
    adv3, _ = compute_gae(*(t.reshape(10, 2, 3) for t in (r, v, nv, term, trunc)), gamma=0.99, lam=0.95)
    torch.testing.assert_close(adv3.reshape(10, 6), adv)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(gamma=1.5, lam=0.9), "gamma"),
        (dict(gamma=0.9, lam=-0.1), "lam"),
    ],
)
def test_invalid_discounts_raise(kwargs, match):
    r, v, nv, term, trunc = _random(4, 1, 0)
    with pytest.raises(ValueError, match=match):
        compute_gae(r, v, nv, term, trunc, **kwargs)


def test_shape_mismatch_raises():
    r, v, nv, term, trunc = _random(4, 2, 0)
    with pytest.raises(ValueError, match="next_values"):
        compute_gae(r, v, nv[:3], term, trunc, gamma=0.9, lam=0.9)
