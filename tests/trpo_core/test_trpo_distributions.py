"""Distributions: exact KL and entropy against torch.distributions, per-head log-probs, output-space Fisher."""

from __future__ import annotations

import pytest
import torch
import torch.distributions as td

from trpo_core import Categorical, DiagGaussian, MultiCategorical, MultiDiagGaussian, kl_divergence


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_categorical_matches_torch():
    g = _gen(0)
    a, b = torch.randn(7, 4, generator=g, dtype=torch.float64), torch.randn(7, 4, generator=g, dtype=torch.float64)
    p, q = Categorical(a), Categorical(b)
    tp, tq = td.Categorical(logits=a), td.Categorical(logits=b)
    acts = torch.randint(0, 4, (7,), generator=g)
    torch.testing.assert_close(p.log_prob(acts), tp.log_prob(acts))
    torch.testing.assert_close(p.entropy(), tp.entropy())
    torch.testing.assert_close(kl_divergence(p, q), td.kl_divergence(tp, tq))
    assert torch.equal(p.mode(), a.argmax(-1))


def test_multicategorical_per_head_shape_and_sums():
    g = _gen(1)
    logits = torch.randn(9, 3, 5, generator=g, dtype=torch.float64)
    other = torch.randn(9, 3, 5, generator=g, dtype=torch.float64)
    d, e = MultiCategorical(logits), MultiCategorical(other)
    acts = d.sample(generator=g)
    assert acts.shape == (9, 3)
    per_head = d.log_prob_per_head(acts)
    assert per_head.shape == (3, 9)
    torch.testing.assert_close(per_head.sum(0), d.log_prob(acts))
    heads = [td.Categorical(logits=logits[:, n]) for n in range(3)]
    for n in range(3):
        torch.testing.assert_close(per_head[n], heads[n].log_prob(acts[:, n]))
    torch.testing.assert_close(d.entropy(), sum(h.entropy() for h in heads))
    ref_kl = sum(td.kl_divergence(heads[n], td.Categorical(logits=other[:, n])) for n in range(3))
    torch.testing.assert_close(d.kl(e), ref_kl)


def test_diag_gaussian_matches_torch():
    g = _gen(2)
    mu1, mu2 = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)
    s1, s2 = 0.5 * torch.randn(3, generator=g, dtype=torch.float64), 0.5 * torch.randn(6, 3, generator=g,
                                                                                        dtype=torch.float64)
    p, q = DiagGaussian(mu1, s1), DiagGaussian(mu2, s2)
    tp = td.Independent(td.Normal(mu1, s1.exp().expand_as(mu1)), 1)
    tq = td.Independent(td.Normal(mu2, s2.exp()), 1)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(p.log_prob(x), tp.log_prob(x))
    torch.testing.assert_close(p.entropy(), tp.entropy())
    torch.testing.assert_close(p.kl(q), td.kl_divergence(tp, tq))
    assert p.params[1].shape == (6, 3)


def test_multi_diag_gaussian_heads_match_torch_per_head_and_sum():
    """Per head: torch's Independent Normal over the action dims; joint log-prob, entropy, KL: sums over heads."""
    g = _gen(5)
    mean, mean2 = (torch.randn(6, 3, 2, generator=g, dtype=torch.float64) for _ in range(2))
    log_std, log_std2 = (0.3 * torch.randn(3, 2, generator=g, dtype=torch.float64) for _ in range(2))
    a = torch.randn(6, 3, 2, generator=g, dtype=torch.float64)
    p, q = MultiDiagGaussian(mean, log_std), MultiDiagGaussian(mean2, log_std2)
    tp = td.Independent(td.Normal(mean, log_std.exp()), 1)
    tq = td.Independent(td.Normal(mean2, log_std2.exp()), 1)
    torch.testing.assert_close(p.log_prob_per_head(a), tp.log_prob(a).t())
    torch.testing.assert_close(p.log_prob(a), tp.log_prob(a).sum(-1))
    torch.testing.assert_close(p.entropy(), tp.entropy().sum(-1))
    torch.testing.assert_close(p.kl(q), td.kl_divergence(tp, tq).sum(-1))
    assert p.n_heads == 3 and type(p.detach()) is MultiDiagGaussian
    with pytest.raises(TypeError):
        p.kl(DiagGaussian(mean2, log_std2))


@pytest.mark.parametrize("make", [
    lambda z: Categorical(z[0]),
    lambda z: MultiCategorical(z[0].view(2, 3)),
    lambda z: DiagGaussian(z[0][:3], z[0][3:]),
])
def test_output_space_fisher_is_the_kl_hessian(make):
    # fisher_vp(u) = Hessian of z' -> KL(pi_z || pi_z') at z' = z, applied to u (eqs. D2, D5).
    z = torch.randn(6, generator=_gen(3), dtype=torch.float64)
    old = make((z,))

    def kl(zp):
        return old.kl(make((zp,)))

    H = torch.autograd.functional.hessian(kl, z)
    u = torch.randn(6, generator=_gen(4), dtype=torch.float64)
    params = make((u,)).params  # split u the way the distribution splits z
    fu = torch.cat([t.reshape(-1) for t in old.fisher_vp(params)])
    torch.testing.assert_close(fu, H @ u)


def test_kl_of_a_distribution_with_itself_is_zero_and_kl_is_nonnegative():
    g = _gen(5)
    for d, e in [
        (Categorical(torch.randn(5, 4, generator=g)), Categorical(torch.randn(5, 4, generator=g))),
        (DiagGaussian(torch.randn(5, 2, generator=g), torch.zeros(2)),
         DiagGaussian(torch.randn(5, 2, generator=g), torch.ones(2))),
    ]:
        torch.testing.assert_close(d.kl(d), torch.zeros(5))
        assert torch.all(d.kl(e) >= 0)


def test_mismatched_kl_raises():
    with pytest.raises(TypeError):
        Categorical(torch.zeros(3)).kl(DiagGaussian(torch.zeros(3), torch.zeros(3)))


def test_gumbel_max_samples_the_categorical_and_follows_its_noise():
    """Gumbel-max on uniform noise draws from softmax(z) (frequencies within 4 sigma over 200k draws); the same noise
    on the same logits gives the same action, and noise of the wrong shape is refused."""
    g = _gen(3)
    logits = torch.tensor([1.5, -0.5, 0.0, 0.7, -2.0])
    n = 200_000
    d = Categorical(logits.expand(n, 5))
    u = torch.rand(n, 5, generator=g)
    actions = d.sample_gumbel(u)
    freq = torch.bincount(actions, minlength=5).double() / n
    p = torch.softmax(logits.double(), -1)
    assert torch.all((freq - p).abs() <= 4 * torch.sqrt(p * (1 - p) / n))
    assert torch.equal(Categorical(logits.expand(n, 5).clone()).sample_gumbel(u), actions)
    # A zero uniform is clamped (finite arithmetic), and never picks its action over a positive-noise one.
    zero = torch.zeros(1, 5)
    zero[0, 1] = 0.5
    assert int(Categorical(torch.zeros(1, 5)).sample_gumbel(zero)) == 1
    with pytest.raises(ValueError, match="uniform must have the logits' shape"):
        d.sample_gumbel(torch.rand(n, 4, generator=g))
