"""consensus_admm: consensus ADMM over networkx graphs (sync DADMM, Wei-Ozdaglar async, Boyd star).

Public names::

    solve, ADMMSettings, ADMMStatus, ADMMResult, ADMMHistory, SolverState,
    EdgeConsensus, EdgeExchange, EndpointTerms,
    Averaging, Quadratic, LeastSquares, Lasso, Box, LogisticRegression, Objective,
    plot_residuals, graph_arrays

One process per agent over MPI: :func:`consensus_admm.mpi.solve` (optional extra ``[mpi]``; not imported here).

The math (symbols, numbered equations, residual norm convention) is in :mod:`consensus_admm.solver`,
:mod:`consensus_admm.edge`, :mod:`consensus_admm.objectives` and :mod:`consensus_admm.precondition` (the default
scaling and penalty, from agent statistics). :mod:`consensus_admm.testing` (imported on its own) holds problem
builders with centralized solutions, Hypothesis strategies and a result checker for property-based tests.
"""

from .edge import EdgeConsensus, EdgeExchange, EndpointTerms
from .graphs import graph_arrays
from .objectives import Averaging, Box, Lasso, LeastSquares, LogisticRegression, Objective, Quadratic
from .plot import plot_residuals
from .results import ADMMHistory, ADMMResult, ADMMStatus, SolverState
from .settings import ADMMSettings
from .solver import solve

__all__ = [
    "solve",
    "ADMMSettings",
    "ADMMStatus",
    "ADMMResult",
    "ADMMHistory",
    "SolverState",
    "EdgeConsensus",
    "EdgeExchange",
    "EndpointTerms",
    "Objective",
    "Averaging",
    "Quadratic",
    "LeastSquares",
    "Lasso",
    "Box",
    "LogisticRegression",
    "plot_residuals",
    "graph_arrays",
]
