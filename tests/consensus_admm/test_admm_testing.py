"""consensus_admm.testing: builders give true minimisers, the checker catches each kind of wrong result with a clear
message, the strategies draw what they promise, the module imports without Hypothesis, and the example runs."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import minimize

from consensus_admm import ADMMSettings, ADMMStatus, solve
from consensus_admm.testing import KINDS, build_problem, check_result, connected_graphs, consensus_problems

ROOT = Path(__file__).resolve().parents[2]
TIGHT = ADMMSettings(eps_abs=1e-10, eps_rel=1e-10, max_iter=50_000)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_agents,dim", [(1, 1), (3, 4), (6, 2)])
def test_builders_return_a_minimiser(kind, n_agents, dim):
    p = build_problem(kind, n_agents, dim, seed=n_agents + dim)
    assert p.n_agents == n_agents and p.dim == dim and len(p.objectives) == n_agents
    grad_scale = max(1.0, float(np.max(np.abs(p.smooth_gradient(np.zeros(dim))))))
    assert p.kkt_residual(p.solution) <= 1e-9 * grad_scale
    # Independent check where the sum has values: no point near x* has a smaller objective.
    total = lambda x: sum(o.value(x) for o in p.objectives)  # noqa: E731
    rng = np.random.default_rng(0)
    for step in rng.normal(size=(20, dim)) * 1e-3:
        assert total(p.solution) <= total(p.solution + step) + 1e-12 * abs(total(p.solution))


def test_least_squares_builder_matches_scipy():
    p = build_problem("least_squares", 5, 3, seed=1, condition_number=1e4)
    A, b = p.data["A"], p.data["b"]
    assert np.linalg.cond(A.T @ A) == pytest.approx(1e4, rel=1e-6)
    ref = minimize(lambda x: 0.5 * np.sum((A @ x - b) ** 2), np.zeros(3), jac=lambda x: A.T @ (A @ x - b),
                   method="BFGS", options=dict(gtol=1e-12)).x
    np.testing.assert_allclose(p.solution, ref, rtol=1e-5, atol=1e-8)


def test_build_problem_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kind must be one of"):
        build_problem("svm", 3, 2)
    with pytest.raises(ValueError, match="n_agents must be an int >= 1"):
        build_problem("ridge", 0, 2)


# -- the checker: passes a correct result, names what is wrong otherwise -------------------------------------------


@pytest.fixture(scope="module")
def solved():
    p = build_problem("least_squares", 5, 3, seed=2)
    g = nx.relabel_nodes(nx.cycle_graph(5), {k: f"n{k}" for k in range(5)})
    res = solve(p.objectives, g, TIGHT)
    check_result(res, p)
    check_result(res, p.objectives)  # a plain objective list: consensus and KKT only
    return p, res


def _shift_one(res):
    x = res.x.copy()
    x[2, 1] += 1e-2
    return dataclasses.replace(res, x=x)


def _shift_all(res):
    return dataclasses.replace(res, x=res.x + 1e-3)


def _unbalance_duals(res):
    return dataclasses.replace(res, dual=res.dual + 1e-2)


def _swap_duals(res):
    dual = res.dual.copy()
    dual[[0, 1]] = dual[[1, 0]]
    return dataclasses.replace(res, dual=dual)


def _not_solved(res):
    return dataclasses.replace(res, status=ADMMStatus.SOLVED_INACCURATE)


@pytest.mark.parametrize("corrupt,message", [
    (_shift_one, r"no consensus: agent 'n2' \(row 2\) differs from the agents' mean by .* at coordinate 1"),
    (_shift_all, r"agent 'n\d' \(row \d\) is 1.000e-03 from the centralized solution at coordinate \d \(x = .*allowed"),
    (_unbalance_duals, r"KKT: the duals do not sum to zero"),
    (_swap_duals, r"KKT: agent 'n0' \(row 0\) is not stationary"),
    (_not_solved, r"expected status SOLVED, got SOLVED_INACCURATE \[status SOLVED_INACCURATE after \d+ iterations"),
])
def test_checker_names_what_is_wrong(solved, corrupt, message):
    p, res = solved
    with pytest.raises(AssertionError, match=message):
        check_result(corrupt(res), p)


def test_checker_catches_a_wrong_centralized_answer(solved):
    p, res = solved
    with pytest.raises(AssertionError, match="from the centralized solution"):
        check_result(res, p, solution=p.solution + 1.0)


# -- strategies ----------------------------------------------------------------------------------------------------


@given(graph=connected_graphs(min_nodes=3, max_nodes=6))
def test_connected_graphs_are_connected_simple_and_sized(graph):
    assert 3 <= graph.number_of_nodes() <= 6
    assert nx.is_connected(graph) and nx.number_of_selfloops(graph) == 0
    assert all(hash(v) is not None for v in graph.nodes)


@given(problem=consensus_problems(kinds=("averaging", "box_qp"), dims=st.just(2)))
def test_consensus_problems_fit_their_graph(problem):
    assert problem.kind in ("averaging", "box_qp") and problem.dim == 2
    assert len(problem.objectives) == problem.graph.number_of_nodes()


def test_strategies_reject_bad_arguments():
    with pytest.raises(ValueError, match="min_nodes"):
        connected_graphs(min_nodes=1)
    with pytest.raises(ValueError, match="kinds must be a non-empty subset"):
        consensus_problems(kinds=("svm",))


def test_importable_without_hypothesis():
    code = ("import sys; sys.modules['hypothesis'] = None\n"
            "import consensus_admm.testing as t\n"
            "p = t.build_problem('lasso', 3, 2, seed=0)\n"
            "try:\n    t.connected_graphs()\nexcept ImportError as e:\n    print('ImportError:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ImportError: consensus_admm.testing strategies need Hypothesis" in out.stdout


def test_the_custom_prox_example_passes():
    spec = importlib.util.spec_from_file_location("example_custom_prox", ROOT / "examples" / "test_custom_prox.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.test_huber_consensus_matches_the_centralized_minimiser()
    module.test_relabelling_the_nodes_changes_nothing()
