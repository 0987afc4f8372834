r"""Consensus ADMM with one MPI process per agent: ``mpiexec -n N python script.py`` calling :func:`solve`.

Rank r owns one node of the graph (``list(graph.nodes)[r]`` unless ``node=`` says otherwise) and is given only that
node's objective f_i, so no process ever holds another agent's data. Processes talk only to their graph neighbours.
The iterations are those of :mod:`consensus_admm.solver` (same symbols and equation numbers), split by node:

Symbols (all local to node i unless stated)
-------------------------------------------
==========  =====================  ==========  ==========================================================
symbol      code                   shape       meaning
==========  =====================  ==========  ==========================================================
x_i         ``x``                  (n,)        this node's estimate (``ADMMResult.x``)
lam_i       ``lam`` / ``Lam[0]``   (n,)        aggregate dual sum_{e in E(i)} lam_{e,i}
z_e         ``z[l]``               (d_i, n)    replica of the edge variable of the l-th incident edge
lam_{e,q}   ``lam[l, s]``          (d_i,2,n)   replica of both endpoint duals of that edge (s = side)
S_i         ``S[0]``               (n,)        sum_{e in E(i)} z_e
d           ``scale``              (n,)        diagonal scale of preconditioning, x = d y (ones: unscaled)
D, R        ``diameter``, tree     -           graph diameter; BFS spanning tree rooted at a graph centre
==========  =====================  ==========  ==========================================================

Preconditioning (the in-process default, :mod:`consensus_admm.precondition`): each rank computes its agent's
curvature statistics (h_i, H_i) = ``local_statistics(f_i)`` and the table of all agents' statistics is gathered
neighbour-only by (M1) below (a second table carries the dense H_i only when some agent has one). Every rank then
evaluates ``mean_statistics`` on the table's rows in node order -- the in-process floating-point sum in the
in-process order -- and ``preconditioner`` on the mean, so all ranks hold the in-process scale d and penalty rho_0
bit for bit (:func:`agreed_preconditioner`). The iterations below run on y = x / d with this agent's g_i(y) =
f_i(d y) (``f_i.scaled(d)``); x_i = d y_i, the duals lam / d, the edge replicas z d and lam / d, and the residuals
(R1)-(R4) are reported in the original units, while (H2) balances the scaled residuals, as in-process. With
``preconditioning="none"``, or when some agent reports no curvature, d = 1 and rho_0 is (H1) from the gathered
per-agent curvature (:func:`initial_penalty`).

Sync (node form, alpha = 1, no drops): one neighbourhood collective (``Neighbor_allgather`` on a distributed-graph
communicator built from the networkx graph) per iteration carries x_j^{k+1} from every neighbour, then node i
applies (S2)-(S4) and the next (S1) with exactly the arithmetic of ``_kernels.sync_node_run`` (neighbour sum in
sorted-neighbour order, left to right, as its NumPy twin for the generic path), so the iterates equal the
in-process ones bit for bit (tested, iterative proxes such as logistic regression's Newton included: there a one-ulp
difference in the prox argument can move the inner stopping test and grow to 1e-10).

Sync on edge state (alpha != 1 or ``drop_prob > 0``) and async (Wei-Ozdaglar): both endpoints of an edge keep a
replica of its state (z_e, lam_{e,i}, lam_{e,j}). An activation of e = (i, j) is

    each endpoint q: x_q = prox_{f_q/(rho d_q)}((S_q - Lam_q/rho)/d_q)                                    (A1)
    point-to-point exchange of x_i and x_j between the two processes                                     (X)
    both endpoints: (A2)-(A3) on their replica with ``_kernels.edge_update``, unless a message was lost

Both endpoints run the same deterministic update on the same inputs, so the replicas stay equal and the dual
invariant holds as in-process. Every rank derives the whole activation schedule and the message-loss uniforms from
the shared ``seed`` (``edge.EdgeStream``, the in-process generator) or replays a recorded ``schedule``, and works
through its own activations in schedule order, waiting only for the other endpoint. Activations of edges that
share no node therefore run concurrently, and because they touch disjoint state they commute: the result equals
the sequential in-process run. Sync on edge state is the all-edges-per-tick case: (A1), one neighbourhood
collective, then (A2)-(A3) for the incident edges in edge-id order (the in-process order).

Stopping and diagnostics, neighbour-only (no global reduction anywhere):

    m^{(0)} = local maxima (r_i, s_i, x-scale, lam-scale, non-finite flag);
    m^{(t+1)} = max(m^{(t)}, max_{j in N_i} m_j^{(t)}),   t < D   =>  m^{(D)} = global maxima on every rank    (M1)

All residuals (R1)-(R4) are maxima (infinity norms), so (M1) gives every rank the exact global values, hence
identical stopping, penalty-adaptation and status decisions (statuses are agreed by construction). DIVERGED is the
in-process rule: a non-finite value anywhere, or max(||x||, ||z||) above ``DIVERGENCE_FACTOR`` times its value at the
first check (at least 1). Per-agent statistics (the set-up of the scale and the penalty) are gathered by (M1) on a
table with one row per node (every row is finite and written by its owner only, so the maximum copies it exactly).
Sums (the network mean and the objective in the result and history) are a convergecast up the BFS tree and a
broadcast down it (2 x depth <= 2 D rounds, messages of n floats):                                       (T1)
``stopping="budget"`` runs exactly ``max_iter`` iterations with no stopping checks (only the final status is
computed).

Departures from the in-process solver (and why)
-----------------------------------------------
* ``result.x``, ``result.dual`` are this node's (n,) vectors; ``edge_z``/``edge_duals``/``edges``/
  ``messages_per_edge`` cover its incident edges; ``messages_per_node``/``floats_per_node`` hold its own counts;
  ``consensus``, ``objective``, ``consensus_error`` are network-wide (T1)/(M1). ``extra`` adds ``rank``,
  ``node_index``, ``bytes_sent`` (iteration messages) and ``control_bytes_sent`` ((M1)/(T1) and set-up).
* No warm start and no callback (a callback would see only local state); ``method="star"`` needs a centre and is
  not offered. ``result.scale`` is the agreed d (the same on every rank); ``success`` is True only for SOLVED.
* Message loss is simulated exactly as in-process: the message is sent, and both endpoints discard the exchange
  when either uniform says lost (a real lossy link would need an acknowledgement for the same semantics).
* Set-up: one ``allgather`` of (node index, dimension, settings/seed fingerprint, local error) maps nodes to ranks
  and makes every rank raise the same error on inconsistent input (a bad ``hessian()`` included) instead of
  hanging; the MPI distributed-graph communicator creation is itself collective. The preconditioning statistics
  cost D neighbourhood rounds of an N x (n + 3) table, plus N x n^2 when some agent has a dense Hessian (n <= 1024,
  as in-process), once per solve.
* An agent whose built-in objective kind differs from another's is packed with its own kind (the in-process packing
  uses the widest kind), which changes the prox arithmetic at rounding level only.
"""

