r"""Edge-form consensus state driven step by step by the caller (for opaque local solvers such as a TRPO step).

Edge form (admm-reference §3.5-§3.6). For each edge e = (i, j), i < j, there is an edge variable z_e and one dual
per endpoint, lam_{e,i} and lam_{e,j}. Agent q's augmented-Lagrangian local problem is

.. math::  x_q = \arg\min_x f_q(x) + \sum_{e \ni q} \big[\lambda_{e,q}^\top (x - z_e)
           + \tfrac{\rho}{2}\|x - z_e\|^2\big]
           = \operatorname{prox}_{f_q/(\rho d_q)}\Big(\tfrac{1}{d_q}\sum_{e\ni q}(z_e - \lambda_{e,q}/\rho)\Big),
           \tag{A1}

and an exchange over e = (i, j) (both endpoints send their x) sets, with over-relaxation
x̂_q = alpha x_q + (1 - alpha) z_e (alpha = 1: none),

.. math::  z_e \leftarrow \tfrac12(\hat x_i + \hat x_j) + \tfrac{1}{2\rho}(\lambda_{e,i} + \lambda_{e,j}),   \tag{A2}
.. math::  \lambda_{e,q} \leftarrow \lambda_{e,q} + \rho(\hat x_q - z_e), \quad q \in \{i, j\}.           \tag{A3}

After (A2)-(A3), lam_{e,i} + lam_{e,j} = 0 (the dual invariant), so z_e is the edge average of the x̂'s.
With message loss, each of the two messages is lost independently with probability ``drop_prob``; if either is
lost, the edge keeps its old (z_e, lam_e) so the invariant is preserved.

The caller computes x_q however it likes (for example a TRPO step on f_q plus the penalty terms returned by
:meth:`EdgeConsensus.penalty_terms`, or :meth:`EdgeConsensus.endpoint_terms` with the degree and the engine's
penalty rho, of which the engine is the one owner) and calls :meth:`EdgeConsensus.exchange`. The update
(A2)-(A3) is the same compiled function ``_kernels.edge_update`` that ``solve(method="async")`` runs, and the random
schedule and drops come from the same seeded streams, so driving this class with exact prox steps reproduces
``solve``.

Norms in the returned residuals are infinity norms (the package convention, see ``consensus_admm.solver``).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import networkx as nx
import numpy as np

from ._kernels import edge_update
from .graphs import graph_arrays

__all__ = ["EdgeConsensus", "EdgeExchange", "EndpointTerms"]

_BLOCK = 8192


def as_generator(seed) -> np.random.Generator:
    """Convert ``seed: int | np.random.Generator | None`` once (STYLE.md §2)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int, a numpy Generator or None, got {seed!r}")
        return np.random.default_rng(int(seed))
    raise TypeError(f"seed must be an int, a numpy Generator or None, got {type(seed).__name__}")


def _schedule_array(replay, n_edges: int) -> np.ndarray:
    """Validate a replayed schedule: a 1-D array of integer edge ids in [0, n_edges) (floats are refused, not
    truncated)."""
    arr = np.asarray(replay)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"schedule must be a 1-D integer array of edge ids, got dtype {arr.dtype} "
                        "(use ADMMResult.schedule as recorded)")
    if arr.ndim != 1 or (arr.size and (arr.min() < 0 or arr.max() >= n_edges)):
        raise ValueError(f"schedule must be a 1-D array of edge ids in [0, {n_edges}), got shape {arr.shape}"
                         + (f" and values in [{arr.min()}, {arr.max()}]" if arr.size and arr.ndim == 1 else ""))
    return arr.astype(np.int64)


