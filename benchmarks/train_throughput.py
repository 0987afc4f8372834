"""Whole-loop training throughput (environment steps per second) with the paper's N=3 settings.

Prints one table: per algorithm/variant, env-steps/s and the time split of an outer iteration (rollout, value fit,
consensus = local updates + exchanges). The "original-like" row switches off the speed levers that are switches, in
the same run (cold 10-iteration CG for every local solve, double-backward Fisher products, endpoints updated one after
the other), so the gain is a ratio measured under the same machine load. Levers that change no decision and have no
switch stay on in both rows: the KL-first chunked line search and J^T w on cached activations.

    python benchmarks/train_throughput.py            # 1 warm-up + 3 timed iterations per row
    python benchmarks/train_throughput.py --iters 1 --quick
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from marl.algos import make_algorithm
from marl.config import TrainConfig, apply_overrides
from marl.rollout import collect_rollout
from marl.train import make_env_for

ROWS = {
    "matrpo (default)": ("matrpo", []),
    "matrpo original-like": ("matrpo", ["trpo.warm_start_cg=false", "trpo.fisher_form=exact",
                                        "admm.parallel_endpoints=false"]),
    "itrpo": ("itrpo", []),
    "ctrpo": ("ctrpo", []),
}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=3, help="timed outer iterations per row (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first (Numba/torch warm-up)")
    parser.add_argument("--quick", action="store_true", help="only the MATRPO rows")
    args = parser.parse_args()
    rows = {k: v for k, v in ROWS.items() if not args.quick or k.startswith("matrpo")}
    results = {name: measure(algo, ov, args.iters, args.warmup) for name, (algo, ov) in rows.items()}
    base = results.get("matrpo original-like")
    print("Cooperative Navigation N=3, 10,000 env-steps per iteration, 100 ADMM iterations (Table III), "
          f"median of {args.iters} iterations after {args.warmup} warm-up")
    print(f"{'row':24s} {'steps/s':>9s} {'vs orig-like':>12s} {'iter s':>7s} {'rollout':>8s} {'value fit':>9s} "
          f"{'consensus':>9s}")
    for name, r in results.items():
        ratio = r["steps_per_s"] / base["steps_per_s"] if base else float("nan")
        print(f"{name:24s} {r['steps_per_s']:9.0f} {ratio:11.2f}x {r['total']:7.2f} {r['rollout']:8.2f} "
              f"{r['value_fit']:9.2f} {r['consensus']:9.2f}")


if __name__ == "__main__":
    main()
