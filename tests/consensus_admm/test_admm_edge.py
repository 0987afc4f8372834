"""EdgeConsensus driven step by step: dual invariant, reproduction of solve(method="async"), counters, errors."""

from __future__ import annotations


import networkx as nx
import numpy as np
import pytest

from consensus_admm import ADMMSettings, EdgeConsensus, solve
from consensus_admm.testing import build_problem


def drive(ec: EdgeConsensus, objs, n_ticks: int, x=None):
    """Drive ``ec`` with exact prox local updates x_q = prox_{f_q/(rho d_q)}(v_q) (edge-form (A1))."""
    x = np.zeros((ec.n_agents, ec.dim)) if x is None else x
    for _ in range(n_ticks):
        e = ec.next_edge()
        for q in ec.edges[e]:
            d = ec.degree[q]
            x[q] = objs[q].prox(ec.local_argument(q), 1.0 / (ec.penalty * d), x[q])
        out = ec.exchange(e, x[ec.edges[e, 0]], x[ec.edges[e, 1]])
        yield e, out, x


@pytest.mark.parametrize("drop_prob", [0.0, 0.3])
@pytest.mark.parametrize("dual_init", [0.0, 1.0])
def test_dual_invariant_holds_after_every_exchange(drop_prob, dual_init):
    prob = build_problem("averaging", 6, 3, seed=1)
    objs = prob.objectives
    g = nx.cycle_graph(6)
    g.add_edge(0, 3)
    ec = EdgeConsensus(g, 3, penalty=2.0, drop_prob=drop_prob, dual_init=dual_init, seed=4)
    touched = np.zeros(ec.n_edges, bool)
    n_lost = 0
    for e, out, _ in drive(ec, objs, 300):
        touched[e] |= out.delivered
        n_lost += not out.delivered
        sums = ec.dual_sums()
        np.testing.assert_allclose(sums[touched], 0.0, atol=1e-12)
        np.testing.assert_array_equal(sums[~touched], 2 * dual_init)  # untouched edges keep their init
    assert (n_lost > 0) == (drop_prob > 0)


@pytest.mark.parametrize("schedule,drop_prob,alpha", [("random", 0.0, 1.0), ("random", 0.3, 1.0),
                                                      ("cyclic", 0.2, 1.5)])
