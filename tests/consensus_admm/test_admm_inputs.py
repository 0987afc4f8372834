"""Bad input: each case is a clear ValueError or TypeError, never a hang or a silent wrong answer."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from consensus_admm import (ADMMSettings, Averaging, Box, Lasso, LeastSquares, LogisticRegression, Quadratic,
                            solve)


def avg(n, dim=2):
    return [Averaging(np.ones(dim)) for _ in range(n)]


def test_disconnected_graph_names_the_components():
    g = nx.Graph([("a", "b"), ("c", "d"), ("d", "e")])
    with pytest.raises(ValueError, match=r"disconnected: 2 connected components.*'c', 'd', 'e'.*'a', 'b'"):
        solve(avg(5), g)


def test_isolated_node_is_a_component():
    g = nx.path_graph(3)
    g.add_node(7)
    with pytest.raises(ValueError, match=r"\[7\]"):
        solve(avg(4), g)


def test_self_loops_are_rejected():
    g = nx.cycle_graph(4)
    g.add_edge(2, 2)
    with pytest.raises(ValueError, match="self-loops at nodes \\[2\\]"):
        solve(avg(4), g)


@pytest.mark.parametrize("graph", [nx.empty_graph(1), nx.empty_graph(0)])
def test_fewer_than_two_nodes(graph):
    with pytest.raises(ValueError, match="at least 2 nodes"):
        solve(avg(graph.number_of_nodes()), graph)


@pytest.mark.parametrize("graph,match", [(nx.DiGraph([(0, 1), (1, 0)]), "undirected"),
                                         (nx.MultiGraph([(0, 1), (0, 1)]), "simple"),
                                         ([(0, 1)], "networkx.Graph")])
def test_graph_types(graph, match):
    with pytest.raises(TypeError, match=match):
        solve(avg(2), graph)


def test_mismatched_dimensions_are_named():
    objs = [Averaging(np.ones(3)), Averaging(np.ones(3)), Averaging(np.ones(2))]
    with pytest.raises(ValueError, match=r"mismatched dimensions: dim 2 at agents \[2\], dim 3 at agents \[0, 1\]"):
        solve(objs, nx.path_graph(3))


def test_wrong_number_of_objectives():
    with pytest.raises(ValueError, match="3 objectives for a graph with 4 nodes"):
        solve(avg(3), nx.cycle_graph(4))


def test_objects_without_prox_or_dim():
    with pytest.raises(TypeError, match="no callable prox"):
        solve([object(), object()], nx.path_graph(2))

    class NoDim:
        def prox(self, v, t):
            return v

    with pytest.raises(TypeError, match="dim"):
        solve([NoDim(), NoDim()], nx.path_graph(2))


@pytest.mark.parametrize("make", [
    lambda: Averaging([1.0, np.nan]),
    lambda: LeastSquares([[1.0, np.inf]], [1.0]),
    lambda: LeastSquares([[1.0, 2.0]], [np.nan]),
    lambda: Lasso([[1.0]], [1.0], l1=np.inf),
    lambda: Quadratic([[1.0, 0.0], [0.0, np.nan]], [0.0, 0.0]),
    lambda: LogisticRegression([[np.nan]], [1]),
])
def test_non_finite_data_is_rejected(make):
    with pytest.raises(ValueError, match="non-finite|finite"):
        make()


@pytest.mark.parametrize("make,match", [
    (lambda: LeastSquares([[1.0, 2.0]], [1.0, 2.0]), "rows"),
    (lambda: Quadratic([[1.0, 2.0], [0.0, 1.0]], [0.0, 0.0]), "symmetric"),
    (lambda: Quadratic([[-1.0, 0.0], [0.0, 1.0]], [0.0, 0.0]), "positive semidefinite"),
    (lambda: Quadratic(np.eye(3), [0.0, 0.0]), "shape"),
    (lambda: LogisticRegression([[1.0]], [2]), "labels|y must be"),
    (lambda: Box([1.0, 0.0], [0.0, 1.0]), "lower <= upper"),
    (lambda: Averaging([1.0], weight=0.0), "weight"),
    (lambda: Lasso([[1.0]], [1.0], l1=-1.0), "l1"),
])
def test_invalid_objective_data(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("field,value,match", [
    ("method", "gossip", "method must be one of"),
    ("schedule", "round-robin", "schedule must be one of"),
    ("penalty", 0.0, r"penalty must lie in \[1e-06, 1000000.0\].*penalty_min, penalty_max"),
    ("penalty", float("nan"), "penalty must lie in"),
    ("alpha", 2.0, r"alpha must lie in \(0.0, 2.0\)"),
    ("alpha", 0.0, r"alpha must lie in \(0.0, 2.0\)"),
    ("drop_prob", 1.0, r"drop_prob must lie in \[0.0, 1.0\)"),
    ("drop_prob", -0.1, "drop_prob"),
    ("eps_abs", -1e-3, "eps_abs"),
    ("eps_rel", float("inf"), "eps_rel"),
    ("check_interval", 0, "check_interval must be an int >= 1"),
    ("max_iter", 0, "max_iter must be an int >= 1"),
    ("adaptive_penalty_interval", 0, "adaptive_penalty_interval"),
    ("adaptive_penalty_tolerance", 1.0, "adaptive_penalty_tolerance"),
    ("penalty_max", 1e-9, "penalty_max"),
    ("edge_probabilities", (1.0, -1.0), "edge_probabilities"),
    ("inner_tol", 0.0, "inner_tol"),
])
def test_invalid_settings_name_the_field_and_range(field, value, match):
    with pytest.raises(ValueError, match=match):
        ADMMSettings(**{field: value})


@pytest.mark.parametrize("field,value", [("max_iter", 10.5), ("check_interval", True), ("alpha", "1.5"),
                                         ("adaptive_penalty", 1)])
def test_settings_types(field, value):
    with pytest.raises(TypeError, match=field):
        ADMMSettings(**{field: value})


def test_settings_from_dict_rejects_unknown_keys():
    assert ADMMSettings.from_dict({"method": "star"}).method == "star"
    with pytest.raises(ValueError, match="unknown ADMMSettings keys \\['rho'\\]"):
        ADMMSettings.from_dict({"rho": 1.0})


def test_settings_that_conflict_with_the_problem():
    with pytest.raises(ValueError, match="edge_probabilities has 2 entries but the graph has 4 edges"):
        solve(avg(4), nx.cycle_graph(4), ADMMSettings(method="async", edge_probabilities=(1.0, 1.0)))
    with pytest.raises(ValueError, match="star"):
        solve(avg(4), nx.cycle_graph(4), ADMMSettings(method="star", drop_prob=0.1))
    with pytest.raises(TypeError, match="settings"):
        solve(avg(4), nx.cycle_graph(4), {"method": "sync"})
    with pytest.raises(TypeError, match="seed"):
        solve(avg(4), nx.cycle_graph(4), seed="zero")


def test_bad_warm_start():
    with pytest.raises(ValueError, match=r"warm_start x must have shape \(4, 2\)"):
        solve(avg(4), nx.cycle_graph(4), warm_start={"x": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="finite"):
        solve(avg(4), nx.cycle_graph(4), warm_start={"x": np.full((4, 2), np.nan)})
    with pytest.raises(ValueError, match="unknown warm_start keys"):
        solve(avg(4), nx.cycle_graph(4), warm_start={"y": 0})


def test_prox_returning_the_wrong_shape():
    class Bad:
        dim = 2

        def prox(self, v, t):
            return np.zeros(3)

    with pytest.raises(ValueError, match="prox returned shape"):
        solve([Bad(), Bad()], nx.path_graph(2))