from __future__ import annotations

import math
import numbers
import time
import zlib

import networkx as nx
import numpy as np

from . import _kernels as K
from ._problem import Problem, agent_curvature, combine_curvatures
from .edge import EdgeStream
from .graphs import GraphArrays, graph_arrays
from .precondition import CurvatureStatistics, Preconditioner, local_statistics, mean_statistics, preconditioner
from .results import ADMMHistory, ADMMResult, ADMMStatus
from .settings import ADMMSettings
from .solver import (DIVERGENCE_FACTOR, Residuals, adapt_runner_penalty, limit_status, original_units,
                     penalty_for_curvature, should_stop)

__all__ = ["solve", "initial_penalty", "agreed_preconditioner", "STOPPING_RULES"]

STOPPING_RULES = ("residuals", "budget")
_TAG_EDGE, _TAG_TREE = 11, 12


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("consensus_admm.mpi needs mpi4py: pip install 'decentralized-marl[mpi]' "
                          "(or pip install mpich mpi4py)") from exc
    return MPI


# ----------------------------------------------------------------------------------------------------------------
# Neighbour-only communication
# ----------------------------------------------------------------------------------------------------------------


class _Network:
    """This rank's view of the graph: neighbours' ranks, a distributed-graph communicator, (M1) and (T1)."""

    def __init__(self, comm, graph, ga: GraphArrays, me: int, rank_of: np.ndarray):
        self.ga, self.me, self.rank_of = ga, me, rank_of
        self.nbrs = ga.indices[ga.indptr[me]:ga.indptr[me + 1]]  # sorted: the in-process summation order
        self.degree = int(ga.degree[me])
        ranks = [int(rank_of[j]) for j in self.nbrs]
        self.comm = comm.Create_dist_graph_adjacent(ranks, ranks, reorder=False)
        self.diameter = nx.diameter(graph)
        self.parent, self.children = _bfs_tree(ga, _centre(graph, ga))
        self.data_bytes = 0
        self.control_bytes = 0

    def free(self):
        self.comm.Free()

    def allgather(self, vec: np.ndarray, *, control: bool = False) -> np.ndarray:
        """Neighbour values of ``vec`` as rows in sorted-neighbour order (one neighbourhood collective)."""
        vec = np.ascontiguousarray(vec, dtype=np.float64)
        out = np.empty((self.degree,) + vec.shape)
        self.comm.Neighbor_allgather(vec, out)
        nbytes = self.degree * vec.nbytes
        if control:
            self.control_bytes += nbytes
        else:
            self.data_bytes += nbytes
        return out

    def flood_max(self, values) -> np.ndarray:
        """(M1): elementwise maximum of ``values`` over all nodes after D neighbourhood rounds (values not nan)."""
        vals = np.array(values, dtype=np.float64)
        for _ in range(self.diameter):
            vals = np.maximum(vals, self.allgather(vals, control=True).max(axis=0))
        return vals

    def gather_rows(self, row) -> np.ndarray:
        """(M1) on a table: every node's ``row`` (finite floats), as an (N, k) array in node order."""
        row = np.asarray(row, dtype=np.float64)
        table = np.full((self.ga.n_agents, row.size), -np.inf)
        table[self.me] = row
        return self.flood_max(table)

    def tree_sum(self, vec) -> np.ndarray:
        """(T1): sum of ``vec`` over all nodes, identical on every rank (convergecast + broadcast on the tree)."""
        acc = np.array(vec, dtype=np.float64)
        buf = np.empty_like(acc)
        for c in self.children[self.me]:
            self.comm.Recv(buf, source=int(self.rank_of[c]), tag=_TAG_TREE)
            acc += buf
        if self.parent[self.me] >= 0:
            up = int(self.rank_of[self.parent[self.me]])
            self.comm.Send(acc, dest=up, tag=_TAG_TREE)
            self.comm.Recv(acc, source=up, tag=_TAG_TREE)
            self.control_bytes += acc.nbytes
        for c in self.children[self.me]:
            self.comm.Send(acc, dest=int(self.rank_of[c]), tag=_TAG_TREE)
            self.control_bytes += acc.nbytes
        return acc

    def exchange(self, vec: np.ndarray, node: int, out: np.ndarray) -> None:
        """(X): send ``vec`` to neighbour ``node`` and receive its vector into ``out``."""
        r = int(self.rank_of[node])
        self.comm.Sendrecv(vec, dest=r, sendtag=_TAG_EDGE, recvbuf=out, source=r, recvtag=_TAG_EDGE)
        self.data_bytes += vec.nbytes