def test_driving_with_exact_prox_reproduces_solve_async(schedule, drop_prob, alpha):
    prob = build_problem("least_squares", 7, 3, seed=3)
    objs = prob.objectives
    g = nx.cycle_graph(7)
    g.add_edges_from([(0, 3), (2, 5)])
    rho, n_iter = 1.7, 40
    settings = ADMMSettings(method="async", penalty=rho, schedule=schedule, drop_prob=drop_prob, alpha=alpha,
                            eps_abs=0.0, eps_rel=0.0, max_iter=n_iter, record_schedule=True)
    res = solve(objs, g, settings, seed=11)
    ec = EdgeConsensus(g, 3, penalty=rho, schedule=schedule, drop_prob=drop_prob, seed=11, alpha=alpha)
    *_, (_, _, x) = drive(ec, objs, n_iter * ec.n_edges)
    np.testing.assert_array_equal(np.array(ec.schedule_history), res.schedule)
    np.testing.assert_allclose(x, res.x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ec.z, res.edge_z, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ec.duals, res.edge_duals, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(ec.messages_sent, res.messages_per_node)
    np.testing.assert_array_equal(ec.floats_sent, res.floats_per_node)


def test_converges_to_the_consensus_solution_and_counts_messages():
    prob = build_problem("least_squares", 5, 2, seed=0)
    objs, xs = prob.objectives, prob.solution
    ec = EdgeConsensus(nx.cycle_graph(["a", "b", "c", "d", "e"]), 2, penalty=5.0, seed=0)
    assert ec.nodes == ["a", "b", "c", "d", "e"]
    *_, (_, out, x) = drive(ec, objs, 3000)
    np.testing.assert_allclose(x, np.broadcast_to(xs, x.shape), atol=1e-6)
    assert ec.primal_residual(x) < 1e-6
    assert ec.messages_sent.sum() == 2 * 3000 and ec.edge_activations.sum() == 3000
    assert ec.floats_sent.sum() == 2 * 3000 * 2
    assert out.delivered and out.dual_residual >= 0


def test_schedules_and_probabilities():
    g = nx.cycle_graph(5)
    ec = EdgeConsensus(g, 1, schedule="cyclic")
    assert [ec.next_edge() for _ in range(7)] == [0, 1, 2, 3, 4, 0, 1]
    p = np.array([1.0, 0.0, 1.0, 0.0, 2.0])
    ec = EdgeConsensus(g, 1, edge_probabilities=p, seed=0)
    draws = np.array([ec.next_edge() for _ in range(4000)])
    assert set(np.unique(draws)) == {0, 2, 4}
    assert abs(np.mean(draws == 4) - 0.5) < 0.05
    a = EdgeConsensus(g, 1, seed=3)
    b = EdgeConsensus(g, 1, seed=3)
    assert [a.next_edge() for _ in range(50)] == [b.next_edge() for _ in range(50)]


def test_incident_edges_and_penalty_terms_are_consistent():
    g = nx.petersen_graph()
    rng = np.random.default_rng(0)
    ec = EdgeConsensus(g, 4, penalty=3.0, dual_init=rng.normal(size=(15, 2, 4)), seed=0)
    ec.reset(z=rng.normal(size=(15, 4)), duals=ec.duals)
    for node in range(ec.n_agents):
        eids, sides = ec.incident_edges(node)
        assert len(eids) == ec.degree[node]
        assert np.all(ec.edges[eids, sides] == node)
        zsum, lsum = ec.penalty_terms(node)
        np.testing.assert_allclose(zsum, ec.z[eids].sum(axis=0), atol=1e-12)
        np.testing.assert_allclose(lsum, ec.duals[eids, sides].sum(axis=0), atol=1e-12)
        np.testing.assert_allclose(ec.local_argument(node), (zsum - lsum / 3.0) / ec.degree[node])


def test_endpoint_terms_carry_the_engines_penalty():
    """The engine is the one owner of rho: every endpoint reads it with its sums, so a change reaches all of them."""
    g = nx.petersen_graph()
    rng = np.random.default_rng(1)
    ec = EdgeConsensus(g, 4, penalty=3.0, dual_init=rng.normal(size=(15, 2, 4)), seed=0)
    ec.reset(z=rng.normal(size=(15, 4)), duals=ec.duals)
    for rho in (3.0, 0.25):
        ec.set_penalty(rho)
        for node in range(ec.n_agents):
            terms = ec.endpoint_terms(node)
            zsum, lsum = ec.penalty_terms(node)
            np.testing.assert_array_equal(terms.z_sum, zsum)
            np.testing.assert_array_equal(terms.dual_sum, lsum)
            assert terms.degree == ec.degree[node] and terms.penalty == rho
            np.testing.assert_array_equal(terms.argument, ec.local_argument(node))


def test_signed_dual_init_is_the_per_edge_pair():
    """dual_init of shape (2, 1) sets lam_{e,i} = c at every edge's lower endpoint and -c at the other (MATRPO's y)."""
    g = nx.cycle_graph(5)
    ec = EdgeConsensus(g, 3, dual_init=np.array([[1.5], [-1.5]]), seed=0)
    np.testing.assert_array_equal(ec.duals[:, 0], 1.5)
    np.testing.assert_array_equal(ec.duals[:, 1], -1.5)
    np.testing.assert_array_equal(ec.dual_sums(), 0.0)


def test_float32_state():
    prob = build_problem("averaging", 4, 2, seed=0)
    objs = prob.objectives
    ec = EdgeConsensus(nx.cycle_graph(4), 2, dtype=np.float32, seed=0)
    *_, (_, _, x) = drive(ec, objs, 200, x=np.zeros((4, 2), np.float32))
    assert ec.z.dtype == np.float32 and ec.duals.dtype == np.float32


def test_bad_arguments():
    g = nx.cycle_graph(4)
    with pytest.raises(ValueError, match="penalty"):
        EdgeConsensus(g, 2, penalty=0.0)
    with pytest.raises(ValueError, match="schedule"):
        EdgeConsensus(g, 2, schedule="round-robin")
    with pytest.raises(ValueError, match="drop_prob"):
        EdgeConsensus(g, 2, drop_prob=1.0)
    with pytest.raises(ValueError, match="dual_init"):
        EdgeConsensus(g, 2, dual_init=np.zeros((3, 2, 2)))
    with pytest.raises(ValueError, match="edge_probabilities"):
        EdgeConsensus(g, 2, edge_probabilities=[1.0, 2.0])
    ec = EdgeConsensus(g, 2)
    with pytest.raises(ValueError, match="x_i must have shape"):
        ec.exchange(0, np.zeros(3), np.zeros(2))
    with pytest.raises(IndexError):
        ec.exchange(9, np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="z must have shape"):
        ec.reset(z=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="disconnected"):
        EdgeConsensus(nx.empty_graph(3), 2)
