"""MATRPO's math against independent oracles.

1. The paper's signed exchange (eq. 22: nu_e, z_e^q, y_e^q with C_e^q = +-1) is the edge-form exchange of
   ``consensus_admm.EdgeConsensus`` under z_e^q = C_e^q z_e and lambda_{e,q} = C_e^q y_e^q.
2. The closed-form theta update (eq. 22) equals theta_old + sqrt(2 delta / V^T H^{-1} V) H^{-1} V computed with an
   explicit Jacobian J^{qn} and an explicit Hessian H of the mean KL (torch.autograd.functional) on a tiny network.
3. The weights of (M1) and the Lagrangian of (M5) match the paper's per-edge sums over E(q).
"""

from __future__ import annotations

import dataclasses

import networkx as nx
import numpy as np
import pytest
import torch
from torch.func import functional_call

from consensus_admm import EdgeConsensus, EndpointTerms
from marl.algos.seeding import seed_sequence
from marl.algos.from_config import learner_settings, matrpo_settings, trpo_settings
from marl.algos.matrpo import MATRPOAgent
from trpo_core import MultiCategorical, flat_params, unflatten

from marl_tiny import tiny_config

EXCHANGE_ATOL = 1e-12
CLOSED_FORM_RTOL = 1e-6
DAMPING = 0.01  # the original code's damping; the explicit oracle uses H + DAMPING * I too


def paper_exchange(y_k, y_j, l_k, l_j, c_k, beta):
    """Eq. (22), second and third lines, exactly as written (real log-ratio, as the original code)."""
    nu = 0.5 * (y_k + beta * c_k * l_k) + 0.5 * (y_j + beta * (-c_k) * l_j)
    z_k = (y_k - nu) / beta + c_k * l_k
    z_j = (y_j - nu) / beta + (-c_k) * l_j
    return z_k, z_j, nu, nu


@pytest.mark.parametrize("c_k", [1.0, -1.0])
@pytest.mark.parametrize("beta", [0.5, 1.0, 5.0])
def test_paper_exchange_is_edge_form_exchange(c_k, beta):
    rng = np.random.default_rng(0)
    dim = 7
    ec = EdgeConsensus(nx.path_graph(2), dim, penalty=beta, seed=0)
    # Paper state after some history: y^k = y^j (as after any exchange) plus an arbitrary z; start from generic y.
    y_k, y_j = rng.normal(size=dim), rng.normal(size=dim)
    duals = np.zeros((1, 2, dim))
    duals[0, 0], duals[0, 1] = c_k * y_k, -c_k * y_j  # lambda_{e,q} = C_e^q y_e^q
    ec.reset(duals=duals)
    for _ in range(3):
        l_k, l_j = rng.normal(size=dim), rng.normal(size=dim)
        z_k, z_j, y_k, y_j = paper_exchange(y_k, y_j, l_k, l_j, c_k, beta)
        ec.exchange(0, l_k, l_j)
        np.testing.assert_allclose(ec.z[0] * c_k, z_k, atol=EXCHANGE_ATOL)
        np.testing.assert_allclose(ec.z[0] * -c_k, z_j, atol=EXCHANGE_ATOL)
        np.testing.assert_allclose(ec.duals[0, 0], c_k * y_k, atol=EXCHANGE_ATOL)
        np.testing.assert_allclose(ec.duals[0, 1], -c_k * y_j, atol=EXCHANGE_ATOL)
        # The paper's invariant z^i + z^j = 0 is built into the edge form.
        np.testing.assert_allclose(z_k + z_j, 0.0, atol=EXCHANGE_ATOL)


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _tiny_agent(theta_update: str, n_agents=2, obs_dim=3, n_actions=3, m=60, seed=0, continuous=False):
    """A MATRPO agent prepared on a random batch; ``continuous``: Gaussian heads over ``n_actions``-vectors."""
    cfg = tiny_config(
        "matrpo",
        "hidden_sizes=4",
        f"admm.theta_update={theta_update}",
        "trpo.fvp_subsample_every=1",
        f"trpo.damping={DAMPING}",
        "trpo.cg_max_iter=200",
        "trpo.warm_start_cg=false",
        "trpo.max_kl=0.01",
        "admm.penalty=2.0",
        f"env.continuous_actions={str(continuous).lower()}",
    )
    agent = MATRPOAgent(0, obs_dim, n_agents, n_actions, matrpo_settings(cfg), trpo_settings(cfg),
                        learner_settings(cfg), seed_sequence(seed, 9), run_seed=seed)
    # Solve the CG system to machine precision so the oracle comparison is exact.
    agent.trpo = dataclasses.replace(agent.trpo, cg_residual_tol=1e-28)
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(m, obs_dim, generator=g)
    if continuous:
        actions = torch.rand(m, n_agents, n_actions, generator=g)
    else:
        actions = torch.randint(0, n_actions, (m, n_agents), generator=g)
    adv = torch.randn(m, generator=g)
    # Make the policy non-uniform so that J and H are generic.
    with torch.no_grad():
        for p in agent.private.policy.parameters():
            p.add_((0.3 if continuous else 0.5) * torch.randn(p.shape, generator=g))
    agent.prepare(obs, actions, adv)
    return agent, cfg, obs, actions, adv