def _centre(graph, ga: GraphArrays) -> int:
    ecc = nx.eccentricity(graph)
    return int(min(range(ga.n_agents), key=lambda k: (ecc[ga.nodes[k]], k)))


def _bfs_tree(ga: GraphArrays, root: int):
    """Parent (-1 at the root) and sorted children of a BFS tree, the same on every rank."""
    parent = np.full(ga.n_agents, -2, np.int64)
    parent[root] = -1
    children = [[] for _ in range(ga.n_agents)]
    frontier = [root]
    while frontier:
        nxt = []
        for u in frontier:
            for v in ga.indices[ga.indptr[u]:ga.indptr[u + 1]]:
                if parent[v] == -2:
                    parent[v] = u
                    children[u].append(int(v))
                    nxt.append(int(v))
        frontier = nxt
    return parent, children


# ----------------------------------------------------------------------------------------------------------------
# Set-up and the local step
# ----------------------------------------------------------------------------------------------------------------


def initial_penalty(objective, net: _Network, method: str) -> float:
    """(H1) from every agent's curvature statistic, gathered neighbour-only: the in-process ``initial_penalty``.

    This is the one set-up call: a different default (other per-agent statistics, another rule) replaces the
    statistic row and the rule here, and stays equal to in-process as long as both use the same rule.
    """
    table = net.gather_rows([agent_curvature(objective)])
    return penalty_for_curvature(combine_curvatures(table[:, 0]), net.ga, method)


