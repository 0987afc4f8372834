"""Distributed lasso with one MPI process per agent: each process reads only its own data shard.

N agents each hold m private measurements b_k = A_k theta + noise of a sparse parameter theta in R^n (m < n, so no
agent can identify theta alone). They solve

    minimize_theta  sum_k [ 0.5 ||A_k theta - b_k||^2 + (lam / N) ||theta||_1 ]

by consensus ADMM over a communication graph, one process per agent, talking only to graph neighbours
(``consensus_admm.mpi.solve``). Two steps:

    python examples/distributed_lasso.py shards DIR [--agents 4] [--dim 30] [--rows 10] [--seed 0]
    mpiexec -n 4 python examples/distributed_lasso.py solve DIR [--method sync|async] [--check]

``shards`` writes ``DIR/graph.json`` (the public topology and lam) and one private file ``DIR/shard_<k>.npz`` per
agent (a stand-in for data that already lives on each machine). ``solve`` on rank r opens ``graph.json`` and
``shard_<r>.npz`` only. ``--check`` is a verification step outside the algorithm: afterwards rank 0 reads every
shard, runs the in-process ``consensus_admm.solve`` on the same problem and settings, and reports the largest
difference from the MPI estimates (gathered with ``comm.gather`` for this report only).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import networkx as nx
import numpy as np

from consensus_admm import ADMMSettings, Lasso


def make_shards(out: Path, n_agents: int, dim: int, rows: int, seed: int) -> None:
    """Write the public graph and one private shard per agent."""
    rng = np.random.default_rng(seed)
    theta = np.zeros(dim)
    support = rng.choice(dim, 4, replace=False)
    theta[support] = rng.choice([-1, 1], 4) * rng.uniform(1, 3, 4)
    graph = nx.connected_watts_strogatz_graph(n_agents, k=min(4, n_agents - 1), p=0.3, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    A_all = []
    b_all = []
    for k in range(n_agents):
        rk = np.random.default_rng([seed, k])
        A = rk.normal(size=(rows, dim)) / np.sqrt(rows)
        b = A @ theta + 0.05 * rk.normal(size=rows)
        np.savez(out / f"shard_{k}.npz", A=A, b=b)
        A_all.append(A)
        b_all.append(b)
    # lam = 5% of lam_max: a one-off public choice made when the data were collected (it needs all shards).
    lam = 0.05 * float(np.max(np.abs(np.concatenate(A_all).T @ np.concatenate(b_all))))
    meta = dict(n_agents=n_agents, dim=dim, edges=[list(e) for e in graph.edges], lam=lam,
                theta=theta.tolist())
    (out / "graph.json").write_text(json.dumps(meta))
    print(f"wrote {n_agents} shards ({rows} x {dim} each) and graph.json ({graph.number_of_edges()} edges) to {out}")


def _load_graph(data: Path):
    meta = json.loads((data / "graph.json").read_text())
    graph = nx.Graph()
    graph.add_nodes_from(range(meta["n_agents"]))
    graph.add_edges_from(tuple(e) for e in meta["edges"])
    return graph, meta


def _objective(data: Path, k: int, lam: float, n_agents: int) -> Lasso:
    shard = np.load(data / f"shard_{k}.npz")
    return Lasso(shard["A"], shard["b"], l1=lam / n_agents)


def run(data: Path, method: str, check: bool, seed: int) -> int:
    from mpi4py import MPI

    from consensus_admm.mpi import solve

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    graph, meta = _load_graph(data)
    objective = _objective(data, rank, meta["lam"], meta["n_agents"])  # this agent's shard only
    settings = ADMMSettings(method=method, penalty=1.0, eps_abs=1e-8, eps_rel=1e-8, max_iter=5000)
    t = time.perf_counter()
    res = solve(objective, graph, settings, seed=seed)
    wall = time.perf_counter() - t
    unit = "epochs" if method == "async" else "iterations"
    theta = np.asarray(meta["theta"])
    print(f"[rank {rank}] {res.status.value} after {res.n_iter} {unit} in {wall:.2f} s; "
          f"||x - theta||_inf = {np.max(np.abs(res.x - theta)):.3f}; sent {res.extra['bytes_sent']:,} B "
          f"to {len(res.edges)} neighbour(s)", flush=True)
    if not check:
        return 0 if res.success else 1
    xs = comm.gather(res.x, root=0)  # verification only
    if rank == 0:
        from consensus_admm import solve as solve_in_process

        objectives = [_objective(data, k, meta["lam"], meta["n_agents"]) for k in range(meta["n_agents"])]
        ref = solve_in_process(objectives, graph, settings, seed=seed)
        diff = max(float(np.max(np.abs(x - ref.x[k]))) for k, x in enumerate(xs))
        print(f"check: in-process solve {ref.status.value} after {ref.n_iter} {unit}; "
              f"max_k ||x_k(MPI) - x_k(in-process)||_inf = {diff:.1e}")
        print(f"support of the estimate {np.flatnonzero(np.abs(res.x) > 1e-6).tolist()}, "
              f"true {np.flatnonzero(theta).tolist()}")
        ok = res.success and diff <= 1e-12
        print("check passed" if ok else "check FAILED")
        return 0 if ok else 1
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sh = sub.add_parser("shards", help="write graph.json and one data shard per agent")
    sh.add_argument("data", type=Path)
    sh.add_argument("--agents", type=int, default=4)
    sh.add_argument("--dim", type=int, default=30)
    sh.add_argument("--rows", type=int, default=10)
    sh.add_argument("--seed", type=int, default=0)
    so = sub.add_parser("solve", help="run under mpiexec -n <agents>")
    so.add_argument("data", type=Path)
    so.add_argument("--method", choices=("sync", "async"), default="sync")
    so.add_argument("--seed", type=int, default=0)
    so.add_argument("--check", action="store_true", help="compare with the in-process solve (reads all shards)")
    args = ap.parse_args(argv)
    if args.cmd == "shards":
        make_shards(args.data, args.agents, args.dim, args.rows, args.seed)
        return 0
    return run(args.data, args.method, args.check, args.seed)


if __name__ == "__main__":
    raise SystemExit(main())
