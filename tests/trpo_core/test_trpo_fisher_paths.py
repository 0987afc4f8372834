"""The fast FVP's hand-written MLP path and its autograd fallback: each module below must take the expected path and
give the same F v as the exact double-backward form (which equals the explicit Fisher, see test_trpo_fisher.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import FISHER_ATOL, FISHER_RTOL
from torch import nn

from trpo_core import Categorical, DiagGaussian, MultiCategorical, fisher_vector_product

D = torch.float64


class MultiHead(nn.Module):
    """MATRPO's policy shape: SELU trunk, one linear layer for all heads, view in forward."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(3, 6), nn.SELU(), nn.Linear(6, 6), nn.SELU())
        self.heads = nn.Linear(6, 3 * 4)

    def forward(self, o):
        return self.heads(self.trunk(o)).view(o.shape[0], 3, 4)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 5), nn.Linear(5, 5)
        self.out = nn.Linear(5, 4)

    def forward(self, o):
        h = torch.tanh(self.a(o))
        return self.out(h + torch.tanh(self.b(h)))


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, o):
        return self.a(torch.tanh(self.a(o)))


class FrozenFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4))
        self.net[0].weight.requires_grad_(False)

    def forward(self, o):
        return self.net(o)


class GaussianTanh(nn.Module):
    def __init__(self):
        super().__init__()
        self.mean = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
        self.log_std = nn.Parameter(torch.tensor([0.2, -0.3]))

    def forward(self, o):
        return self.mean(o)


class InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 5), nn.Linear(5, 4)

    def forward(self, o):
        h = self.a(o)
        h.tanh_()  # invisible to module hooks: the layer chain alone would miss it
        return self.b(h)


def _case(name):
    torch.manual_seed(0)
    if name == "multihead_selu":
        m = MultiHead().to(D)
        return m, (lambda o: MultiCategorical(m(o))), 3, "mlp"
    if name == "sequential_identity_gelu":
        m = nn.Sequential(nn.Linear(3, 5), nn.GELU(), nn.Identity(), nn.Linear(5, 4)).to(D)
        return m, (lambda o: Categorical(m(o))), 3, "mlp"
    if name == "head_slicing_in_dist_fn":
        m = nn.Sequential(nn.Linear(3, 5), nn.ELU(), nn.Linear(5, 12)).to(D)
        return m, (lambda o: MultiCategorical(m(o).view(-1, 3, 4)[:, [0, 2]])), 3, "mlp"
    if name == "gaussian_log_std_parameter":
        m = GaussianTanh().to(D)
        return m, (lambda o: DiagGaussian(m(o), m.log_std)), 3, "mlp"
    if name == "frozen_first_layer":
        m = FrozenFirst().to(D)
        return m, (lambda o: Categorical(m(o))), 3, "mlp"
    if name == "residual_falls_back":
        m = Residual().to(D)
        return m, (lambda o: Categorical(m(o))), 3, "autograd"
    if name == "shared_layer_falls_back":
        m = Shared().to(D)
        return m, (lambda o: Categorical(m(o))), 4, "autograd"
    if name == "custom_elementwise_activation":
        m = nn.Sequential(nn.Linear(3, 5), _Softsign(), nn.Linear(5, 4)).to(D)
        return m, (lambda o: Categorical(m(o))), 3, "mlp"
    if name == "layernorm_falls_back":
        m = nn.Sequential(nn.Linear(3, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 4)).to(D)
        return m, (lambda o: Categorical(m(o))), 3, "autograd"
    if name == "inplace_edit_falls_back":
        m = InPlace().to(D)
        return m, (lambda o: Categorical(m(o))), 3, "autograd"
    if name == "inplace_relu_module_falls_back":
        m = nn.Sequential(nn.Linear(3, 5), nn.ReLU(inplace=True), nn.Linear(5, 4)).to(D)
        return m, (lambda o: Categorical(m(o))), 3, "autograd"
    if name == "tail_uses_chain_parameter_falls_back":
        m = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4)).to(D)
        return m, (lambda o: Categorical(m(o) + m[0].weight.sum())), 3, "autograd"
    raise ValueError(name)


class _Softsign(nn.Module):
    """A user-defined activation that opts into the fast path with ``elementwise = True``."""

    elementwise = True

    def forward(self, x):
        return x / (1 + x.abs())


CASES = [
    "multihead_selu",
    "sequential_identity_gelu",
    "head_slicing_in_dist_fn",
    "gaussian_log_std_parameter",
    "frozen_first_layer",
    "custom_elementwise_activation",
    "residual_falls_back",
    "shared_layer_falls_back",
    "layernorm_falls_back",
    "inplace_edit_falls_back",
    "inplace_relu_module_falls_back",
    "tail_uses_chain_parameter_falls_back",
]


@pytest.mark.parametrize("name", CASES)
def test_fast_path_choice_and_agreement_with_exact(name):
    module, dist_fn, in_dim, expected_path = _case(name)
    obs = torch.randn(9, in_dim, generator=torch.Generator().manual_seed(1), dtype=D)
    fast = fisher_vector_product(module, dist_fn, obs, form="fast")
    exact = fisher_vector_product(module, dist_fn, obs, form="exact")
    assert fast.path == expected_path
    eye = torch.eye(fast.dim, dtype=D)
    F_fast = torch.stack([fast(eye[i]) for i in range(fast.dim)], 1)
    F_exact = torch.stack([exact(eye[i]) for i in range(exact.dim)], 1)
    torch.testing.assert_close(F_fast, F_exact, rtol=FISHER_RTOL, atol=FISHER_ATOL)
    torch.testing.assert_close(F_fast, F_fast.T, rtol=FISHER_RTOL, atol=FISHER_ATOL)


def test_hooks_are_removed_after_building():
    module, dist_fn, in_dim, _ = _case("multihead_selu")
    fisher_vector_product(module, dist_fn, torch.randn(4, in_dim, dtype=D))
    assert all(not m._forward_hooks for m in module.modules())


@pytest.mark.parametrize("name", CASES)
def test_vjp_matches_autograd_on_every_path(name):
    """FisherVectorProduct.vjp(w) = d/dtheta sum(w * z(theta)) for cotangents w on the distribution parameters."""
    module, dist_fn, in_dim, _ = _case(name)
    gen = torch.Generator().manual_seed(2)
    obs = torch.randn(9, in_dim, generator=gen, dtype=D)
    params = [p for p in module.parameters() if p.requires_grad]
    z = dist_fn(obs).params
    w = tuple(torch.randn(t.shape, generator=gen, dtype=D) for t in z)
    used = [(t, c) for t, c in zip(z, w) if t.requires_grad]
    expected = torch.autograd.grad([t for t, _ in used], params, [c for _, c in used], allow_unused=True,
                                   materialize_grads=True)
    expected = torch.cat([g.reshape(-1) for g in expected])
    for form in ("fast", "exact"):
        op = fisher_vector_product(module, dist_fn, obs, form=form)
        torch.testing.assert_close(op.vjp(w), expected, rtol=1e-10, atol=1e-12)
        # the operator's recorded forward is pi_old on these inputs, detached
        for got, ref in zip(op.distribution.params, z):
            assert not got.requires_grad
            torch.testing.assert_close(got, ref.detach(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="cotangents"):
        op.vjp(w + w)