def agreed_preconditioner(stats: CurvatureStatistics | None, scalable: bool, net: _Network,
                          settings: ADMMSettings, dim: int) -> Preconditioner | None:
    """(H3) set-up: the in-process ``solver.problem_preconditioner`` from every agent's statistics, neighbour-only.

    ``stats`` is this agent's ``local_statistics`` and ``scalable`` whether its objective has ``scaled(d)``. One
    (M1) table gathers, per node, (has statistics, has a dense Hessian, scalable, diag(H_i)); a second one gathers
    the dense H_i only when some agent has one (D rounds of N n^2 floats per neighbour: set-up only). Every rank then
    rebuilds the per-agent statistics in node order and calls ``mean_statistics`` and ``preconditioner`` on them,
    so the mean is the in-process floating-point sum in the in-process order and the result is bit-identical.
    None (fall back to (H1), no scaling) when preconditioning is off or some agent reports no curvature.
    """
    if settings.preconditioning == "none":
        return None
    head = [stats is not None, stats is not None and stats.hessian is not None, bool(scalable)]
    table = net.gather_rows(np.concatenate([np.array(head, np.float64),
                                            stats.diag if stats is not None else np.zeros(dim)]))
    if not np.all(table[:, 0] > 0):
        return None
    dense = table[:, 1] > 0
    hess = None
    if np.any(dense):
        hess = net.gather_rows(stats.hessian.ravel() if stats.hessian is not None else np.zeros(dim * dim))
    per_agent = [CurvatureStatistics(table[k, 3:].copy(), hess[k].reshape(dim, dim) if dense[k] else None)
                 for k in range(net.ga.n_agents)]
    return preconditioner(mean_statistics(per_agent), net.ga.laplacian_eigenvalues, settings.method,
                          scalable=bool(np.all(table[:, 2] > 0)))


class _LocalProx:
    """prox_{f_i/s} of this node's objective: the compiled ``prox_node`` (built-ins) or the generic path."""

    def __init__(self, objective, settings: ADMMSettings):
        self.problem = Problem([objective], 1)
        self.dim = self.problem.dim
        packed = self.problem.packed
        if packed is not None:
            self._args = packed.args(settings.inner_tol, settings.inner_max_iter)
            self._work = np.empty(self.dim)
            self._work2 = np.empty(self.dim)
        else:
            self._batch = self.problem.prox_batch(settings.inner_tol, settings.inner_max_iter)

    def refresh(self, s: float) -> None:
        if self.problem.packed is not None:
            self.problem.packed.refresh_cholesky(np.array([s]))

    def __call__(self, s: float, v: np.ndarray, out: np.ndarray) -> None:
        """out <- prox_{f/s}(v); ``out`` holds the warm start on entry."""
        if self.problem.packed is not None:
            K.prox_node(0, s, v, out, *self._args, self._work, self._work2)
        else:
            out[:] = self._batch(np.zeros(1, np.int64), v[None, :], np.array([s]), out[None, :])[0]


class _NodeRunner:
    """Sync node form (S1)-(S4) at node i; one neighbourhood collective per iteration."""

    def __init__(self, net: _Network, prox: _LocalProx, rho: float):
        self.net, self.prox = net, prox
        dim = prox.dim
        self.d = net.degree
        self.x = np.zeros(dim)
        self.lam = np.zeros(dim)
        self.nbr_x = np.zeros((self.d, dim))  # x0 = 0 everywhere: nothing to exchange before the first step
        xb = self._xbar()
        self.zbar = 0.5 * (self.x + xb)
        self.zbar_prev = self.zbar.copy()
        self.n_iter = 0
        self.set_penalty(rho)

    def set_penalty(self, rho):
        self.rho = rho
        self.prox.refresh(rho * self.d)

    def _xbar(self):
        acc = self.nbr_x[0].copy()  # (S2) summed in sorted-neighbour (CSR) order, as the kernel does
        for row in self.nbr_x[1:]:
            acc += row
        return acc * (1.0 / self.d)

    def run(self, n):
        s = self.rho * self.d
        for _ in range(n):
            xb = self._xbar()
            self.zbar_prev = 0.5 * (self.x + xb)
            v = 0.5 * (self.x + xb) - self.lam * (1.0 / s)  # (S4) and the argument of (S1)
            nxt = self.x.copy()  # warm start of the inner solver
            self.prox(s, v, nxt)  # (S1)
            self.x = nxt
            self.nbr_x = self.net.allgather(self.x)
            xb = self._xbar()  # (S2)
            self.lam = self.lam + (0.5 * s) * (self.x - xb)  # (S3)
            self.zbar = 0.5 * (self.x + xb)  # (S4)
        self.n_iter += n

    def residual_inputs(self):
        """This node's share of the (R1)-(R4) inputs: x_i, z_e of its edges, d_i (z̄_i - z̄_i^prev), lam_i."""
        return self.x, 0.5 * (self.x[None, :] + self.nbr_x), self.d * (self.zbar - self.zbar_prev), self.lam

    def finite(self):
        return bool(np.all(np.isfinite(self.x)) and np.all(np.isfinite(self.lam)))

    def counts(self):
        return self.d * self.n_iter, self.d * self.n_iter * self.x.size, np.full(self.d, 2 * self.n_iter, np.int64)

    def extras(self):
        return dict(dual=self.lam.copy(), edge_z=None, edge_duals=None)