def _explicit_jacobian_and_hessian(agent, obs, actions):
    policy = agent.private.policy
    names = [n for n, _ in policy.named_parameters()]
    theta_old = flat_params(policy).detach().clone()
    like = [p.detach() for p in policy.parameters()]

    def logp_heads(theta):
        params = dict(zip(names, unflatten(theta, like)))
        return MultiCategorical(functional_call(policy, params, (obs,))).log_prob_per_head(actions)  # [N, M]

    old = MultiCategorical(policy(obs)).detach()

    def mean_kl(theta):
        params = dict(zip(names, unflatten(theta, like)))
        return old.kl(MultiCategorical(functional_call(policy, params, (obs,)))).mean()

    jac = torch.autograd.functional.jacobian(logp_heads, theta_old)  # [N, M, P]
    hess = torch.autograd.functional.hessian(mean_kl, theta_old)  # [P, P]
    return theta_old, jac, hess


def test_closed_form_update_matches_explicit_eq22(float64):
    agent, cfg, obs, actions, adv = _tiny_agent("closed_form")
    n, m = 2, obs.shape[0]
    rng = np.random.default_rng(1)
    z_sum = rng.normal(scale=0.1, size=n * m)
    dual_sum = rng.normal(scale=0.1, size=n * m)
    theta_old, jac, hess = _explicit_jacobian_and_hessian(agent, obs, actions)
    beta = cfg.admm_penalty
    # V = (1/M) sum_n J^{qn T} (A - sum C y + beta sum C z), in edge-form variables (module docstring (M1)-(M2)).
    w = adv[None, :] - torch.from_numpy(dual_sum).view(n, m) + beta * torch.from_numpy(z_sum).view(n, m)
    v = torch.einsum("nmp,nm->p", jac, w) / m
    h_damped = hess + DAMPING * torch.eye(hess.shape[0])
    h_inv_v = torch.linalg.solve(h_damped, v)
    expected = theta_old + torch.sqrt(2 * cfg.max_kl / (v @ h_inv_v)) * h_inv_v

    x, info = agent.local_update(EndpointTerms(z_sum, dual_sum, 2, cfg.admm_penalty))
    assert info.accepted
    got = flat_params(agent.private.policy)
    torch.testing.assert_close(got, expected, rtol=CLOSED_FORM_RTOL, atol=1e-7)
    # The step sits on the (damped) KL model's boundary: 1/2 dtheta^T H dtheta = max_kl.
    d = got - theta_old
    assert float(0.5 * d @ h_damped @ d) == pytest.approx(cfg.max_kl, rel=1e-6)
    # What is sent is the true per-head log-ratio at the new theta.
    names = [k for k, _ in agent.private.policy.named_parameters()]
    new_lp = MultiCategorical(agent.private.policy(obs)).log_prob_per_head(actions)
    old_lp = MultiCategorical(functional_call(agent.private.policy, dict(zip(names, unflatten(
        theta_old, list(agent.private.policy.parameters())))), (obs,))).log_prob_per_head(actions)
    np.testing.assert_allclose(x, (new_lp - old_lp).detach().numpy().reshape(-1), atol=1e-10)


