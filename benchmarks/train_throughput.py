"""Whole-loop training throughput (environment steps per second) with the paper's settings (Table III).

Two tasks: Cooperative Navigation N=3 (100 ADMM edge activations = 200 local updates per outer iteration) and
Treasure Collection N=8 (200 activations = 400 local updates). Prints one table per task: per algorithm/variant,
env-steps/s and the time split of an outer iteration (rollout, value fit, consensus = local updates + exchanges). The
"original-like" row switches off the speed levers that are switches, in the same run (cold 10-iteration CG for every
local solve, double-backward Fisher products, endpoints updated one after the other, value networks fitted one agent
at a time and before the policy step), so the gain is a ratio measured under the same machine load. Levers that
change no decision and have no switch stay on in every row: the KL-first chunked line search, J^T w on cached
activations, and (F4')'s in-place activation factors and reused work buffer.

A first line gives two machine-speed references measured in the same run, so that tables from different days can be
compared: single-thread float32 matrix-product speed (the Fisher products' and line search's kernel) and the cost of
one small torch operation (what the rollout and the value fit's many small steps pay).

    python benchmarks/train_throughput.py            # navigation N=3, 1 warm-up + 3 timed iterations per row
    python benchmarks/train_throughput.py --iters 1 --quick
    python benchmarks/train_throughput.py --task treasure --quick    # Treasure Collection N=8, MATRPO rows
    python benchmarks/train_throughput.py --task all
    python benchmarks/train_throughput.py --profile --task treasure [--set admm.parallel_endpoints=false]

``--profile`` instead times the phases of MATRPO's local updates (thread CPU time, so that other jobs on the machine
blur it less than wall time) over ``--iters`` outer iterations after the warm-up: Fisher products and CG (M3), the
J^T w right-hand side (M2), the line search's KL forwards and Lagrangians (M5), the rest of each update ((M1), the
log-ratio sent, conversions, Python), the exchanges (M7), and the idle time two endpoint threads would have from
unequal update lengths.

Each row's ratio is to the "original-like" row of the same task, measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import defaultdict

import torch

import marl.algos.matrpo as matrpo_module
from consensus_admm import EdgeConsensus
from marl.algos import make_algorithm
from marl.algos.evaluator import PolicyEvaluator
from marl.config import TrainConfig, apply_overrides
from marl.rollout import collect_rollout
from marl.env_factory import make_env_for
from trpo_core import FisherVectorProduct

ROWS = {
    "matrpo (default)": ("matrpo", []),
    "matrpo, sequential value fit": ("matrpo", ["concurrent_value_fit=false"]),
    "matrpo, per-agent value fits, seq.": ("matrpo", ["stack_value_fits=false", "concurrent_value_fit=false"]),
    "matrpo original-like": ("matrpo", ["trpo.warm_start_cg=false", "trpo.fisher_form=exact",
                                        "admm.parallel_endpoints=false", "stack_value_fits=false",
                                        "concurrent_value_fit=false"]),
    "itrpo": ("itrpo", []),
    "ctrpo": ("ctrpo", []),
}


# task -> (title, overrides selecting it; ADMM iterations, delta/N and beta follow from Table III)
TASKS = {
    "navigation": ("Cooperative Navigation N=3, 10,000 env-steps per iteration, 100 ADMM iterations (Table III)",
                   ["env.name=cooperative_navigation", "env.n_agents=3"]),
    "treasure": ("Treasure Collection N=8, 10,000 env-steps per iteration, 200 ADMM iterations (Table III)",
                 ["env.name=treasure_collection", "env.n_agents=8"]),
}
# Rows measured on Treasure Collection (the navigation table keeps every row above).
TREASURE_ROWS = ("matrpo (default)", "matrpo original-like", "itrpo", "ctrpo")


def measure(algo_name: str, overrides: list[str], iters: int, warmup: int) -> dict[str, float]:
    cfg = apply_overrides(TrainConfig(algo=algo_name), overrides)
    torch.set_num_threads(cfg.torch_threads or torch.get_num_threads())
    venv = make_env_for(cfg)
    algo = make_algorithm(cfg.algo, venv.obs_dims, venv.n_actions, cfg)
    obs = venv.reset(seed=cfg.seed)
    rows = []
    for it in range(warmup + iters):
        t0 = time.perf_counter()
        rollout, obs = collect_rollout(venv, algo.act, obs, cfg.steps_per_env)
        t1 = time.perf_counter()
        m = algo.update(rollout, it)
        t2 = time.perf_counter()
        if it >= warmup:
            rows.append({"total": t2 - t0, "rollout": t1 - t0, "update": t2 - t1,
                         "value_fit": m.get("time/value_fit", float("nan")),
                         "consensus": m.get("time/consensus", float("nan"))})
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    med["steps_per_s"] = cfg.steps_per_iter / med["total"]
    return med


class PhaseTimer:
    """Thread-CPU seconds and call counts of the phases of MATRPO's local update, by patching the functions."""

    PHASES = [
        ("CG incl. products (M3)", matrpo_module, "natural_gradient_direction"),
        ("  of which Fisher products", FisherVectorProduct, "__call__"),
        ("J^T w right-hand side (M2)", FisherVectorProduct, "vjp"),
        ("line search incl. KL (M5)", matrpo_module, "backtracking_line_search"),
        ("  of which KL forwards", PolicyEvaluator, "kl_within"),
        ("local update total", matrpo_module.MATRPOAgent, "local_update"),
        ("exchange (M7, main thread)", EdgeConsensus, "exchange"),
    ]

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.updates: list[tuple[float, float]] = []  # (start, thread CPU) of each local update
        self._lock = threading.Lock()
        self._saved = []
        for label, owner, name in self.PHASES:
            original = getattr(owner, name)
            self._saved.append((owner, name, original))
            setattr(owner, name, self._timed(label, original))

    def _timed(self, label, fn):
        def run(*args, **kwargs):
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.thread_time() - cpu
                with self._lock:
                    self.cpu[label] += spent
                    self.calls[label] += 1
                    if label == "local update total":
                        self.updates.append((start, spent))
        return run

    def reset(self) -> None:
        self.cpu.clear()
        self.calls.clear()
        self.updates.clear()

    def restore(self) -> None:
        for owner, name, original in self._saved:
            setattr(owner, name, original)

    def report(self, iters: int) -> None:
        total = self.cpu["local update total"]
        n = max(self.calls["local update total"], 1)
        rows = [(label, self.cpu[label], self.calls[label]) for label, _, _ in self.PHASES]
        rest = total - self.cpu["CG incl. products (M3)"] - self.cpu["J^T w right-hand side (M2)"] \
            - self.cpu["line search incl. KL (M5)"]
        rows.insert(5, ("rest of the update (M1, M6, Python)", rest, n))
        print(f"{n // iters} local updates per outer iteration; thread CPU per outer iteration, and per update")
        print(f"{'phase':38s} {'calls/it':>8s} {'CPU s/it':>9s} {'ms/update':>9s} {'share':>6s}")
        for label, cpu, calls in rows:
            print(f"{label:38s} {calls / iters:8.0f} {cpu / iters:9.2f} {1e3 * cpu / n:9.2f} {cpu / total:6.1%}")
        ups = sorted(self.updates)
        pairs = [(ups[k][1], ups[k + 1][1]) for k in range(0, len(ups) - 1, 2)]
        busy = sum(a + b for a, b in pairs)
        idle = sum(2 * max(a, b) - a - b for a, b in pairs)
        print(f"endpoint pairs in two threads: idle from unequal update lengths {idle / (busy + idle):.1%} of "
              "thread time")


