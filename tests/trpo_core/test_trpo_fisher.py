"""Fisher-vector products: both forms symmetric, PSD, equal to each other and to an explicit Hessian of the mean KL."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call

from conftest import FISHER_ATOL, FISHER_RTOL
from _trpo_models import KINDS, OBS_DIM, make_policy
from trpo_core import (
    fisher_vector_product,
    flat_params,
    functional_fisher_vector_product,
    n_parameters,
    set_flat_params,
    unflatten,
)

FORMS = ["fast", "exact"]


def explicit_fisher(module, dist_fn, obs):
    """Hessian at theta_old of theta -> mean KL(pi_old || pi_theta), by torch.autograd.functional.hessian."""
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    shapes = [p for _, p in module.named_parameters() if p.requires_grad]
    theta0 = flat_params(module)
    old = dist_fn(obs).detach()

    def kl(theta):
        mapping = dict(zip(names, unflatten(theta, shapes)))
        new = functional_call(_Wrap(module, dist_fn), {"m." + k: v for k, v in mapping.items()}, (obs,))
        return old.kl(new).mean()

    return torch.autograd.functional.hessian(kl, theta0)


class _Wrap(torch.nn.Module):
    def __init__(self, m, fn):
        super().__init__()
        self.m = m
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def fvp_matrix(fvp, dim, dtype=torch.float64):
    eye = torch.eye(dim, dtype=dtype)
    return torch.stack([fvp(eye[i]) for i in range(dim)], dim=1)


def _obs(seed, n=12, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed + 1000)
    return torch.randn(n, OBS_DIM, generator=g, dtype=dtype)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("form", FORMS)
def test_fvp_matches_explicit_hessian(kind, form):
    module, dist_fn = make_policy(kind, seed=0)
    obs = _obs(0)
    H = explicit_fisher(module, dist_fn, obs)
    F = fvp_matrix(fisher_vector_product(module, dist_fn, obs, form=form), n_parameters(module))
    torch.testing.assert_close(F, H, rtol=FISHER_RTOL, atol=FISHER_ATOL)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=8)
@given(seed=st.integers(0, 10_000))
def test_both_forms_symmetric_psd_and_equal(kind, seed):
    module, dist_fn = make_policy(kind, seed=seed)
    obs = _obs(seed)
    dim = n_parameters(module)
    fast = fvp_matrix(fisher_vector_product(module, dist_fn, obs, form="fast"), dim)
    exact = fvp_matrix(fisher_vector_product(module, dist_fn, obs, form="exact"), dim)
    for F in (fast, exact):
        torch.testing.assert_close(F, F.T, rtol=FISHER_RTOL, atol=FISHER_ATOL)
        eig = torch.linalg.eigvalsh(0.5 * (F + F.T))
        assert eig.min() >= -FISHER_ATOL * max(1.0, float(eig.max()))
    torch.testing.assert_close(fast, exact, rtol=FISHER_RTOL, atol=FISHER_ATOL)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("form", FORMS)
def test_damping_adds_lambda_v(kind, form):
    module, dist_fn = make_policy(kind, seed=3)
    obs = _obs(3)
    v = torch.randn(n_parameters(module), dtype=torch.float64)
    plain = fisher_vector_product(module, dist_fn, obs, form=form)(v)
    damped = fisher_vector_product(module, dist_fn, obs, form=form, damping=0.1)(v)
    torch.testing.assert_close(damped, plain + 0.1 * v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("form", FORMS)
def test_subsampling_uses_every_kth_sample(form):
    module, dist_fn = make_policy("multicategorical", seed=4)
    obs = _obs(4, n=23)
    v = torch.randn(n_parameters(module), dtype=torch.float64)
    op = fisher_vector_product(module, dist_fn, obs, form=form, subsample_every=5)
    assert op.n_samples == 5  # rows 0, 5, 10, 15, 20
    ref = fisher_vector_product(module, dist_fn, obs[::5], form=form)(v)
    torch.testing.assert_close(op(v), ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("form", FORMS)
def test_operator_is_a_snapshot_of_theta_old(form):
    # The line search moves the parameters in place; the operator must keep computing F at theta_old.
    module, dist_fn = make_policy("gaussian", seed=5)
    obs = _obs(5)
    op = fisher_vector_product(module, dist_fn, obs, form=form)
    v = torch.randn(op.dim, dtype=torch.float64)
    before = op(v)
    theta = flat_params(module)
    set_flat_params(module, theta + 0.3)
    torch.testing.assert_close(op(v), before, rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_functional_path_matches_module_path(kind):
    module, dist_fn = make_policy(kind, seed=6)
    obs = _obs(6)
    params = {n: p.detach() for n, p in module.named_parameters()}

    def fdist(P, o):
        return functional_call(_Wrap(module, dist_fn), {"m." + k: t for k, t in P.items()}, (o,))

    op = functional_fisher_vector_product(fdist, params, obs, damping=0.05)
    v = torch.randn(n_parameters(module), dtype=torch.float64)
    vd = dict(zip(params, unflatten(v, list(params.values()))))
    got = torch.cat([t.reshape(-1) for t in op(vd).values()])
    ref = fisher_vector_product(module, dist_fn, obs, damping=0.05)(v)
    torch.testing.assert_close(got, ref, rtol=FISHER_RTOL, atol=FISHER_ATOL)


def test_functional_path_vmaps_over_stacked_policies():
    # Batched over agents: several policies of the same shape stacked with torch.func.stack_module_state.
    mods = [make_policy("multicategorical", seed=s)[0] for s in range(3)]
    stacked, _ = torch.func.stack_module_state(mods)
    base = mods[0]
    obs = torch.stack([_obs(s) for s in range(3)])

    def fvp_one(P, o, v):
        def fdist(Q, x):
            from trpo_core import MultiCategorical

            return MultiCategorical(functional_call(base, Q, (x,)).view(-1, 2, 3))

        return functional_fisher_vector_product(fdist, P, o)(v)

    vs = {k: torch.randn_like(t) for k, t in stacked.items()}
    batched = torch.func.vmap(fvp_one)(stacked, obs, vs)
    for i, m in enumerate(mods):
        dist_fn = make_policy("multicategorical", seed=i)[1]
        del dist_fn
        from trpo_core import MultiCategorical

        op = fisher_vector_product(m, lambda o, m=m: MultiCategorical(m(o).view(-1, 2, 3)), obs[i])
        v = torch.cat([vs[k][i].reshape(-1) for k, _ in m.named_parameters()])
        got = torch.cat([batched[k][i].reshape(-1) for k, _ in m.named_parameters()])
        torch.testing.assert_close(got, op(v), rtol=FISHER_RTOL, atol=FISHER_ATOL)


def test_rejects_wrong_vector_shape():
    module, dist_fn = make_policy("categorical", seed=0)
    op = fisher_vector_product(module, dist_fn, _obs(0))
    with pytest.raises(ValueError, match="shape"):
        op(torch.zeros(op.dim + 1, dtype=torch.float64))


def test_rejects_unknown_form():
    module, dist_fn = make_policy("categorical", seed=0)
    with pytest.raises(ValueError, match="form"):
        fisher_vector_product(module, dist_fn, _obs(0), form="gauss")