class _EdgeRunner:
    """Async (one activation per tick, point-to-point) or sync on edge state (all edges per tick)."""

    def __init__(self, net: _Network, prox: _LocalProx, settings: ADMMSettings, rho: float, stream: EdgeStream,
                 is_async: bool):
        self.net, self.prox, self.st = net, prox, settings
        ga, me, dim = net.ga, net.me, prox.dim
        a, b = ga.inc_ptr[me], ga.inc_ptr[me + 1]
        self.edge_ids = ga.inc_edge[a:b].copy()  # incident edges, sorted by id
        self.sides = ga.inc_side[a:b].copy()
        self.partner = ga.edges[self.edge_ids, 1 - self.sides]
        self.nbr_row = np.searchsorted(net.nbrs, self.partner)  # partner's row in a neighbourhood collective
        self.local = np.full(ga.n_edges, -1, np.int64)
        self.local[self.edge_ids] = np.arange(len(self.edge_ids))
        self.d = len(self.edge_ids)
        self.x = np.zeros(dim)
        self.z = np.zeros((self.d, dim))
        self.lam = np.zeros((self.d, 2, dim))
        self.S = np.zeros((2, dim))  # row 0: S_i; row 1: scratch for the other endpoint's sum
        self.Lam = np.zeros((2, dim))
        self.S_snap = self.S[0].copy()
        self.other = np.empty(dim)
        self.msgs = 0
        self.activations = np.zeros(self.d, np.int64)
        self.stream, self.is_async = stream, is_async
        self.recorded = [] if settings.record_schedule and is_async else None
        self.n_iter = 0
        self.set_penalty(rho)

    def set_penalty(self, rho):
        self.rho = rho
        self.prox.refresh(rho * self.d)

    def _local_step(self):  # (A1)
        v = (self.S[0] - self.Lam[0] * (1.0 / self.rho)) * (1.0 / self.d)  # the kernels' arithmetic
        self.prox(self.rho * self.d, v, self.x)

    def _update(self, le, x_other, lost):
        self.msgs += 1
        self.activations[le] += 1
        if lost:
            return
        if self.sides[le] == 0:  # (A2)-(A3) on the replica; S, Lam row 0 is this node's
            K.edge_update(le, 0, 1, self.x, x_other, self.z, self.lam, self.S, self.Lam, self.rho, self.st.alpha)
        else:
            K.edge_update(le, 1, 0, x_other, self.x, self.z, self.lam, self.S, self.Lam, self.rho, self.st.alpha)

    def _lost(self, drops, o):
        """Message loss of occurrence ``o`` from the shared uniforms (both endpoints agree)."""
        p = self.st.drop_prob
        return p > 0.0 and (drops[o, 0] < p or drops[o, 1] < p)

    def _epoch(self):
        m = self.net.ga.n_edges
        if self.is_async:
            edges = self.stream.edges(m)
            drops = self.stream.drops(m)
            if self.recorded is not None:
                self.recorded.append(edges.copy())
            for o in np.flatnonzero(self.local[edges] >= 0):
                le = int(self.local[edges[o]])
                self._local_step()
                self.net.exchange(self.x, int(self.partner[le]), self.other)
                self._update(le, self.other, self._lost(drops, o))
        else:
            drops = self.stream.drops(m)
            self._local_step()
            nbr_x = self.net.allgather(self.x)
            for le in range(self.d):  # incident edges in edge-id order, the in-process order
                self._update(le, nbr_x[self.nbr_row[le]], self._lost(drops, int(self.edge_ids[le])))

    def run(self, n):
        for p in range(n):
            if p == n - 1:
                self.S_snap[:] = self.S[0]
            self._epoch()
        self.n_iter += n

    def residual_inputs(self):
        return self.x, self.z, self.S[0] - self.S_snap, self.Lam[0]

    def finite(self):
        return bool(np.all(np.isfinite(self.x)) and np.all(np.isfinite(self.z)) and np.all(np.isfinite(self.lam)))

    def counts(self):
        return self.msgs, self.msgs * self.x.size, 2 * self.activations

    def extras(self):
        sched = None
        if self.recorded is not None:
            sched = np.concatenate(self.recorded) if self.recorded else np.zeros(0, np.int64)
        return dict(dual=self.Lam[0].copy(), edge_z=self.z.copy(), edge_duals=self.lam.copy(), schedule=sched)


