"""Result, status, history and callback-state types of :func:`consensus_admm.solve` (STYLE.md §3)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ADMMStatus", "ADMMHistory", "ADMMResult", "SolverState"]


class ADMMStatus(enum.Enum):
    """Outcome of a run. ``SOLVED_INACCURATE``: the stopping test holds at 10x the tolerances when the iteration
    limit is reached (OSQP convention)."""

    SOLVED = "solved"
    SOLVED_INACCURATE = "solved inaccurate"
    MAX_ITER = "maximum iterations reached"
    DIVERGED = "diverged"
    STOPPED = "stopped by callback"


@dataclass(frozen=True, eq=False)
class ADMMHistory:
    """Diagnostics recorded at every stopping check (arrays of equal length)."""

    iteration: np.ndarray
    primal_residual: np.ndarray
    dual_residual: np.ndarray
    eps_primal: np.ndarray
    eps_dual: np.ndarray
    consensus_error: np.ndarray
    objective: np.ndarray
    penalty: np.ndarray

    @property
    def linear_rate(self) -> float:
        """Estimated per-iteration linear rate q of max(primal, dual residual) ~ C q^k, fitted by least squares on
        the log residual over the second half of the record (nan with fewer than 4 usable points)."""
        res = np.maximum(self.primal_residual, self.dual_residual)
        keep = np.isfinite(res) & (res > 0)
        it, res = self.iteration[keep], res[keep]
        half = len(it) // 2
        it, res = it[half:], res[half:]
        if len(it) < 4 or np.ptp(it) == 0:
            return float("nan")
        slope = np.polyfit(it.astype(float), np.log(res), 1)[0]
        return float(np.exp(slope))


@dataclass(frozen=True, eq=False)
class SolverState:
    """What ``callback(state)`` sees at each stopping check (copies; mutating them changes nothing)."""

    iteration: int
    x: np.ndarray
    primal_residual: float
    dual_residual: float
    eps_primal: float
    eps_dual: float
    consensus_error: float
    penalty: float


@dataclass(frozen=True, eq=False)
class ADMMResult:
    """Result of :func:`consensus_admm.solve`.

    Rows of ``x`` and ``dual`` follow ``nodes`` (the graph's node order); ``x_by_node()`` maps labels to rows.
    Edge arrays follow ``edges`` (internal indices, i < j).
    """

    # solution
    x: np.ndarray  # (n_agents, dim): each agent's local copy x_i
    consensus: np.ndarray  # (dim,): mean of the local copies
    dual: np.ndarray  # (n_agents, dim): lam_i = sum_{e in E(i)} lam_{e,i} (star: y_i); at a solution -grad f_i(x*)
    edge_z: np.ndarray | None  # (n_edges, dim) edge variables z_e (edge-state runs; None for node-form sync, star)
    edge_duals: np.ndarray | None  # (n_edges, 2, dim) lam_{e, edges[e, s]} (edge-state runs only)
    nodes: list
    edges: np.ndarray
    method: str
    # status
    status: ADMMStatus
    message: str
    # quality (norm convention: solver module docstring (R1)-(R4))
    primal_residual: float
    dual_residual: float
    eps_primal: float
    eps_dual: float
    consensus_error: float  # max_i ||x_i - mean_j x_j||_inf
    objective: float  # sum_i f_i(mean x) (nan if an objective has no value())
    # algorithm
    n_iter: int
    n_activations: int  # edge activations (async ticks; sync: n_iter * n_edges; star: 0)
    n_penalty_updates: int
    penalty: float  # final rho
    initial_penalty: float
    # communication
    messages_per_node: np.ndarray  # (n_agents,) messages sent by each agent
    floats_per_node: np.ndarray  # (n_agents,) floats sent by each agent
    messages_per_edge: np.ndarray | None  # (n_edges,) messages over each edge (both directions); None for star
    # timing
    setup_time: float
    solve_time: float
    # preconditioning: the diagonal scale D of the consensus variable (x = D y; ones when not scaled). ``penalty``
    # and ``initial_penalty`` are the rho of the scaled variable y (consensus_admm.precondition).
    scale: np.ndarray | None = None
    # optional records
    history: ADMMHistory | None = None
    schedule: np.ndarray | None = None  # async edge ids per tick (record_schedule=True)
    extra: dict = field(default_factory=dict)

    @property
    def success(self) -> bool:
        """True only for SOLVED: the stopping test held at the requested tolerances. SOLVED_INACCURATE (only the
        10x test held at ``max_iter``) is not success, as in SciPy and OSQP."""
        return self.status == ADMMStatus.SOLVED

    @property
    def messages_sent(self) -> int:
        return int(self.messages_per_node.sum())

    @property
    def floats_sent(self) -> int:
        return int(self.floats_per_node.sum())

    def x_by_node(self) -> dict:
        """{node label: x_i}."""
        return {label: self.x[k] for k, label in enumerate(self.nodes)}
