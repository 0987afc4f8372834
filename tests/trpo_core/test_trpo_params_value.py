"""Flat parameter helpers and the value-function regression helper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trpo_core import (
    ValueFitSettings,
    ValueFitter,
    flat_grad,
    flat_params,
    n_parameters,
    set_flat_params,
    trainable_parameters,
    unflatten,
)


def _net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    net[0].bias.requires_grad_(False)  # frozen parameters are not part of theta
    return net


def test_flat_roundtrip_and_order():
    net = _net()
    tensors = trainable_parameters(net)
    assert [t.shape for t in tensors] == [(4, 3), (2, 4), (2,)]
    theta = flat_params(net)
    assert theta.shape == (n_parameters(net),) == (22,)
    torch.testing.assert_close(theta[:12], net[0].weight.detach().reshape(-1))
    new = torch.arange(22, dtype=theta.dtype)
    set_flat_params(net, new)
    torch.testing.assert_close(flat_params(net), new)
    for view, t in zip(unflatten(new, tensors), tensors):
        torch.testing.assert_close(view, t.detach())


def test_flat_params_does_not_alias():
    net = _net()
    theta = flat_params(net)
    with torch.no_grad():
        net[2].bias.add_(1.0)
    assert not torch.equal(theta, flat_params(net))


def test_set_flat_params_restores_bit_for_bit():
    net = _net()
    theta = flat_params(net)
    set_flat_params(net, theta + 0.1)
    set_flat_params(net, theta)
    assert torch.equal(flat_params(net).view(torch.int32), theta.view(torch.int32))


def test_unflatten_returns_views():
    flat = torch.zeros(5)
    a, b = unflatten(flat, [torch.zeros(2), torch.zeros(3)])
    a[0] = 1.0
    assert flat[0] == 1.0


def test_flat_grad_has_zeros_for_unused_parameters():
    net = _net()
    extra = nn.Parameter(torch.ones(3))
    g = flat_grad(net(torch.ones(1, 3)).sum(), list(trainable_parameters(net)) + [extra])
    assert g.shape == (25,) and torch.all(g[-3:] == 0)


def test_set_flat_params_rejects_wrong_length():
    with pytest.raises(ValueError, match="shape"):
        set_flat_params(_net(), torch.zeros(3))


def test_value_fitter_reduces_error_and_keeps_adam_state():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
    x = torch.randn(256, 2)
    y = torch.sin(x[:, 0]) + x[:, 1] ** 2
    fitter = ValueFitter(net, ValueFitSettings(lr=1e-2, epochs=3, minibatch_size=64), seed=0)
    first = fitter.fit(x, y)
    assert first.n_updates == 3 * 4
    assert first.loss_after < first.loss_before
    second = fitter.fit(x, y)
    assert second.loss_after < first.loss_before
    # Adam's step counter continues across calls: the optimizer state persists.
    state = fitter.optimizer.state[next(net.parameters())]
    assert int(state["step"]) == 24


def test_value_fitter_same_seed_same_result():
    def run():
        torch.manual_seed(2)
        net = nn.Linear(2, 1)
        x = torch.randn(100, 2)
        ValueFitter(net, ValueFitSettings(lr=1e-2, epochs=2, minibatch_size=32), seed=7).fit(x, x.sum(1))
        return flat_params(net)

    assert torch.equal(run(), run())
