"""Whole-loop MAPPO throughput: ours on Cooperative Navigation N=3 against BenchMARL's MAPPO, back to back.

Rows, all in one run under the same machine load:

* ours, MAPPO defaults (MAPPO's MPE hyperparameters on the paper's 10,000-step iterations: 10 epochs x 3 minibatches);
* ours, BenchMARL's batch settings: 6,000 env-steps per iteration from 10 environments, 45 epochs x 15 minibatches
  of 400 (675 Adam steps per iteration), 2 x 256 Tanh networks (``mappo.network=paper``) - the row the ratio uses;
* ours, FDMARL defaults;
* BenchMARL 1.5.2 MAPPO (``benchmarl.run algorithm=mappo task=pettingzoo/simple_spread``, defaults: 6,000 frames per
  iteration from 10 envs, 45 x 15 minibatches of 400, 2 x 256 Tanh, max_cycles 100, categorical actions, CPU), run
  as a subprocess with the interpreter of its own virtual environment (``--benchmarl-python``). Its frames/s is the
  frames collected divided by the iteration times it logs (collection + training), first iteration excluded; one
  intra-op thread (``OMP_NUM_THREADS=1``), as our rows.

A BenchMARL frame is one environment step of all agents, the same unit as our env-step.

    python benchmarks/mappo_throughput.py --benchmarl-python /work/venv-benchmarl/bin/python
    python benchmarks/mappo_throughput.py --iters 2            # ours only
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from train_throughput import measure  # the same whole-loop timing as the MATRPO rows (benchmarks/ is on sys.path)

BENCHMARL_BATCH = ["steps_per_iter=6000", "env.n_envs=10", "mappo.epochs=45", "mappo.n_minibatches=15",
                   "mappo.network=paper", "hidden_sizes=256,256", "activation=tanh"]
ROWS = {
    "ours: mappo, defaults (10k steps/iter)": ("mappo", []),
    "ours: mappo, BenchMARL batch settings": ("mappo", BENCHMARL_BATCH),
    "ours: fdmarl, defaults": ("fdmarl", []),
}


def _scalar(run: Path, name: str) -> list[float]:
    files = list(run.rglob(f"scalars/{name}.csv"))
    if not files:
        return []
    with open(files[0], newline="") as fh:
        return [float(row[1]) for row in csv.reader(fh) if row and row[0].strip().lstrip("-").isdigit()]


def measure_benchmarl(python: str, iters: int, threads: int = 1) -> dict[str, float]:
    """BenchMARL's MAPPO for 1 + ``iters`` iterations of 6,000 frames; medians of its logged per-iteration timers."""
    frames = 6000 * (iters + 1)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [python, "-m", "benchmarl.run", "algorithm=mappo", "task=pettingzoo/simple_spread",
               f"experiment.max_n_frames={frames}", "experiment.loggers=[csv]", "experiment.render=False",
               "experiment.prefer_continuous_actions=False", "experiment.evaluation=False",
               f"hydra.run.dir={tmp}", f"experiment.save_folder={tmp}"]
        # One intra-op thread, as our rows (torch_threads=1): on a shared, oversubscribed host BenchMARL's default two
        # OpenMP threads ran 100x slower than on a quiet one (6,000 frames in 1,374 s).
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        start = time.perf_counter()
        subprocess.run(cmd, cwd=tmp, check=True, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        run = Path(tmp)
        total = _scalar(run, "timers_iteration_time")[1:]
        collect = _scalar(run, "timers_collection_time")[1:]
        train = _scalar(run, "timers_training_time")[1:]
    if not total:
        raise RuntimeError("BenchMARL wrote no timers_iteration_time.csv; check its output folder layout")
    med = {"total": statistics.median(total), "rollout": statistics.median(collect), "update": statistics.median(train)}
    med["steps_per_s"] = 6000 / med["total"]
    med["process_wall_s"] = wall
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=3, help="timed iterations per row (after 1 warm-up)")
    parser.add_argument("--benchmarl-python", help="python of a virtual environment with benchmarl installed")
    args = parser.parse_args()
    results = {name: measure(algo, ov, args.iters, warmup=1) for name, (algo, ov) in ROWS.items()}
    if args.benchmarl_python:
        results["BenchMARL 1.5.2: mappo, pettingzoo/simple_spread"] = measure_benchmarl(args.benchmarl_python,
                                                                                      args.iters)
    print(f"{'row':<52} {'env-steps/s':>12} {'s/iter':>8} {'rollout':>8} {'update':>8}")
    for name, r in results.items():
        print(f"{name:<52} {r['steps_per_s']:>12,.0f} {r['total']:>8.2f} {r['rollout']:>8.2f} {r['update']:>8.2f}")
    ref = results.get("BenchMARL 1.5.2: mappo, pettingzoo/simple_spread")
    if ref is not None:
        ours = results["ours: mappo, BenchMARL batch settings"]["steps_per_s"]
        print(f"ratio ours (BenchMARL batch settings) / BenchMARL: {ours / ref['steps_per_s']:.1f}x "
              f"(BenchMARL process wall {ref['process_wall_s']:.0f} s incl. start-up)")


if __name__ == "__main__":
    main()
