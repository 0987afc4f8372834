"""PolicyEvaluator.kl_within: exact KL below the limit, a certified lower bound above it."""

import torch
from hypothesis import given, strategies as st

from marl.algos.evaluator import PolicyEvaluator
from marl.networks import MultiHeadPolicy
from trpo_core import MultiCategorical, flat_params


@given(st.integers(0, 2**31 - 1), st.floats(1e-3, 3.0), st.floats(1e-4, 0.1), st.integers(1, 60))
def test_kl_within_is_exact_below_the_limit_and_a_lower_bound_above(seed, scale, limit, chunk):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    policy = MultiHeadPolicy(5, 3, 4, hidden_sizes=(8, 8)).double()
    obs = torch.randn(97, 5, generator=gen, dtype=torch.float64)
    theta_old = flat_params(policy).clone()
    old_logits = policy(obs).detach()
    theta = theta_old + scale * 0.1 * torch.randn(theta_old.shape, generator=gen, dtype=torch.float64)
    evaluator = PolicyEvaluator(policy, obs, chunk_size=chunk)
    got = evaluator.kl_within(theta, old_logits, limit)
    full = float(MultiCategorical(old_logits).kl(evaluator.dist(theta + 0.0)).mean())
    if full <= limit:
        assert abs(got - full) <= 1e-12 * max(1.0, full)
        # the complete pass is cached: the line search's objective reuses this forward pass
        assert evaluator.dist(theta) is evaluator._last[1]
    else:
        assert limit < got <= full + 1e-12


def test_samples_are_env_major_so_every_fifth_sample_spans_every_env():
    from marl.algos.batch import samples

    t, b = 20, 10
    x = torch.arange(t)[:, None] + 100 * torch.arange(b)[None, :]  # x[t, env] = 100 env + t
    flat = samples(x.unsqueeze(-1)).squeeze(-1)
    assert flat.tolist() == sorted(x.reshape(-1).tolist())  # m = env * T + t
    sub = flat[::5]
    assert set((sub // 100).tolist()) == set(range(b))  # the Fisher subsample sees all environments
    assert set((sub % 100).tolist()) == {0, 5, 10, 15}