def profile(task: str, overrides: list[str], iters: int, warmup: int) -> None:
    timer = PhaseTimer()
    try:
        cfg = apply_overrides(TrainConfig(algo="matrpo"), TASKS[task][1] + overrides)
        torch.set_num_threads(cfg.torch_threads or torch.get_num_threads())
        venv = make_env_for(cfg)
        algo = make_algorithm(cfg.algo, venv.obs_dims, venv.n_actions, cfg)
        obs = venv.reset(seed=cfg.seed)
        wall = cpu = consensus = 0.0
        for it in range(warmup + iters):
            rollout, obs = collect_rollout(venv, algo.act, obs, cfg.steps_per_env)
            if it == warmup:
                timer.reset()
            t, c = time.perf_counter(), time.process_time()
            m = algo.update(rollout, it)
            if it >= warmup:
                wall += time.perf_counter() - t
                cpu += time.process_time() - c
                consensus += m["time/consensus"]
        print(f"{TASKS[task][0]}; overrides {overrides or 'none'}; {iters} iteration(s) after {warmup} warm-up")
        print(f"per outer iteration: update wall {wall / iters:.2f} s, process CPU {cpu / iters:.2f} s, "
              f"consensus wall {consensus / iters:.2f} s")
        timer.report(iters)
    finally:
        timer.restore()