# ----------------------------------------------------------------------------------------------------------------
# The driver
# ----------------------------------------------------------------------------------------------------------------


def _fingerprint(settings, seed, schedule, stopping) -> int:
    sched = b"" if schedule is None else np.asarray(schedule, np.int64).tobytes()
    return zlib.crc32(repr((settings, int(seed), stopping)).encode() + sched)


def _handshake(comm, ga, node, objective, settings, seed, schedule, stopping):
    """Map nodes to ranks and validate, raising the same error on every rank. Returns (me, rank_of, prox, this
    agent's curvature statistics or None)."""
    err, me, prox, dim, stats = None, -1, None, -1, None
    try:
        if node is None:
            me = comm.Get_rank()
        else:
            try:
                me = ga.nodes.index(node)
            except ValueError:
                raise ValueError(f"node {node!r} is not a node of the graph") from None
        prox = _LocalProx(objective, settings)
        dim = prox.dim
        if settings.preconditioning != "none":  # a bad hessian() is reported on every rank, not only here
            stats = local_statistics(objective, dim)
    except (TypeError, ValueError) as exc:
        err = f"{type(exc).__name__}: {exc}"
    rows = comm.allgather((me, dim, _fingerprint(settings, seed, schedule, stopping), err))
    errors = [(r, row[3]) for r, row in enumerate(rows) if row[3] is not None]
    if errors:
        raise ValueError("invalid input on rank(s) " + "; ".join(f"{r}: {e}" for r, e in errors))
    owners = [row[0] for row in rows]
    if sorted(owners) != list(range(ga.n_agents)):
        raise ValueError(f"each node must be owned by exactly one rank; ranks own node indices {owners}")
    if len({row[1] for row in rows}) > 1:
        raise ValueError(f"objectives have mismatched dimensions across ranks: {[row[1] for row in rows]}")
    if len({row[2] for row in rows}) > 1:
        raise ValueError("settings, seed, schedule and stopping must be identical on every rank")
    rank_of = np.empty(ga.n_agents, np.int64)
    rank_of[owners] = np.arange(len(owners))
    return me, rank_of, prox, stats


def solve(objective, graph, settings: ADMMSettings | None = None, *, seed=0, comm=None, node=None, schedule=None,
          stopping: str = "residuals") -> ADMMResult:
    """Consensus ADMM with this process as one agent; call it from every rank of ``comm`` (``mpiexec -n N``).

    Parameters
    ----------
    objective : this node's local objective (a built-in of :mod:`consensus_admm.objectives` or any object with
        ``prox(v, t)`` and ``dim``); no other agent's objective is needed or seen.
    graph : networkx.Graph
        The communication graph, the same on every rank (connected, undirected, simple, ``comm.size`` nodes).
    settings : ADMMSettings, optional
        Identical on every rank; ``method`` "sync" or "async" ("star" needs a centre). The defaults precondition as
        in-process (``preconditioning="curvature"``; see the module docstring).
    seed : int
        Shared by all ranks: the async schedule and message losses are derived from it (as in-process).
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.
    node : node label, optional
        The node this rank owns; default ``list(graph.nodes)[rank]``.
    schedule : 1-D int array, optional
        Replay a recorded async schedule (``ADMMResult.schedule``), as in-process.
    stopping : {"residuals", "budget"}
        "residuals": the in-process test every ``check_interval`` iterations through (M1) (D neighbourhood rounds
        per check); "budget": exactly ``max_iter`` iterations, no checks (the status is computed once at the end).

    Returns
    -------
    ADMMResult
        ``x`` is this node's estimate (n,); see the module docstring for the other per-node fields.

    Raises
    ------
    TypeError, ValueError
        Invalid input, raised on every rank.

    Examples
    --------
    Run with ``mpiexec -n 4 python script.py``::

        import networkx as nx
        from mpi4py import MPI
        from consensus_admm import Averaging, ADMMSettings
        from consensus_admm.mpi import solve
        rank = MPI.COMM_WORLD.Get_rank()
        res = solve(Averaging([float(rank)]), nx.cycle_graph(4), ADMMSettings(penalty=1.0))
        print(rank, res.status.name, res.x)         # every rank: SOLVED [1.5]
    """
    t_start = time.perf_counter()
    MPI = _mpi()
    comm = MPI.COMM_WORLD if comm is None else comm
    settings = ADMMSettings() if settings is None else settings
    if not isinstance(settings, ADMMSettings):
        raise TypeError(f"settings must be an ADMMSettings, got {type(settings).__name__}")
    if settings.method == "star":
        raise ValueError("ADMMSettings.method='star' needs a centre; over MPI use 'sync' or 'async'")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int shared by all ranks, got {type(seed).__name__}")
    if stopping not in STOPPING_RULES:
        raise ValueError(f"stopping must be one of {STOPPING_RULES}, got {stopping!r}")
    if schedule is not None and settings.method != "async":
        raise ValueError("schedule replay applies to method='async' only")
    ga = graph_arrays(graph)
    if comm.Get_size() != ga.n_agents:
        raise ValueError(f"the graph has {ga.n_agents} nodes but the communicator has {comm.Get_size()} ranks; "
                         "launch one process per node")
    if settings.edge_probabilities is not None and len(settings.edge_probabilities) != ga.n_edges:
        raise ValueError(f"ADMMSettings.edge_probabilities has {len(settings.edge_probabilities)} entries but the "
                         f"graph has {ga.n_edges} edges")
    me, rank_of, prox, stats = _handshake(comm, ga, node, objective, settings, seed, schedule, stopping)
    net = _Network(comm, graph, ga, me, rank_of)
    try:
        return _run(net, prox, objective, stats, settings, int(seed), schedule, stopping, t_start)
    finally:
        net.free()


