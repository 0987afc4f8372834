"""MATRPO with one process per agent (``--backend mpi``) vs in-process, and a measured-cost model for a cluster.

    python benchmarks/matrpo_mpi.py [--iters 2] [--ns 3 6 12] [--algo fdmarl --skip-model]

1. Cooperative Navigation N=3, the paper's settings (10,000 env-steps per iteration, 100 edge activations): env-steps
   per second of the whole training loop, in-process (``python -m marl train``) and with ``--backend mpi`` under
   ``mpiexec -n 4`` on this machine, 1 warm-up + ``--iters`` timed iterations each (median of
   ``time/steps_per_second``; one torch thread per process). ``--algo fdmarl``: the same for FDMARL (its diffusion
   exchanges the consensus networks' parameters after every critic step).
2. Cost model of one outer iteration on a cluster with one core per agent, for N in ``--ns`` (ring, cyclic edge
   order, Table III activations K: 100 for N=3, 150 for N=6, and the nearest row, 150, for N=12), from quantities
   measured here on one in-process iteration per N (endpoints one after the other, value fit not overlapped):

       T = rollout + local + critical_path(K) x (u + c)

   rollout: the measured in-process rollout (an upper bound: it runs the N policy forwards one after the other);
   local: one agent's GAE + value fit + preparation (measured total / N: the agents run in parallel);
   u: one endpoint update (measured consensus time / 2K', K' = 4 |E| activations in the measuring run);
   c: one exchange of the N*M float64 log-ratio vector between two processes (Sendrecv ping-pong, mpiexec -n 2);
   critical_path(K): activations on the longest dependency chain of the schedule (an activation starts when both of
   its endpoints are free; each takes u + c), computed from the schedule itself. Assumptions: every agent on its own
   core, messages as fast as here (shared memory; a network adds latency and bandwidth limits to c), the advantage
   normalisation's consensus (a few hundred small messages) and logging neglected.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from marl.algos.matrpo import communication_graph
from marl.config import TrainConfig, apply_overrides
from marl.train import train

ROOT = Path(__file__).resolve().parents[1]


def _rows(run_dir):
    with open(Path(run_dir) / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _median(rows, key, skip=1):
    return statistics.median(float(r.get(key, "nan")) for r in rows[skip:])


def whole_loop(iters: int, algo: str = "matrpo") -> list[tuple[str, dict]]:
    """Env-steps/s of ``algo`` (MATRPO or FDMARL) N=3 (paper settings), in-process and --backend mpi."""
    sets = [f"total_steps={10_000 * (iters + 1)}", "checkpoint_every=1000"]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = apply_overrides(TrainConfig(algo=algo), sets)
        train(cfg, Path(tmp) / "inprocess", progress=False, tensorboard=False)
        out.append(("in-process (1 process, 2 endpoint threads)" if algo == "matrpo" else "in-process (1 process)",
                    _rows(Path(tmp) / "inprocess")))
        mpiexec = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        cmd = [mpiexec, "-n", "4", sys.executable, "-m", "marl", "train", "--backend", "mpi", "--no-progress",
               "--algo", algo, "--out", str(Path(tmp) / "mpi")] + [a for kv in sets for a in ("--set", kv)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(proc.stdout + proc.stderr)
        out.append(("--backend mpi (world + 3 agent processes)", _rows(Path(tmp) / "mpi")))
    return out


def measure_local(n_agents: int) -> dict:
    """One in-process iteration of MATRPO N with 4|E| activations, endpoints sequential, value fit not overlapped."""
    g = communication_graph("ring", n_agents)
    k_small = 4 * g.number_of_edges()
    cfg = apply_overrides(TrainConfig(), [f"env.n_agents={n_agents}", "total_steps=10000", f"admm.iterations={k_small}",
                                          "admm.parallel_endpoints=false", "concurrent_value_fit=false",
                                          "checkpoint_every=1000"])
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, Path(tmp) / "run", progress=False, tensorboard=False)
        (row,) = _rows(Path(tmp) / "run")
    k_table = dataclasses.replace(cfg, admm=dataclasses.replace(cfg.admm, iterations=None)).admm_iterations
    return dict(n=n_agents, edges=g.number_of_edges(), k=k_table, rollout=float(row["time/rollout"]),
                local=(float(row["time/advantages"]) + float(row["time/value_fit"]) + float(row["time/prepare"]))
                / n_agents,
                u=float(row["time/consensus"]) / (2 * k_small), floats=n_agents * cfg.steps_per_iter)


def critical_path(n_agents: int, k: int, order: str = "cyclic", seed: int = 0) -> int:
    """Activations on the longest chain of k activations of the schedule on the ring (unit-time activations)."""
    from consensus_admm import EdgeConsensus

    g = communication_graph("ring", n_agents)
    nodes = nx_ordered(g, n_agents)
    eng = EdgeConsensus(nodes, 1, schedule=order, seed=seed)
    free = np.zeros(n_agents, np.int64)
    for _ in range(k):
        i, j = eng.edges[eng.next_edge()]
        free[i] = free[j] = max(free[i], free[j]) + 1
    return int(free.max())


def nx_ordered(g, n):
    import networkx as nx

    h = nx.Graph()
    h.add_nodes_from(range(n))
    h.add_edges_from(g.edges)
    return h


def message_seconds(n_floats: int) -> float:
    """Sendrecv ping-pong of n float64 between two processes (benchmarks/admm_mpi.py's worker)."""
    spec = importlib.util.spec_from_file_location("admm_mpi", ROOT / "benchmarks" / "admm_mpi.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return 1.0 / mod.mpi(2, kind="pingpong", dim=n_floats, reps=200)


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--ns", type=int, nargs="+", default=[3, 6, 12])
    ap.add_argument("--skip-loop", action="store_true")
    ap.add_argument("--algo", choices=("matrpo", "fdmarl"), default="matrpo", help="of the whole-loop table")
    ap.add_argument("--skip-model", action="store_true", help="no cluster cost model (MATRPO's)")
    args = ap.parse_args(argv)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_loop:
        print(f"\n| {args.algo.upper()} N=3, paper settings | env-steps/s | s / iteration | rollout | update | "
              "consensus |")
        print("|---|---|---|---|---|---|")
        for name, rows in whole_loop(args.iters, args.algo):
            sps = _median(rows, "time/steps_per_second")
            print(f"| {name} | {sps:,.0f} | {10_000 / sps:.2f} | {_median(rows, 'time/rollout'):.2f} | "
                  f"{_median(rows, 'time/update'):.2f} | {_median(rows, 'time/consensus'):.2f} |"
                  .replace("| nan |", "| n/a |"))  # FDMARL logs no consensus time
    if args.skip_model:
        return
    print("\n| N | edges | K | rollout s | local s | u s | c s | critical path (cyclic / random) | "
          "cluster s / iteration | cluster env-steps/s | in-process here, s / iteration (K, extrapolated) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.ns:
        m = measure_local(n)
        c = message_seconds(m["floats"])
        cp, cp_rand = critical_path(n, m["k"]), critical_path(n, m["k"], "random")
        t_cluster = m["rollout"] + m["local"] + cp * (m["u"] + c)
        t_here = m["rollout"] + n * m["local"] + m["k"] * m["u"]  # two endpoint threads on two cores
        print(f"| {n} | {m['edges']} | {m['k']} | {m['rollout']:.2f} | {m['local']:.2f} | {m['u'] * 1e3:.1f} ms | "
              f"{c * 1e3:.2f} ms | {cp} / {cp_rand} | {t_cluster:.2f} | {10_000 / t_cluster:,.0f} | {t_here:.2f} |")


if __name__ == "__main__":
    main()