def test_linearized_exchange_is_jacobian_times_step(float64):
    agent, cfg, obs, actions, adv = _tiny_agent("closed_form")
    agent.matrpo = dataclasses.replace(agent.matrpo, exchange="linearized")
    n, m = 2, obs.shape[0]
    theta_old, jac, _ = _explicit_jacobian_and_hessian(agent, obs, actions)
    x, info = agent.local_update(EndpointTerms(np.zeros(n * m), np.zeros(n * m), 2, cfg.admm_penalty))
    d = flat_params(agent.private.policy) - theta_old
    np.testing.assert_allclose(x, torch.einsum("nmp,p->nm", jac, d).reshape(-1).numpy(), rtol=1e-8, atol=1e-10)


def test_linesearch_lagrangian_matches_per_edge_sum(float64):
    """(M5) with sums over E(q) equals the paper's per-edge Lagrangian up to a theta-independent constant."""
    agent, cfg, obs, actions, adv = _tiny_agent("linesearch")
    n, m = 2, obs.shape[0]
    rng = np.random.default_rng(2)
    beta = cfg.admm_penalty
    z_edges = rng.normal(scale=0.1, size=(3, n * m))  # three incident edges
    lam_edges = rng.normal(scale=0.1, size=(3, n * m))
    theta_old = flat_params(agent.private.policy).detach().clone()
    captured = {}
    import marl.algos.matrpo as mod

    real_search = mod.backtracking_line_search

    def spy(old, step, *, kl_fn, loss_fn, **kw):
        captured["loss_fn"] = loss_fn
        return real_search(old, step, kl_fn=kl_fn, loss_fn=loss_fn, **kw)

    mod.backtracking_line_search = spy
    try:
        agent.local_update(EndpointTerms(z_edges.sum(0), lam_edges.sum(0), 3, beta))
    finally:
        mod.backtracking_line_search = real_search
    names = [k for k, _ in agent.private.policy.named_parameters()]
    like = list(agent.private.policy.parameters())

    def per_edge(theta):
        params = dict(zip(names, unflatten(theta, like)))
        lp = MultiCategorical(functional_call(agent.private.policy, params, (obs,))).log_prob_per_head(actions)
        params0 = dict(zip(names, unflatten(theta_old, like)))
        lp0 = MultiCategorical(functional_call(agent.private.policy, params0, (obs,))).log_prob_per_head(actions)
        ell = (lp - lp0).reshape(-1).detach().numpy()
        surrogate = float((torch.exp((lp - lp0).sum(0)) * adv).mean())
        pen = sum(lam_edges[e] @ (ell - z_edges[e]) + beta / 2 * np.sum((ell - z_edges[e]) ** 2) for e in range(3))
        return -surrogate + pen / m

    g = torch.Generator().manual_seed(3)
    thetas = [theta_old + 0.05 * torch.randn(theta_old.shape, generator=g) for _ in range(3)]
    diffs = [captured["loss_fn"](t) - per_edge(t) for t in thetas]
    assert np.ptp(diffs) < 1e-10


# -- continuous actions: Gaussian heads (MultiDiagGaussian), against the explicit Gaussian formulas ----------------
def _gaussian_logp_heads(out, actions):
    """log N(a^n; mu_n, diag sigma_n^2) per head, written out: [N, M] from the policy output [M, N, 2, D]."""
    mean, log_std = out[..., 0, :], out[..., 1, :]
    z = (actions - mean) / torch.exp(log_std)
    return (-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi)).sum(-1).t()


