"""``fit_stacked``: K independent value regressions as one stacked computation.

Oracles: the member-by-member ``ValueFitter.fit`` loop (same generators, same Adam state), and independence, bit for
bit: member k's result must not change when another member's data change.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from trpo_core import ValueFitSettings, ValueFitter, fit_stacked, flat_params

SETTINGS = ValueFitSettings(lr=1e-2, epochs=2, minibatch_size=32)


class Residual(nn.Module):
    """Not a Linear/activation chain: exercises the vmap path."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 8)
        self.b = nn.Linear(8, 3)
        self.out = nn.Linear(3, 1)

    def forward(self, x):
        return self.out(x + self.b(torch.tanh(self.a(x)))).squeeze(-1)


def _members(make, k=3, seed=0):
    torch.manual_seed(seed)
    nets = [make() for _ in range(k)]
    xs = [torch.randn(100, 3) for _ in range(k)]
    ys = [torch.sin(x).sum(1) + 0.1 * i for i, x in enumerate(xs)]
    return nets, xs, ys


def _fitters(nets):
    return [ValueFitter(copy.deepcopy(n), SETTINGS, seed=10 + i) for i, n in enumerate(nets)]


@pytest.mark.parametrize("make", ["chain", "vmap"])
def test_stacked_equals_member_by_member_fits(make):
    nets, xs, ys = _members(_plain_chain if make == "chain" else Residual)
    loop, stacked = _fitters(nets), _fitters(nets)
    for _ in range(2):  # the second call starts from stacked Adam moments
        expected = [f.fit(x, y) for f, x, y in zip(loop, xs, ys)]
        got = fit_stacked(stacked, xs, ys)
        for e, g in zip(expected, got):
            assert g.n_updates == e.n_updates == 2 * 4
            assert g.loss_before == pytest.approx(e.loss_before, rel=1e-5)
            assert g.loss_after == pytest.approx(e.loss_after, rel=1e-5)
    for a, b in zip(loop, stacked):
        torch.testing.assert_close(flat_params(b.module), flat_params(a.module), rtol=1e-5, atol=1e-6)
        for p, q in zip(a.module.parameters(), b.module.parameters()):
            sa, sb = a.optimizer.state[p], b.optimizer.state[q]
            assert float(sa["step"]) == float(sb["step"]) == 16
            torch.testing.assert_close(sb["exp_avg_sq"], sa["exp_avg_sq"], rtol=1e-4, atol=1e-10)


def _plain_chain():
    return nn.Sequential(nn.Linear(3, 16), nn.SELU(), nn.Linear(16, 16), nn.SELU(), nn.Linear(16, 1))


@pytest.mark.parametrize("make", [_plain_chain, Residual], ids=["chain", "vmap"])
def test_member_result_does_not_depend_on_other_members_data(make):
    nets, xs, ys = _members(make)
    base = _fitters(nets)
    fit_stacked(base, xs, ys)
    xs2 = [xs[0], xs[1] * 3.0 + 1.0, xs[2]]
    ys2 = [ys[0], -5.0 * ys[1], ys[2]]
    changed = _fitters(nets)
    fit_stacked(changed, xs2, ys2)
    assert torch.equal(flat_params(changed[0].module), flat_params(base[0].module))
    assert torch.equal(flat_params(changed[2].module), flat_params(base[2].module))
    assert not torch.equal(flat_params(changed[1].module), flat_params(base[1].module))


def test_unlike_members_fall_back_to_the_loop():
    torch.manual_seed(3)
    nets = [_plain_chain(), Residual()]
    xs = [torch.randn(64, 3) for _ in nets]
    ys = [x.sum(1) for x in xs]
    loop, stacked = _fitters(nets), _fitters(nets)
    [f.fit(x, y) for f, x, y in zip(loop, xs, ys)]
    fit_stacked(stacked, xs, ys)
    for a, b in zip(loop, stacked):
        assert torch.equal(flat_params(a.module), flat_params(b.module))


def test_length_mismatch_is_named():
    nets, xs, ys = _members(_plain_chain)
    with pytest.raises(ValueError, match="fitters, inputs and targets"):
        fit_stacked(_fitters(nets), xs[:2], ys)


def test_chain_detection_takes_the_fast_path_only_for_chains():
    from trpo_core.value import _linear_chain

    x = torch.randn(5, 3)
    assert [layer[0] for layer in _linear_chain(_plain_chain(), (x,))] == ["linear", "act", "linear", "act", "linear"]
    assert _linear_chain(Residual(), (x,)) is None


def test_two_roles_are_stacked_in_two_groups_and_keep_their_order(monkeypatch):
    """Members with different input sizes (e.g. hunters and banks) form separate stacks; results stay in order."""
    import trpo_core.value as value

    sizes = []
    group = value._fit_group
    monkeypatch.setattr(value, "_fit_group", lambda f, a, y: sizes.append(len(f)) or group(f, a, y))
    torch.manual_seed(4)
    dims = [3, 4, 3, 4, 3]
    nets = [nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, 1)) for d in dims]
    xs = [torch.randn(96, d) for d in dims]
    ys = [x.sum(1) * (i + 1) for i, x in enumerate(xs)]
    loop, stacked = _fitters(nets), _fitters(nets)
    expected = [f.fit(x, y) for f, x, y in zip(loop, xs, ys)]
    got = fit_stacked(stacked, xs, ys)
    assert sorted(sizes) == [2, 3]
    for e, g, a, b in zip(expected, got, loop, stacked):
        assert g.loss_after == pytest.approx(e.loss_after, rel=1e-5)
        torch.testing.assert_close(flat_params(b.module), flat_params(a.module), rtol=1e-5, atol=1e-6)