class EdgeStream:
    """Seeded edge schedule and message-drop uniforms, drawn in fixed blocks so that taking them one at a time or
    in chunks gives the same sequence.

    The seed generator spawns two independent children: one for the schedule, one for the drops.
    """

    def __init__(self, rng: np.random.Generator, n_edges: int, schedule: str = "random", probabilities=None,
                 drop_prob: float = 0.0, replay=None):
        self.n_edges = n_edges
        self.schedule = schedule
        self.drop_prob = float(drop_prob)
        self._sched_rng, self._drop_rng = rng.spawn(2)
        self._p = None
        if probabilities is not None:
            p = np.asarray(probabilities, dtype=np.float64)
            if p.shape != (n_edges,):
                raise ValueError(f"edge_probabilities must have one entry per edge ({n_edges}), got shape {p.shape}")
            if np.any(~np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
                raise ValueError("edge_probabilities must be finite, >= 0, with a positive sum")
            self._p = p / p.sum()
        self._replay = None if replay is None else _schedule_array(replay, n_edges)
        self._pos = 0
        self._sched_buf = np.zeros(0, np.int64)
        self._sched_at = 0
        self._drop_buf = np.zeros((0, 2))
        self._drop_at = 0

    def _draw_block(self) -> np.ndarray:
        if self._p is None:
            return self._sched_rng.integers(0, self.n_edges, size=_BLOCK, dtype=np.int64)
        return self._sched_rng.choice(self.n_edges, size=_BLOCK, p=self._p).astype(np.int64)

    def edges(self, count: int) -> np.ndarray:
        """The next ``count`` edge ids of the schedule."""
        if self._replay is not None:
            if self._pos + count > len(self._replay):
                raise ValueError(f"the replayed schedule has {len(self._replay)} ticks; {self._pos + count} needed")
            out = self._replay[self._pos:self._pos + count]
        elif self.schedule == "cyclic":
            out = (self._pos + np.arange(count, dtype=np.int64)) % self.n_edges
        else:
            parts = []
            need = count
            while need > 0:
                if self._sched_at == len(self._sched_buf):
                    self._sched_buf, self._sched_at = self._draw_block(), 0
                take = min(need, len(self._sched_buf) - self._sched_at)
                parts.append(self._sched_buf[self._sched_at:self._sched_at + take])
                self._sched_at += take
                need -= take
            out = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        self._pos += count
        return np.ascontiguousarray(out, dtype=np.int64)

    def drops(self, count: int) -> np.ndarray:
        """(count, 2) uniforms; message s of occurrence o is lost when ``u[o, s] < drop_prob``."""
        if self.drop_prob <= 0:
            return np.zeros((0, 2))
        parts = []
        need = count
        while need > 0:
            if self._drop_at == len(self._drop_buf):
                self._drop_buf, self._drop_at = self._drop_rng.random((_BLOCK, 2)), 0
            take = min(need, len(self._drop_buf) - self._drop_at)
            parts.append(self._drop_buf[self._drop_at:self._drop_at + take])
            self._drop_at += take
            need -= take
        return np.ascontiguousarray(np.concatenate(parts)) if parts else np.zeros((0, 2))


@dataclass(frozen=True)
class EndpointTerms:
    """What endpoint q needs for its local problem (A1), read from its own copies of its incident edges' state.

    The engine owns the penalty: an endpoint takes rho from here at every update, so a penalty change
    (:meth:`EdgeConsensus.set_penalty`) reaches every later local problem.

    Attributes
    ----------
    z_sum : ndarray (dim,)
        sum_{e in E(q)} z_e.
    dual_sum : ndarray (dim,)
        sum_{e in E(q)} lam_{e,q}.
    degree : int
        d_q = |E(q)|.
    penalty : float
        rho.

    Notes
    -----
    The penalty terms of (A1) are sum_e [lam_{e,q}'(x - z_e) + rho/2 ||x - z_e||^2]
    = dual_sum'x + (rho d_q / 2)||x||^2 - rho z_sum'x + const.
    """

    z_sum: np.ndarray
    dual_sum: np.ndarray
    degree: int
    penalty: float

    @property
    def argument(self) -> np.ndarray:
        """v_q of (A1): (z_sum - dual_sum / rho) / d_q."""
        return (self.z_sum - self.dual_sum / self.penalty) / self.degree


@dataclass(frozen=True)
class EdgeExchange:
    """Outcome of one :meth:`EdgeConsensus.exchange`."""

    edge: int
    primal_residual: tuple[float, float]  # (||x_i - z_e||_inf, ||x_j - z_e||_inf) after the update
    dual_residual: float  # rho ||z_e(new) - z_e(old)||_inf (0 when not delivered)
    delivered: bool  # False when a message was dropped and the edge kept its state


class EdgeConsensus:
    """Edge-form consensus state (z_e and per-endpoint duals lam_{e,i}) driven step by step by the caller.

    Parameters
    ----------
    graph : networkx.Graph
        Connected, undirected, simple, >= 2 nodes (validated as in :func:`consensus_admm.solve`).
    dim : int
        Length of the consensus vector.
    penalty : float > 0
        rho of (A1)-(A3).
    schedule : {"random", "cyclic"}
        How :meth:`next_edge` draws: i.i.d. (optionally weighted by ``edge_probabilities``) or ``edges[t % M]``.
    edge_probabilities : array (n_edges,), optional
        Activation weights in ``edges`` order (normalised).
    drop_prob : float in [0, 1)
        Probability that each of an exchange's two messages is lost.
    dual_init : float or array broadcastable to (n_edges, 2, dim)
        Initial lam_{e,q} (used by :meth:`reset`).
    seed : int, numpy Generator or None
    dtype : numpy float dtype of the state.
    alpha : float in (0, 2)
        Over-relaxation of (A2)-(A3); 1 = none.

    Examples
    --------
    >>> import networkx as nx, numpy as np
    >>> ec = EdgeConsensus(nx.path_graph(2), dim=1, penalty=1.0, seed=0)
    >>> a = [np.array([0.0]), np.array([2.0])]          # f_q = 0.5 (x - a_q)^2
    >>> for _ in range(50):
    ...     e = ec.next_edge()
    ...     xs = []
    ...     for q in ec.edges[e]:
    ...         zs, ls = ec.penalty_terms(q)
    ...         d = ec.degree[q]
    ...         v = (zs - ls / ec.penalty) / d
    ...         xs.append((a[q] + ec.penalty * d * v) / (1 + ec.penalty * d))
    ...     _ = ec.exchange(e, *xs)
    >>> np.round(ec.z[0], 6).tolist()
    [1.0]
    """

    def __init__(self, graph: nx.Graph, dim: int, *, penalty: float = 1.0, schedule: str = "random",
                 edge_probabilities=None, drop_prob: float = 0.0, dual_init: float | np.ndarray = 0.0,
                 seed: int | np.random.Generator | None = None, dtype=np.float64, alpha: float = 1.0):
        ga = graph_arrays(graph)
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if isinstance(penalty, bool) or not isinstance(penalty, numbers.Real) or not (0 < penalty < np.inf):
            raise ValueError(f"penalty must be a finite real > 0, got {penalty!r}")
        if schedule not in ("random", "cyclic"):
            raise ValueError(f"schedule must be 'random' or 'cyclic', got {schedule!r}")
        if not (isinstance(drop_prob, numbers.Real) and 0 <= drop_prob < 1):
            raise ValueError(f"drop_prob must lie in [0, 1), got {drop_prob!r}")
        if not (isinstance(alpha, numbers.Real) and 0 < alpha < 2):
            raise ValueError(f"alpha must lie in (0, 2), got {alpha!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise TypeError(f"dtype must be a floating dtype, got {self.dtype}")
        self._ga = ga
        self.nodes = ga.nodes
        self.edges = ga.edges
        self.degree = ga.degree
        self.n_agents = ga.n_agents
        self.n_edges = ga.n_edges
        self.dim = int(dim)
        self.penalty = float(penalty)
        self.alpha = float(alpha)
        self.schedule = schedule
        self.drop_prob = float(drop_prob)
        self._stream = EdgeStream(as_generator(seed), self.n_edges, schedule, edge_probabilities, drop_prob)
        dual_init = np.asarray(dual_init, dtype=self.dtype)
        if not np.all(np.isfinite(dual_init)):
            raise ValueError("dual_init must be finite")
        try:
            self._dual_init = np.broadcast_to(dual_init, (self.n_edges, 2, self.dim)).copy()
        except ValueError as exc:
            raise ValueError(f"dual_init must broadcast to (n_edges, 2, dim) = {(self.n_edges, 2, self.dim)}, "
                             f"got shape {dual_init.shape}") from exc
        self.schedule_history: list[int] = []
        self.messages_sent = np.zeros(self.n_agents, np.int64)
        self.floats_sent = np.zeros(self.n_agents, np.int64)
        self.edge_activations = np.zeros(self.n_edges, np.int64)
        self.reset()

    # -- state -------------------------------------------------------------------------------------------------
    def reset(self, z=None, duals=None) -> None:
        """Set z (default zeros) and duals (default ``dual_init``): a warm start when given. Counters are kept."""
        shape_z, shape_l = (self.n_edges, self.dim), (self.n_edges, 2, self.dim)
        self.z = np.zeros(shape_z, self.dtype) if z is None else self._checked("z", z, shape_z)
        self.duals = self._dual_init.copy() if duals is None else self._checked("duals", duals, shape_l)
        self._recompute_sums()
        self._balanced = np.all(self.duals[:, 0] + self.duals[:, 1] == 0, axis=1)

    def _checked(self, name, arr, shape):
        arr = np.array(arr, dtype=self.dtype)
        if arr.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite")
        return arr

    def _recompute_sums(self) -> None:
        ga = self._ga
        self._S = np.zeros((self.n_agents, self.dim), self.dtype)
        self._Lam = np.zeros((self.n_agents, self.dim), self.dtype)
        for e, (i, j) in enumerate(ga.edges):
            self._S[i] += self.z[e]
            self._S[j] += self.z[e]
            self._Lam[i] += self.duals[e, 0]
            self._Lam[j] += self.duals[e, 1]

    def set_penalty(self, penalty: float) -> None:
        """Change rho (the unscaled duals lam are kept, as in the solver's residual balancing)."""
        if not (isinstance(penalty, numbers.Real) and 0 < penalty < np.inf):
            raise ValueError(f"penalty must be a finite real > 0, got {penalty!r}")
        self.penalty = float(penalty)

    # -- queries -----------------------------------------------------------------------------------------------
    def _node(self, node: int) -> int:
        if isinstance(node, bool) or not isinstance(node, numbers.Integral) or not 0 <= node < self.n_agents:
            raise IndexError(f"node must be an internal index in [0, {self.n_agents}), got {node!r}")
        return int(node)

    def incident_edges(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """(edge ids, side 0/1 of ``node`` in each), sorted by edge id."""
        node = self._node(node)
        a, b = self._ga.inc_ptr[node], self._ga.inc_ptr[node + 1]
        return self._ga.inc_edge[a:b].copy(), self._ga.inc_side[a:b].copy()

    def penalty_terms(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """(sum_{e in E(i)} z_e, sum_{e in E(i)} lam_{e,i}), each (dim,): with d_i they give the prox argument of
        (A1), v_i = (z_sum - lam_sum / rho) / d_i, and the penalty sum_e [lam_{e,i}'(x - z_e) + rho/2 ||x - z_e||^2]
        = lam_sum'x + (rho d_i / 2)||x||^2 - rho z_sum'x + const."""
        node = self._node(node)
        return self._S[node].copy(), self._Lam[node].copy()

    def endpoint_terms(self, node: int) -> EndpointTerms:
        """Everything ``node``'s local problem (A1) needs: its two sums (:meth:`penalty_terms`), degree, penalty."""
        z_sum, dual_sum = self.penalty_terms(node)
        return EndpointTerms(z_sum, dual_sum, int(self.degree[node]), self.penalty)

    def local_argument(self, node: int) -> np.ndarray:
        """v_i of (A1): (1/d_i) sum_e (z_e - lam_{e,i}/rho)."""
        node = self._node(node)
        return (self._S[node] - self._Lam[node] / self.penalty) / self.degree[node]

    def next_edge(self) -> int:
        """Draw the next edge per the schedule (seeded) and record it in ``schedule_history``."""
        e = int(self._stream.edges(1)[0])
        self.schedule_history.append(e)
        return e

    # -- the exchange (A2)-(A3) --------------------------------------------------------------------------------
    def exchange(self, edge: int, x_i: np.ndarray, x_j: np.ndarray) -> EdgeExchange:
        """Exchange x_i and x_j over ``edge`` = (i, j) = ``edges[edge]`` and apply (A2)-(A3).

        Both messages are counted as sent; if either is dropped the edge keeps its state (``delivered=False``).
        """
        if isinstance(edge, bool) or not isinstance(edge, numbers.Integral) or not 0 <= edge < self.n_edges:
            raise IndexError(f"edge must be an edge id in [0, {self.n_edges}), got {edge!r}")
        edge = int(edge)
        xi = np.ascontiguousarray(x_i, dtype=self.dtype)
        xj = np.ascontiguousarray(x_j, dtype=self.dtype)
        for name, arr in (("x_i", xi), ("x_j", xj)):
            if arr.shape != (self.dim,):
                raise ValueError(f"{name} must have shape ({self.dim},), got {arr.shape}")
        i, j = int(self.edges[edge, 0]), int(self.edges[edge, 1])
        fl = self.dim if self._balanced[edge] else 2 * self.dim
        self.messages_sent[[i, j]] += 1
        self.floats_sent[[i, j]] += fl
        self.edge_activations[edge] += 1
        if self.drop_prob > 0:
            u = self._stream.drops(1)[0]
            if u[0] < self.drop_prob or u[1] < self.drop_prob:
                ze = self.z[edge]
                return EdgeExchange(edge, (float(np.max(np.abs(xi - ze))), float(np.max(np.abs(xj - ze)))),
                                    0.0, False)
        ri, rj, s = edge_update(edge, i, j, xi, xj, self.z, self.duals, self._S, self._Lam, self.penalty,
                                self.alpha)
        self._balanced[edge] = True
        return EdgeExchange(edge, (float(ri), float(rj)), float(s), True)

    # -- diagnostics -------------------------------------------------------------------------------------------
    def primal_residual(self, x: np.ndarray) -> float:
        """max over edges e = (i, j) and q in {i, j} of ||x_q - z_e||_inf for agent values x (n_agents, dim)."""
        x = np.asarray(x)
        return float(max(np.max(np.abs(x[self.edges[:, 0]] - self.z)), np.max(np.abs(x[self.edges[:, 1]] - self.z))))

    def dual_sums(self) -> np.ndarray:
        """lam_{e,i} + lam_{e,j} per edge, (n_edges, dim): zero after any delivered exchange (dual invariant)."""
        return self.duals[:, 0] + self.duals[:, 1]