def _gaussian_kl(old_out, out):
    """KL(N_old || N) summed over heads and dimensions, per sample, written out."""
    m0, s0, m1, s1 = old_out[..., 0, :], old_out[..., 1, :], out[..., 0, :], out[..., 1, :]
    return (s1 - s0 + (torch.exp(2 * s0) + (m0 - m1) ** 2) / (2 * torch.exp(2 * s1)) - 0.5).sum((-1, -2))


def _explicit_gaussian_jacobian_and_hessian(agent, obs, actions):
    policy = agent.private.policy
    names = [n for n, _ in policy.named_parameters()]
    like = [p.detach() for p in policy.parameters()]
    theta_old = flat_params(policy).detach().clone()

    def out_at(theta):
        return functional_call(policy, dict(zip(names, unflatten(theta, like))), (obs,))

    old_out = out_at(theta_old).detach()
    jac = torch.autograd.functional.jacobian(lambda th: _gaussian_logp_heads(out_at(th), actions), theta_old)
    hess = torch.autograd.functional.hessian(lambda th: _gaussian_kl(old_out, out_at(th)).mean(), theta_old)
    return theta_old, jac, hess, out_at


def test_gaussian_closed_form_update_matches_explicit_eq22(float64):
    agent, cfg, obs, actions, adv = _tiny_agent("closed_form", n_actions=2, continuous=True)
    n, m = 2, obs.shape[0]
    rng = np.random.default_rng(1)
    z_sum, dual_sum = rng.normal(scale=0.1, size=n * m), rng.normal(scale=0.1, size=n * m)
    theta_old, jac, hess, out_at = _explicit_gaussian_jacobian_and_hessian(agent, obs, actions)
    beta = cfg.admm_penalty
    w = adv[None, :] - torch.from_numpy(dual_sum).view(n, m) + beta * torch.from_numpy(z_sum).view(n, m)
    v = torch.einsum("nmp,nm->p", jac, w) / m  # (M2) with the explicit Jacobian of the Gaussian log-densities
    h_damped = hess + DAMPING * torch.eye(hess.shape[0])
    h_inv_v = torch.linalg.solve(h_damped, v)
    expected = theta_old + torch.sqrt(2 * cfg.max_kl / (v @ h_inv_v)) * h_inv_v

    x, info = agent.local_update(EndpointTerms(z_sum, dual_sum, 2, beta))
    assert info.accepted
    got = flat_params(agent.private.policy)
    torch.testing.assert_close(got, expected, rtol=CLOSED_FORM_RTOL, atol=1e-7)
    d = got - theta_old
    assert float(0.5 * d @ h_damped @ d) == pytest.approx(cfg.max_kl, rel=1e-6)
    ratio = _gaussian_logp_heads(out_at(got), actions) - _gaussian_logp_heads(out_at(theta_old), actions)
    np.testing.assert_allclose(x, ratio.detach().numpy().reshape(-1), atol=1e-10)


def test_gaussian_linearized_exchange_is_jacobian_times_step(float64):
    agent, cfg, obs, actions, adv = _tiny_agent("closed_form", n_actions=2, continuous=True)
    agent.matrpo = dataclasses.replace(agent.matrpo, exchange="linearized")
    n, m = 2, obs.shape[0]
    theta_old, jac, _, _ = _explicit_gaussian_jacobian_and_hessian(agent, obs, actions)
    x, info = agent.local_update(EndpointTerms(np.zeros(n * m), np.zeros(n * m), 2, cfg.admm_penalty))
    d = flat_params(agent.private.policy) - theta_old
    np.testing.assert_allclose(x, torch.einsum("nmp,p->nm", jac, d).reshape(-1).numpy(), rtol=1e-8, atol=1e-10)