def machine_reference() -> tuple[float, float]:
    """(GFLOP/s of a [2000, 128] x [128, 128] float32 product, microseconds per small op), one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    a, b = torch.randn(2000, 128), torch.randn(128, 128)
    small = torch.randn(10, 5)
    for _ in range(20):
        a @ b
    t = time.perf_counter()
    for _ in range(200):
        a @ b
    gflops = 200 * 2 * 2000 * 128 * 128 / (time.perf_counter() - t) / 1e9
    t = time.perf_counter()
    for _ in range(20000):
        small.exp()
    us = (time.perf_counter() - t) / 20000 * 1e6
    torch.set_num_threads(threads)
    return gflops, us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=3, help="timed outer iterations per row (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first (Numba/torch warm-up)")
    parser.add_argument("--quick", action="store_true", help="only the MATRPO rows")
    parser.add_argument("--task", choices=(*TASKS, "all"), default="navigation",
                        help="navigation (N=3, default), treasure (N=8) or all")
    parser.add_argument("--profile", action="store_true",
                        help="time the phases of MATRPO's local updates instead of the table (one task)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for --profile (repeatable)")
    args = parser.parse_args()
    if args.profile:
        gflops, op_us = machine_reference()
        print(f"machine reference (1 thread): matmul {gflops:.0f} GFLOP/s, small op {op_us:.1f} us")
        profile("navigation" if args.task == "all" else args.task, args.set, args.iters, args.warmup)
        return
    tasks = list(TASKS) if args.task == "all" else [args.task]
    gflops, op_us = machine_reference()
    tables = {}
    for task in tasks:
        rows = {k: v for k, v in ROWS.items() if (not args.quick or k.startswith("matrpo"))
                and (task == "navigation" or k in TREASURE_ROWS)}
        tables[task] = {name: measure(algo, TASKS[task][1] + ov, args.iters, args.warmup)
                        for name, (algo, ov) in rows.items()}
    gflops_after, op_us_after = machine_reference()
    print("value fit: seconds the value regression took; with concurrent_value_fit (default) it runs alongside the "
          "policy step, so the columns do not add up to the iteration")
    print(f"machine reference (1 thread, before / after the rows): matmul {gflops:.0f} / {gflops_after:.0f} GFLOP/s, "
          f"small op {op_us:.1f} / {op_us_after:.1f} us")
    for task, results in tables.items():
        base = results.get("matrpo original-like")
        print(f"\n{TASKS[task][0]}, median of {args.iters} iterations after {args.warmup} warm-up")
        print(f"{'row':36s} {'steps/s':>9s} {'vs orig-like':>12s} {'iter s':>7s} {'rollout':>8s} {'value fit':>9s} "
              f"{'consensus':>9s}")
        for name, r in results.items():
            ratio = r["steps_per_s"] / base["steps_per_s"] if base else float("nan")
            print(f"{name:36s} {r['steps_per_s']:9.0f} {ratio:11.2f}x {r['total']:7.2f} {r['rollout']:8.2f} "
                  f"{r['value_fit']:9.2f} {r['consensus']:9.2f}")


if __name__ == "__main__":
    main()
