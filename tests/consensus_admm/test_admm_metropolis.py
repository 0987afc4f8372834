"""Metropolis-Hastings mixing weights: doubly stochastic, symmetric, non-negative, graph-supported, and the diffusion
x <- W x they define preserves the average and converges to it on any connected graph."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus_admm.graphs import metropolis_weights


@st.composite
def connected_graphs(draw):
    n = draw(st.integers(2, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    p = draw(st.floats(0.1, 1.0))
    g = nx.gnp_random_graph(n, p, seed=seed)
    # Join the components with a random spanning path so the graph is connected.
    order = np.random.default_rng(seed).permutation(n)
    g.add_edges_from(zip(order[:-1].tolist(), order[1:].tolist()))
    return g


@given(connected_graphs())
def test_metropolis_weights_are_doubly_stochastic_symmetric_and_on_the_graph(graph):
    w = metropolis_weights(graph)
    n = graph.number_of_nodes()
    np.testing.assert_allclose(w.sum(axis=0), np.ones(n), rtol=0, atol=1e-12)
    np.testing.assert_allclose(w.sum(axis=1), np.ones(n), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(w, w.T)
    assert (w >= 0).all()
    adjacency = nx.to_numpy_array(graph, nodelist=list(graph.nodes)) > 0
    off_diagonal = ~np.eye(n, dtype=bool)
    assert (w[off_diagonal & ~adjacency] == 0).all() and (w[off_diagonal & adjacency] > 0).all()


@given(connected_graphs(), st.integers(0, 2**31 - 1))
def test_diffusion_preserves_the_average_and_converges_to_it(graph, seed):
    w = metropolis_weights(graph)
    x = np.random.default_rng(seed).normal(size=(graph.number_of_nodes(), 4))
    mean = x.mean(axis=0)
    for _ in range(2000):
        x = w @ x
        np.testing.assert_allclose(x.mean(axis=0), mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(x, np.broadcast_to(mean, x.shape), rtol=0, atol=1e-8)


def test_known_values_on_a_star_and_a_ring():
    star = metropolis_weights(nx.star_graph(3))  # hub degree 3: every edge weight 1/4
    np.testing.assert_allclose(star[0], [0.25, 0.25, 0.25, 0.25])
    np.testing.assert_allclose(star[1], [0.25, 0.75, 0.0, 0.0])
    ring = metropolis_weights(nx.cycle_graph(5))  # all degrees 2: 1/3 to each neighbour and to itself
    np.testing.assert_allclose(np.diag(ring), np.full(5, 1 / 3))


def test_rejects_a_disconnected_graph():
    g = nx.Graph([(0, 1), (2, 3)])
    with pytest.raises(ValueError, match="disconnected"):
        metropolis_weights(g)
