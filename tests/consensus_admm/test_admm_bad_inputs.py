"""Bad input to consensus_admm: a table of inputs and the exception each must raise (type and message naming the
argument and its allowed range), plus the edge cases that must *not* raise or silently go wrong (issue 15, item 7)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from consensus_admm import ADMMSettings, ADMMStatus, Averaging, solve
from consensus_admm.testing import build_problem

GRAPH = nx.cycle_graph(4)


def avg(n=4, dim=2):
    return [Averaging(np.full(dim, float(k))) for k in range(n)]


def run(**kw):
    return solve(avg(), GRAPH, **kw)


def async_run(**kw):
    return solve(avg(), GRAPH, ADMMSettings(method="async", max_iter=2), **kw)


BAD = [
    # settings: ranges, including the explicit penalty against [penalty_min, penalty_max] (never silently clipped)
    (lambda: ADMMSettings(penalty=1e-12), ValueError,
     r"ADMMSettings.penalty must lie in \[1e-06, 1000000.0\], got 1e-12 \(.*penalty_min, penalty_max"),
    (lambda: ADMMSettings(penalty=1e7), ValueError, r"ADMMSettings.penalty must lie in \[1e-06, 1000000.0\]"),
    (lambda: ADMMSettings(penalty=float("inf")), ValueError, r"ADMMSettings.penalty must lie in"),
    (lambda: ADMMSettings(penalty=float("nan")), ValueError, r"ADMMSettings.penalty must lie in"),
    (lambda: ADMMSettings(penalty="1.0"), TypeError, r"ADMMSettings.penalty must be a real number, got str"),
    (lambda: ADMMSettings(penalty_min=0.0), ValueError, r"ADMMSettings.penalty_min must lie in \(0.0, inf\)"),
    (lambda: ADMMSettings(max_iter=np.float64(50.0)), TypeError, r"ADMMSettings.max_iter must be an int, got float"),
    (lambda: ADMMSettings(max_iter=np.int64(0)), ValueError, r"ADMMSettings.max_iter must be an int >= 1, got 0"),
    (lambda: ADMMSettings(alpha=np.float32(2.5)), ValueError, r"ADMMSettings.alpha must lie in \(0.0, 2.0\)"),
    (lambda: ADMMSettings(preconditioning="ruiz"), ValueError,
     r"ADMMSettings.preconditioning must be one of \('curvature', 'none'\), got 'ruiz'"),
    (lambda: ADMMSettings(edge_probabilities="1,2"), TypeError, r"edge_probabilities must be a sequence of reals"),
    (lambda: ADMMSettings(edge_probabilities=(1.0, "a")), TypeError, r"edge_probabilities must hold real numbers"),
    # seed
    (lambda: run(seed=-1), ValueError, r"seed must be a non-negative int, a numpy Generator or None, got -1"),
    (lambda: run(seed=1.5), TypeError, r"seed must be an int, a numpy Generator or None, got float"),
    # warm start: type, shapes, values, and the penalty (never silently clipped or run to DIVERGED)
    (lambda: run(warm_start=[1, 2]), TypeError, r"warm_start must be None, an ADMMResult or a dict.*got list"),
    (lambda: run(warm_start=np.zeros((4, 2))), TypeError, r"warm_start must be None, an ADMMResult or a dict"),
    (lambda: run(warm_start={"penalty": -1.0}), ValueError,
     r"warm_start penalty must be a real number in \[penalty_min, penalty_max\] = \[1e-06, 1000000.0\], got -1.0"),
    (lambda: run(warm_start={"penalty": float("inf")}), ValueError, r"warm_start penalty must be a real number in"),
    (lambda: run(warm_start={"penalty": float("nan")}), ValueError, r"warm_start penalty must be a real number in"),
    (lambda: run(warm_start={"penalty": "2"}), ValueError, r"warm_start penalty must be a real number in.*'2'"),
    (lambda: run(warm_start={"x": np.zeros((3, 2))}), ValueError, r"warm_start x must have shape \(4, 2\)"),
    (lambda: run(warm_start={"dual": np.full((4, 2), np.inf)}), ValueError, r"warm_start dual must be finite"),
    (lambda: run(warm_start={"x": "abc"}), ValueError, r"warm_start x must be a real array of shape \(4, 2\)"),
    (lambda: ADMMSettings(record_history=1), TypeError, r"ADMMSettings.record_history must be True or False, got int"),
    (lambda: run(warm_start={"rho": 1.0}), ValueError, r"unknown warm_start keys \['rho'\]"),
    # replayed schedules: integer edge ids only (floats are refused, not truncated), in range, 1-D
    (lambda: async_run(schedule=np.array([0.0, 1.5] * 4)), TypeError,
     r"schedule must be a 1-D integer array of edge ids, got dtype float64"),
    (lambda: async_run(schedule=[0, 1, 2, 9]), ValueError, r"schedule must be a 1-D array of edge ids in \[0, 4\)"),
    (lambda: async_run(schedule=np.zeros((2, 4), np.int64)), ValueError, r"schedule must be a 1-D array"),
    (lambda: async_run(schedule=np.array([0, 1, 2, 3])), ValueError, r"the replayed schedule has 4 ticks; 8 needed"),
    (lambda: run(schedule=np.array([0, 1])), ValueError, r"schedule replay applies to method='async' only"),
]


@pytest.mark.parametrize("call,exc,message", BAD, ids=[f"case-{k}" for k in range(len(BAD))])
def test_bad_input_raises_a_clear_error(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


@pytest.mark.parametrize("kwargs,field,expected", [
    (dict(penalty=np.float32(2.0)), "penalty", 2.0),
    (dict(max_iter=np.int64(50)), "max_iter", 50),
    (dict(check_interval=np.int32(5)), "check_interval", 5),
    (dict(alpha=np.float64(1.5)), "alpha", 1.5),
    (dict(eps_abs=np.float32(0.0)), "eps_abs", 0.0),
    (dict(record_history=np.bool_(True)), "record_history", True),
])
def test_numpy_scalars_are_accepted_as_python_numbers(kwargs, field, expected):
    value = getattr(ADMMSettings(**kwargs), field)
    assert value == expected and type(value) is type(expected)


def test_a_numpy_integer_seed_is_accepted():
    a, b = run(seed=np.int64(3)), run(seed=3)
    np.testing.assert_array_equal(a.x, b.x)


def test_divergence_is_relative_to_the_problem_scale():
    # A correct answer of size 1e31 is not "diverged" (the cut-off was an absolute 1e30).
    objs = [Averaging([1e31 * i]) for i in range(4)]
    res = solve(objs, GRAPH)
    assert res.status == ADMMStatus.SOLVED and res.success
    np.testing.assert_allclose(res.x, 1.5e31, rtol=1e-6)


def test_solved_inaccurate_is_not_success():
    # The case: cond(A'A) = 1e6, 12 agents, ER graph, the previous default stops far from the answer.
    problem = build_problem("least_squares", 12, 20, seed=7, rows=30, condition_number=1e6)
    graph = nx.erdos_renyi_graph(12, 0.5, seed=1)
    res = solve(problem.objectives, graph, ADMMSettings(preconditioning="none", max_iter=2000))
    assert res.status != ADMMStatus.SOLVED and not res.success
