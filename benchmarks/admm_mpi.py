"""Edge activations over MPI (one process per agent) vs in-process, at dim 16 and dim 30,000 (results: BENCHMARKS.md).

    python benchmarks/admm_mpi.py [--quick] [--dims 16 30000]

For each vector length n (f_i = 0.5 ||x - a_i||^2, fixed penalty, async Wei-Ozdaglar, uniform random schedule):

* in-process: ``consensus_admm.solve(method="async")`` on the same graph, the reference of every ratio;
* MPI, 2 processes on one edge (``path_graph(2)``): every activation waits for the other endpoint, so the time per
  activation is the latency of one (A1) + exchange + (A2)-(A3) round;
* MPI, 4 processes on a 4-cycle: activations of the two non-adjacent edge pairs can overlap (throughput);
* MPI transport floor: ``Sendrecv`` of n float64 between 2 processes (ping-pong, no ADMM work);
* sync: iterations per second of the 4-cycle, in-process vs MPI (one neighbourhood collective per iteration);
* "heavy yield": the same with ``MPIR_CVAR_ENABLE_HEAVY_YIELD=1`` (MPICH sleeps instead of spinning while waiting).

MPI runs use ``stopping="budget"`` (no stopping checks), the in-process runs eps = 0 (never stop early), so both do
the same activations. Timings exclude start-up and Numba cache loading (every configuration is warmed up first);
MPI times are the slowest rank's ``solve_time``. Each MPI configuration is launched as
``mpiexec -n P python benchmarks/admm_mpi.py --worker ...`` by this script.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np

from consensus_admm import ADMMSettings, Averaging, solve

ROOT = Path(__file__).resolve().parents[1]
_MARK = "RESULT "


def _graph(name):
    return nx.path_graph(2) if name == "edge" else nx.cycle_graph(4)


def _targets(n_agents, dim):
    return np.random.default_rng(0).normal(size=(n_agents, dim))


def _settings(method, epochs):
    return ADMMSettings(method=method, penalty=1.0, eps_abs=0.0, eps_rel=0.0, max_iter=epochs)


def in_process(graph_name, method, dim, epochs):
    """Activations (async) or iterations (sync) per second of the in-process solve."""
    g = _graph(graph_name)
    objs = [Averaging(a) for a in _targets(g.number_of_nodes(), dim)]
    solve(objs, g, _settings(method, 2), seed=0)  # warm-up (Numba cache)
    best = np.inf
    for _ in range(3):
        res = solve(objs, g, _settings(method, epochs), seed=0)
        best = min(best, res.solve_time)
    count = res.n_activations if method == "async" else res.n_iter
    return count / best


def _worker(cfg):
    from mpi4py import MPI

    from consensus_admm.mpi import solve as solve_mpi

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    if cfg["kind"] == "pingpong":
        buf = np.ones(cfg["dim"])
        out = np.empty_like(buf)
        other = 1 - rank
        for _ in range(10):
            comm.Sendrecv(buf, dest=other, recvbuf=out, source=other)
        comm.Barrier()
        t = time.perf_counter()
        for _ in range(cfg["reps"]):
            comm.Sendrecv(buf, dest=other, recvbuf=out, source=other)
        per = (time.perf_counter() - t) / cfg["reps"]
        rate = 1.0 / comm.allreduce(per, op=MPI.MAX)  # benchmark bookkeeping only
    else:
        g = _graph(cfg["graph"])
        obj = Averaging(_targets(g.number_of_nodes(), cfg["dim"])[rank])
        solve_mpi(obj, g, _settings(cfg["method"], 2), stopping="budget")  # warm-up
        best = np.inf
        for _ in range(3):
            comm.Barrier()
            res = solve_mpi(obj, g, _settings(cfg["method"], cfg["epochs"]), stopping="budget")
            best = min(best, comm.allreduce(res.solve_time, op=MPI.MAX))
        count = res.n_activations if cfg["method"] == "async" else res.n_iter
        rate = count / best
    if rank == 0:
        print(_MARK + json.dumps({"rate": rate}), flush=True)


# MPICH sleeps instead of spinning while it waits: helps when processes outnumber cores, costs latency otherwise.
_HEAVY_YIELD = {"MPIR_CVAR_ENABLE_HEAVY_YIELD": "1"}


def mpi(n_procs, extra_env=None, **cfg):
    mpiexec = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    if mpiexec is None:
        raise SystemExit("mpiexec not found: pip install mpich mpi4py")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", **(extra_env or {}))
    proc = subprocess.run([mpiexec, "-n", str(n_procs), sys.executable, __file__, "--worker", json.dumps(cfg)],
                          capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout + proc.stderr)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(_MARK))
    return json.loads(line[len(_MARK):])["rate"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[16, 30_000])
    ap.add_argument("--quick", action="store_true", help="smaller budgets")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(json.loads(args.worker))
        return
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    for dim in args.dims:
        scale = (0.2 if args.quick else 1.0) * (1.0 if dim <= 1000 else 0.03)
        e2 = max(int(10_000 * scale), 20)  # epochs on one edge (1 activation each)
        e4 = max(int(2_000 * scale), 5)  # epochs on the 4-cycle (4 activations each)
        ref2 = in_process("edge", "async", dim, e2)
        ref4 = in_process("cycle", "async", dim, e4)
        rows = [
            ("in-process async, 1 edge (2 agents)", ref2, ref2),
            ("MPI async, 1 edge, 2 processes (latency)", mpi(2, kind="solve", graph="edge", method="async",
                                                          dim=dim, epochs=e2), ref2),
            ("MPI transport floor: Sendrecv ping-pong", mpi(2, kind="pingpong", dim=dim, reps=e2), ref2),
            ("in-process async, 4-cycle", ref4, ref4),
            ("MPI async, 4-cycle, 4 processes", mpi(4, kind="solve", graph="cycle", method="async", dim=dim,
                                                    epochs=e4), ref4),
            ("MPI async, 4-cycle, 4 processes, heavy yield", mpi(4, _HEAVY_YIELD, kind="solve", graph="cycle",
                                                                 method="async", dim=dim, epochs=e4), ref4),
        ]
        refs = in_process("cycle", "sync", dim, e4)
        rows += [("in-process sync, 4-cycle (iterations/s)", refs, refs),
                 ("MPI sync, 4-cycle, 4 processes (iterations/s)", mpi(4, kind="solve", graph="cycle",
                                                                       method="sync", dim=dim, epochs=e4), refs)]
        print(f"\n### dim = {dim:,} ({8 * dim:,} B per message)\n")
        print("| variant | per second | us each | x in-process |")
        print("|---|---|---|---|")
        for name, rate, ref in rows:
            print(f"| {name} | {rate:,.0f} | {1e6 / rate:,.1f} | {rate / ref:.3f} |")


if __name__ == "__main__":
    main()
