"""Trust-region step: KL bound and surrogate on accepted steps, bit-for-bit restore on rejection, both rules."""

from __future__ import annotations

import math

import pytest
import torch
from _trpo_models import KINDS, OBS_DIM, make_policy
from hypothesis import given, settings
from hypothesis import strategies as st

from trpo_core import (
    StepStatus,
    TRPOSettings,
    backtracking_line_search,
    fisher_vector_product,
    flat_grad,
    flat_params,
    max_step_length,
    natural_gradient_direction,
    set_flat_params,
    trainable_parameters,
    trust_region_step,
)


def _problem(kind, seed, n=64, dtype=torch.float64):
    module, dist_fn = make_policy(kind, seed=seed, dtype=dtype, hidden=8)
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, OBS_DIM, generator=g, dtype=dtype)
    with torch.no_grad():
        old = dist_fn(obs).detach()
        actions = old.sample(generator=g)
        logp_old = old.log_prob(actions)
    adv = torch.randn(n, generator=g, dtype=dtype)

    def surrogate(_theta=None):
        return (torch.exp(dist_fn(obs).log_prob(actions) - logp_old) * adv).mean()

    def kl(_theta=None):
        return old.kl(dist_fn(obs)).mean()

    return module, dist_fn, obs, surrogate, kl


def _bits(module):
    return [p.detach().clone().view(torch.int64) for p in trainable_parameters(module)]


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=10)
@given(seed=st.integers(0, 10_000), max_kl=st.sampled_from([1e-3, 1e-2, 5e-2]))
def test_harl_accepted_steps_respect_kl_and_improve_surrogate(kind, seed, max_kl):
    module, dist_fn, obs, surrogate, kl = _problem(kind, seed)
    s = TRPOSettings.harl(max_kl=max_kl)
    fvp = fisher_vector_product(module, dist_fn, obs)
    before = float(surrogate().detach())
    theta, info = trust_region_step(module, fvp, kl_fn=kl, surrogate_fn=surrogate, settings=s)
    # Independent re-evaluation at the returned parameters.
    torch.testing.assert_close(flat_params(module), theta, rtol=0, atol=0)
    with torch.no_grad():
        kl_after, surr_after = float(kl()), float(surrogate())
    assert info.surrogate_before == pytest.approx(before)
    if info.accepted:
        assert kl_after < max_kl
        assert surr_after > before
        assert info.kl == pytest.approx(kl_after) and info.surrogate_after == pytest.approx(surr_after)
        assert info.cg_n_iter >= 1 and info.step_length > 0
    else:
        assert surr_after == pytest.approx(before, abs=0)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=10)
@given(seed=st.integers(0, 10_000))
def test_matrpo_rule_with_caller_gradient_and_loss(kind, seed):
    # MATRPO's local update: g is the gradient of a weighted log-ratio sum, acceptance uses a separate nonlinear loss.
    module, dist_fn, obs, surrogate, kl = _problem(kind, seed)
    s = TRPOSettings.matrpo(max_kl=0.01, fvp_subsample_every=2)
    with torch.no_grad():
        old = dist_fn(obs).detach()
        actions = old.sample(generator=torch.Generator().manual_seed(seed + 1))
        logp_old = old.log_prob(actions)
    w = torch.randn(obs.shape[0], generator=torch.Generator().manual_seed(seed + 2), dtype=torch.float64)

    def logratio():
        return dist_fn(obs).log_prob(actions) - logp_old

    def lagrangian(_theta=None):
        lr = logratio()
        return -(torch.exp(lr) * w).mean() + 0.5 * (lr**2).mean()

    g = flat_grad((w * logratio()).mean(), module)
    loss_before = float(lagrangian().detach())
    fvp = fisher_vector_product(module, dist_fn, obs, subsample_every=s.fvp_subsample_every)
    _, info = trust_region_step(module, fvp, kl_fn=kl, loss_fn=lagrangian, gradient=g, settings=s)
    with torch.no_grad():
        kl_after, loss_after = float(kl()), float(lagrangian())
    assert info.loss_before == pytest.approx(loss_before)
    if info.accepted:
        assert kl_after <= 1.5 * 0.01
        assert loss_after <= loss_before
    else:
        assert loss_after == loss_before


@pytest.mark.parametrize("acceptance", ["harl", "matrpo"])
@pytest.mark.parametrize("kind", KINDS)
def test_rejected_step_restores_parameters_bit_for_bit(kind, acceptance):
    module, dist_fn, obs, surrogate, kl = _problem(kind, 7)
    fvp = fisher_vector_product(module, dist_fn, obs)
    bits = _bits(module)
    theta0 = flat_params(module)
    # Ascend along minus the true gradient: every try lowers the surrogate, so every try is rejected.
    wrong = -flat_grad(surrogate(), module)
    theta, info = trust_region_step(module, fvp, kl_fn=kl, surrogate_fn=surrogate, gradient=wrong,
                                    settings=TRPOSettings(acceptance=acceptance))
    assert info.status is StepStatus.REJECTED and not info.accepted
    assert info.n_backtracks == 10 and info.kl == 0.0
    for a, b in zip(bits, _bits(module)):
        assert torch.equal(a, b)
    assert torch.equal(theta.view(torch.int64), theta0.view(torch.int64))


def test_rejected_step_restores_after_nonfinite_loss():
    module, dist_fn, obs, surrogate, kl = _problem("categorical", 8)
    bits = _bits(module)
    fvp = fisher_vector_product(module, dist_fn, obs)
    calls = {"n": 0}

    def loss(_theta):
        calls["n"] += 1
        return float(-surrogate()) if calls["n"] == 1 else math.nan

    _, info = trust_region_step(module, fvp, kl_fn=kl, loss_fn=loss, gradient=flat_grad(surrogate(), module),
                                settings=TRPOSettings.matrpo())
    assert info.status is StepStatus.REJECTED
    for a, b in zip(bits, _bits(module)):
        assert torch.equal(a, b)


