"""Communication graphs: validation of a networkx graph and its conversion to index arrays.

A graph G = (V, E) is undirected, with N = |V| agents and M = |E| edges. Node labels are arbitrary hashable
objects; internally node ``k`` is the k-th node of ``list(graph.nodes)`` (the graph's own node order), and results are
reported in that order (``GraphArrays.nodes`` maps rows back to labels).

Symbols
-------
=========  =====================  ==============  ====================================================
symbol     attribute              shape           meaning
=========  =====================  ==============  ====================================================
V          ``nodes``              (N,)            node labels, index k <-> ``nodes[k]``
E          ``edges``              (M, 2) int64    ``edges[e] = (i, j)`` with i < j, sorted lexicographically
d_i        ``degree``             (N,)            number of neighbours of i
N_i        ``indptr, indices``    CSR             sorted neighbours of i
E(i)       ``inc_ptr, inc_edge``  CSR             incident edge ids of i, sorted by edge id
side       ``inc_side``           (2M,) int64     0 if i == edges[e, 0] else 1
L          ``laplacian()``        (N, N)          graph Laplacian D - A
W          ``metropolis_weights``  (N, N)         Metropolis-Hastings mixing matrix (diffusion / gossip)
=========  =====================  ==============  ====================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import networkx as nx
import numpy as np

__all__ = ["GraphArrays", "graph_arrays", "laplacian_extreme_eigenvalues", "metropolis_weights"]


@dataclass(frozen=True, eq=False)
class GraphArrays:
    """Index arrays of a validated, connected, simple undirected graph (see the module docstring)."""

    nodes: list
    edges: np.ndarray
    degree: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    inc_ptr: np.ndarray
    inc_edge: np.ndarray
    inc_side: np.ndarray

    @property
    def n_agents(self) -> int:
        return len(self.nodes)

    @property
    def n_edges(self) -> int:
        return int(self.edges.shape[0])

    def laplacian(self) -> np.ndarray:
        """Return the dense graph Laplacian L = D - A, shape (N, N), float64."""
        n = self.n_agents
        lap = np.zeros((n, n))
        i, j = self.edges[:, 0], self.edges[:, 1]
        lap[i, j] = -1.0
        lap[j, i] = -1.0
        lap[np.arange(n), np.arange(n)] = self.degree
        return lap

    @cached_property
    def laplacian_eigenvalues(self) -> tuple[float, float]:
        """(lambda_2(L), lambda_max(L)): algebraic connectivity and largest Laplacian eigenvalue."""
        return laplacian_extreme_eigenvalues(self)


def _validate(graph) -> None:
    if not isinstance(graph, nx.Graph):
        raise TypeError(f"graph must be a networkx.Graph, got {type(graph).__name__}")
    if graph.is_directed():
        raise TypeError("graph must be undirected (networkx.Graph); got a directed graph. "
                        "Use graph.to_undirected() if every link is bidirectional.")
    if graph.is_multigraph():
        raise TypeError("graph must be a simple networkx.Graph, not a MultiGraph")
    if graph.number_of_nodes() < 2:
        raise ValueError(f"graph must have at least 2 nodes, got {graph.number_of_nodes()}")
    loops = list(nx.selfloop_edges(graph))
    if loops:
        raise ValueError(f"graph has self-loops at nodes {sorted({u for u, _ in loops}, key=repr)[:10]!r}; "
                         "an agent does not exchange messages with itself")
    if not nx.is_connected(graph):
        comps = sorted((sorted(c, key=repr) for c in nx.connected_components(graph)), key=len, reverse=True)
        shown = "; ".join(repr(c if len(c) <= 8 else c[:8] + ["..."]) for c in comps[:5])
        more = f" (and {len(comps) - 5} more)" if len(comps) > 5 else ""
        raise ValueError(f"graph is disconnected: {len(comps)} connected components {shown}{more}. "
                         "Consensus needs a connected communication graph.")


def graph_arrays(graph: nx.Graph) -> GraphArrays:
    """Return the index arrays of ``graph`` after validating it.

    Parameters
    ----------
    graph : networkx.Graph
        Connected, undirected, simple graph with at least 2 nodes and no self-loops. Labels may be any hashables.

    Returns
    -------
    GraphArrays

    Raises
    ------
    TypeError
        Not a ``networkx.Graph``, or directed, or a multigraph.
    ValueError
        Fewer than 2 nodes, self-loops, or disconnected (the message lists the components).

    Examples
    --------
    >>> import networkx as nx
    >>> ga = graph_arrays(nx.path_graph(["a", "b", "c"]))
    >>> ga.edges.tolist(), ga.degree.tolist()
    ([[0, 1], [1, 2]], [1, 2, 1])
    """
    _validate(graph)
    nodes = list(graph.nodes)
    index = {v: k for k, v in enumerate(nodes)}
    n = len(nodes)
    pairs = sorted((min(index[u], index[v]), max(index[u], index[v])) for u, v in graph.edges)
    edges = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    m = edges.shape[0]
    degree = np.bincount(edges.ravel(), minlength=n).astype(np.int64)

    # Neighbour CSR (sorted neighbours).
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    order = np.lexsort((dst, src))
    indices = dst[order].astype(np.int64)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(degree, out=indptr[1:])

    # Incidence CSR: for node i, its edges sorted by edge id and the side of i in each.
    eid = np.concatenate([np.arange(m), np.arange(m)])
    side = np.concatenate([np.zeros(m, np.int64), np.ones(m, np.int64)])
    order = np.lexsort((eid, src))
    return GraphArrays(nodes=nodes, edges=edges, degree=degree, indptr=indptr, indices=indices,
                       inc_ptr=indptr.copy(), inc_edge=eid[order].astype(np.int64),
                       inc_side=side[order].astype(np.int64))


def laplacian_extreme_eigenvalues(ga: GraphArrays) -> tuple[float, float]:
    """Return (lambda_2, lambda_max) of the Laplacian of ``ga``.

    Dense ``eigvalsh`` up to 1500 nodes; above that, sparse Lanczos (largest) and shift-invert (second smallest).
    """
    n = ga.n_agents
    if n <= 1500:
        ev = np.linalg.eigvalsh(ga.laplacian())
        return float(ev[1]), float(ev[-1])
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    i, j = ga.edges[:, 0], ga.edges[:, 1]
    adj = sp.coo_matrix((np.ones(2 * len(i)), (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()
    lap = (sp.diags(ga.degree.astype(float)) - adj).tocsc()
    lmax = float(spla.eigsh(lap, k=1, which="LA", return_eigenvectors=False, tol=1e-6)[0])
    small = spla.eigsh(lap, k=2, sigma=-1e-3 * lmax, which="LM", return_eigenvectors=False, tol=1e-8)
    return float(np.sort(small)[1]), lmax


def metropolis_weights(graph: nx.Graph) -> np.ndarray:
    """Return the Metropolis-Hastings mixing matrix W of ``graph``, shape (N, N), float64, in the graph's node order.

    (W1)  W_ij = 1 / (1 + max(d_i, d_j))   for every edge (i, j)
    (W2)  W_ii = 1 - sum_{j in N_i} W_ij,   W_ij = 0 for non-neighbours

    W is symmetric, non-negative and doubly stochastic (rows and columns sum to 1), and each node needs only its
    neighbours' degrees. On a connected graph W has a simple eigenvalue 1 and every other eigenvalue in (-1, 1), so
    the diffusion x <- W x preserves the average of the rows of x and converges to it (Xiao & Boyd, "Fast linear
    iterations for distributed averaging", 2004, eq. 13).

    Parameters
    ----------
    graph : networkx.Graph
        Connected, undirected, simple graph (validated as by :func:`graph_arrays`).

    Returns
    -------
    numpy.ndarray
        W, shape (N, N); row k belongs to ``list(graph.nodes)[k]``.

    Examples
    --------
    >>> metropolis_weights(nx.path_graph(3)).round(3).tolist()
    [[0.667, 0.333, 0.0], [0.333, 0.333, 0.333], [0.0, 0.333, 0.667]]
    """
    ga = graph_arrays(graph)
    n = ga.n_agents
    w = np.zeros((n, n))
    i, j = ga.edges[:, 0], ga.edges[:, 1]
    weight = 1.0 / (1.0 + np.maximum(ga.degree[i], ga.degree[j]))  # (W1)
    w[i, j] = weight
    w[j, i] = weight
    w[np.arange(n), np.arange(n)] = 1.0 - w.sum(axis=1)  # (W2)
    return w