def _run(net: _Network, prox: _LocalProx, objective, stats, settings: ADMMSettings, seed: int, schedule, stopping,
         t_start) -> ADMMResult:
    ga = net.ga
    prec = agreed_preconditioner(stats, callable(getattr(objective, "scaled", None)), net, settings, prox.dim)
    scale = prec.scale if prec is not None and prec.scaled else None
    if settings.penalty is not None:
        rho = settings.penalty
    else:
        rho = prec.penalty if prec is not None else initial_penalty(objective, net, settings.method)
        rho = min(max(float(rho), settings.penalty_min), settings.penalty_max)
    rho_init = rho
    if scale is not None:  # the solver runs on y = x / scale: this agent's g_i(y) = f_i(scale * y)
        prox = _LocalProx(objective.scaled(scale), settings)
    if settings.uses_edge_kernel:
        stream = EdgeStream(np.random.default_rng(seed), ga.n_edges, settings.schedule, settings.edge_probabilities,
                            settings.drop_prob, replay=schedule)
        runner = _EdgeRunner(net, prox, settings, rho, stream, settings.method == "async")
    else:
        runner = _NodeRunner(net, prox, rho)
    setup_time = time.perf_counter() - t_start

    t_solve = time.perf_counter()
    hist = {k: [] for k in ("iteration", "primal_residual", "dual_residual", "eps_primal", "eps_dual",
                            "consensus_error", "objective", "penalty")}
    status, message = None, ""
    n_updates, k = 0, 0
    r = s = eps_pri = eps_dual = float("nan")
    ci, ai = settings.check_interval, settings.adaptive_penalty_interval
    checks = stopping == "residuals"
    unscale = (lambda y: y) if scale is None else (lambda y: y * scale)
    x_ref, first_check = 1.0, True  # x0 = 0: the in-process max(1, ||x0||)
    while k < settings.max_iter:
        nxt = min((k // ci + 1) * ci, settings.max_iter) if checks else settings.max_iter
        if settings.adaptive_penalty:
            nxt = min(nxt, (k // ai + 1) * ai)
        runner.run(nxt - k)
        k = nxt
        res, res_y, bad = _global_residuals(net, runner, settings, scale)
        r, s, eps_pri, eps_dual = res.r, res.s, res.eps_pri, res.eps_dual
        if first_check:  # the problem's own scale, as in-process
            x_ref, first_check = max(x_ref, res.x_scale), False
        if bad or res.x_scale > DIVERGENCE_FACTOR * x_ref:
            status, message = ADMMStatus.DIVERGED, f"non-finite or exploding iterates at iteration {k}"
            break
        if k % ci == 0 or k == settings.max_iter:
            if settings.record_history:
                _, cons, obj = _network_diagnostics(net, unscale(runner.x), objective)
                for key, val in (("iteration", k), ("primal_residual", r), ("dual_residual", s),
                                 ("eps_primal", eps_pri), ("eps_dual", eps_dual), ("consensus_error", cons),
                                 ("objective", obj), ("penalty", runner.rho)):
                    hist[key].append(val)
            if (checks or k == settings.max_iter) and should_stop(r, s, eps_pri, eps_dual):
                status, message = ADMMStatus.SOLVED, f"converged at iteration {k}"
                break
        if settings.adaptive_penalty and k % ai == 0 and k < settings.max_iter:
            n_updates += adapt_runner_penalty(runner, res_y, settings)  # (H2) on the scaled problem
    if status is None:
        status, message = limit_status(res, settings)
    solve_time = time.perf_counter() - t_solve

    x = unscale(runner.x.copy())
    consensus, cons_err, objective_value = _network_diagnostics(net, x, objective)
    if status == ADMMStatus.DIVERGED:
        objective_value = float("nan")
    msgs, floats, per_edge = runner.counts()
    extras = original_units(runner.extras(), scale)  # as in-process
    history = ADMMHistory(**{key: np.asarray(val, dtype=np.int64 if key == "iteration" else float)
                             for key, val in hist.items()}) if settings.record_history else None
    local_edges = ga.inc_edge[ga.inc_ptr[net.me]:ga.inc_ptr[net.me + 1]]
    return ADMMResult(
        x=x, consensus=consensus, dual=extras["dual"], edge_z=extras["edge_z"],
        edge_duals=extras["edge_duals"], nodes=[ga.nodes[net.me]], edges=ga.edges[local_edges].copy(),
        method=settings.method, status=status, message=message,
        primal_residual=r, dual_residual=s, eps_primal=eps_pri, eps_dual=eps_dual,
        consensus_error=cons_err, objective=objective_value,
        n_iter=k, n_activations=k * ga.n_edges, n_penalty_updates=n_updates, penalty=runner.rho,
        initial_penalty=rho_init,
        messages_per_node=np.array([msgs], np.int64), floats_per_node=np.array([floats], np.int64),
        messages_per_edge=per_edge, setup_time=setup_time, solve_time=solve_time,
        scale=np.ones(prox.dim) if scale is None else scale.copy(), history=history,
        schedule=extras.get("schedule"),
        extra=dict(rank=net.comm.Get_rank(), node_index=net.me, bytes_sent=net.data_bytes,
                   control_bytes_sent=net.control_bytes, stopping=stopping),
    )


def _local_terms(x, z, dz, lam, rho) -> list:
    """This node's maxima of the (R1)-(R4) inputs with the in-process arithmetic: [r, s, x-scale, lam-scale]."""
    x_abs, z_abs = float(np.max(np.abs(x))), float(np.max(np.abs(z)))
    return [float(np.max(np.abs(x[None, :] - z))), float(rho * np.max(np.abs(dz))), max(x_abs, z_abs),
            float(np.max(np.abs(lam)))]


def _global_residuals(net: _Network, runner, settings: ADMMSettings, scale) -> tuple[Residuals, Residuals, bool]:
    """(R1)-(R4) in the original units and in the scaled ones (for (H2)), and the non-finite flag, from local
    maxima through one (M1): the same values on every rank. Original units: x = scale y, z = scale z_y,
    dz = dz_y / scale, lam = lam_y / scale, elementwise as in-process (``solver._residuals``)."""
    x, z, dz, lam = runner.residual_inputs()
    terms = _local_terms(x, z, dz, lam, runner.rho)
    if scale is not None:
        terms = _local_terms(x * scale, z * scale, dz / scale, lam / scale, runner.rho) + terms
    bad = not runner.finite() or not (math.isfinite(terms[0]) and math.isfinite(terms[1]))
    flooded = net.flood_max(np.nan_to_num(np.array(terms + [float(bad)]), nan=np.inf))
    found = [_as_residuals(flooded[o:o + 4], settings) for o in range(0, len(terms), 4)]
    return found[0], found[-1], bool(flooded[-1])


def _as_residuals(terms, settings: ADMMSettings) -> Residuals:
    r, s, x_scale, lam_scale = (float(v) for v in terms)
    return Residuals(r, s, settings.eps_abs + settings.eps_rel * x_scale, settings.eps_abs + settings.eps_rel *
                     lam_scale, x_scale, lam_scale)


def _network_diagnostics(net: _Network, x: np.ndarray, objective):
    """(consensus mean, consensus error, sum_i f_i(mean)) through (T1) and (M1); nan objective without value()."""
    mean = net.tree_sum(x) / net.ga.n_agents
    cons = float(net.flood_max([np.nan_to_num(np.max(np.abs(x - mean)), nan=np.inf)])[0])
    fn = getattr(objective, "value", None)
    val = float(fn(mean)) if callable(fn) else float("nan")
    has = net.tree_sum(np.array([0.0 if math.isnan(val) else val, 1.0 if math.isnan(val) else 0.0]))
    return mean, cons, float("nan") if has[1] > 0 else float(has[0])