def test_zero_gradient_is_a_status_not_a_step():
    module, dist_fn, obs, surrogate, kl = _problem("gaussian", 9)
    bits = _bits(module)
    fvp = fisher_vector_product(module, dist_fn, obs)
    _, info = trust_region_step(module, fvp, kl_fn=kl, surrogate_fn=surrogate,
                                gradient=torch.zeros_like(flat_params(module)), settings=TRPOSettings())
    assert info.status is StepStatus.ZERO_GRADIENT and not info.accepted
    for a, b in zip(bits, _bits(module)):
        assert torch.equal(a, b)


def test_nonpositive_curvature_is_a_status():
    module, _, _, surrogate, kl = _problem("categorical", 10)
    bits = _bits(module)
    _, info = trust_region_step(module, lambda v: -v, kl_fn=kl, surrogate_fn=surrogate,
                                settings=TRPOSettings(damping=0.0))
    assert info.status is StepStatus.NONPOSITIVE_CURVATURE
    for a, b in zip(bits, _bits(module)):
        assert torch.equal(a, b)


def test_requires_exactly_one_objective():
    module, dist_fn, obs, surrogate, kl = _problem("categorical", 0)
    with pytest.raises(ValueError, match="exactly one"):
        trust_region_step(module, lambda v: v, kl_fn=kl, settings=TRPOSettings())
    with pytest.raises(ValueError, match="exactly one"):
        trust_region_step(module, lambda v: v, kl_fn=kl, surrogate_fn=surrogate, loss_fn=surrogate,
                          settings=TRPOSettings())


def test_pieces_compose_into_the_same_step():
    # natural_gradient_direction + max_step_length + backtracking_line_search == trust_region_step.
    module, dist_fn, obs, surrogate, kl = _problem("multicategorical", 11)
    s = TRPOSettings.harl(max_kl=0.01)
    fvp = fisher_vector_product(module, dist_fn, obs)
    theta0 = flat_params(module)
    g = flat_grad(surrogate(), module)
    direction, cg = natural_gradient_direction(fvp, g, s)
    curv = fvp(direction) + s.damping * direction
    beta = max_step_length(direction, curv, s.max_kl)
    # (T2) both curvature forms agree for CG started at zero.
    assert beta == pytest.approx(max_step_length(direction, g, s.max_kl), rel=1e-6)
    ls = backtracking_line_search(theta0, beta * direction, kl_fn=kl, surrogate_fn=surrogate, settings=s,
                                  expected_improvement=float(g @ (beta * direction)), params=module)
    set_flat_params(module, theta0)
    theta, info = trust_region_step(module, fvp, kl_fn=kl, surrogate_fn=surrogate, settings=s)
    assert ls.accepted and info.accepted
    torch.testing.assert_close(theta, ls.params, rtol=1e-6, atol=1e-9)
    assert cg.n_iter == info.cg_n_iter


def test_full_step_reaches_the_kl_model_boundary():
    # With an exact quadratic KL model the full step's KL equals max_kl: 0.5 * Delta^T F Delta = delta.
    A = torch.diag(torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64))
    g = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    s = TRPOSettings(max_kl=0.02, damping=0.0)
    direction, _ = natural_gradient_direction(lambda v: A @ v, g, s)
    beta = max_step_length(direction, A @ direction, s.max_kl)
    step = beta * direction
    assert float(0.5 * step @ A @ step) == pytest.approx(0.02)


def test_line_search_backtracks_until_the_kl_fits():
    res = backtracking_line_search(
        torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64),
        kl_fn=lambda th: float(th[0] ** 2), surrogate_fn=lambda th: float(th[0]),
        expected_improvement=1.0, settings=TRPOSettings(max_kl=0.3, backtrack_coeff=0.5))
    # fractions 1, 0.5 (KL 0.25 < 0.3, ratio 1 > 0.5)
    assert res.accepted and res.n_backtracks == 1 and res.step_fraction == 0.5
    assert res.kl == pytest.approx(0.25)


def test_matrpo_rule_allows_kl_slack_and_equal_loss():
    res = backtracking_line_search(
        torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64),
        kl_fn=lambda th: 1.4 * 0.01 * float(th[0]), loss_fn=lambda th: 0.0,
        settings=TRPOSettings.matrpo(max_kl=0.01))
    assert res.accepted and res.n_backtracks == 0
    assert res.kl == pytest.approx(0.014)


@pytest.mark.parametrize("acceptance", ["harl", "matrpo"])
def test_objective_is_not_evaluated_where_the_kl_test_fails(acceptance):
    """kl_fn runs first; a candidate it rejects never reaches the objective (so kl_fn may stop early)."""
    calls = []

    def surrogate(th):
        calls.append(float(th[0]))
        return float(th[0])

    res = backtracking_line_search(
        torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64),
        kl_fn=lambda th: float(th[0] ** 2), surrogate_fn=surrogate, expected_improvement=1.0,
        settings=TRPOSettings(max_kl=0.1, backtrack_coeff=0.5, acceptance=acceptance, kl_slack=1.0))
    # fractions 1 (KL 1), 0.5 (0.25), 0.25 (0.0625 passes)
    assert res.accepted and res.step_fraction == 0.25
    assert calls == [0.0, 0.25]  # theta_old (surrogate_before not given), then only the accepted candidate
