"""Environment throughput: mpe2 vs our PettingZoo environments vs our batched engine (results in BENCHMARKS.md).

    python benchmarks/env_throughput.py                 # full table (about 3 minutes)
    python benchmarks/env_throughput.py --quick         # fewer, shorter repetitions
    python benchmarks/env_throughput.py --json out.json # also write the raw numbers

One env-step = all N agents act once. Every loop uses pre-sampled uniformly random actions (64 action sets cycled)
and includes episode resets (horizon ``--max-cycles``, default the paper's 100; the batched engine auto-resets).
Each figure is the median [min, max] over ``--repeats`` windows of ``--seconds`` after a warm-up, all measured in
this one run, so the ratios to mpe2 (same N, same machine, same moment) are what to read: the machines are shared.

Rows, for Cooperative Navigation N = 3, 6, 12:
  mpe2     ``mpe2.simple_spread_v3.parallel_env`` (single environment, the reference)
  pz       our ``cooperative_navigation_v0.parallel_env`` (single environment)
  batch-B  our batched engine ``make_vector_env(...)`` with B = 1, 32, 1024 environments (serial Numba kernel)
  batch-B (2 threads)  the same at B = 1024 with ``parallel=True``
and Treasure Collection N = 8 against ``mpe2.collect_treasure_v1``.

Numba compile time is excluded (every kernel runs once before timing) and reported separately: a fresh interpreter
with an empty ``NUMBA_CACHE_DIR`` (cold compile), then a second one reusing that cache (cache load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable

import numpy as np

warnings.filterwarnings("ignore")

N_ACTION_SETS = 64


def measure(run_chunk: Callable[[], int], seconds: float, repeats: int, warmup: float) -> list[float]:
    """Return ``repeats`` rates (env-steps/s), each from calling ``run_chunk`` for about ``seconds``."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < warmup:
        run_chunk()
    rates = []
    for _ in range(repeats):
        done = 0
        t0 = time.perf_counter()
        while True:
            done += run_chunk()
            dt = time.perf_counter() - t0
            if dt >= seconds:
                break
        rates.append(done / dt)
    return rates


def pettingzoo_chunk(env, seed: int = 0) -> Callable[[], int]:
    """A chunk = N_ACTION_SETS parallel steps of a PettingZoo env, resetting whenever the episode ended."""
    env.reset(seed=seed)
    agents = list(env.possible_agents)
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(N_ACTION_SETS):
        sets.append({a: int(rng.integers(env.action_space(a).n)) for a in agents})

    def run() -> int:
        for acts in sets:
            if not env.agents:
                env.reset()
            env.step(acts)
        return N_ACTION_SETS

    return run


def batched_chunk(venv, seed: int = 0) -> Callable[[], int]:
    """A chunk = N_ACTION_SETS batched steps (B env-steps each)."""
    venv.reset(seed=seed)
    rng = np.random.default_rng(seed)
    sets = [venv.sample_actions(rng) for _ in range(N_ACTION_SETS)]

    def run() -> int:
        for acts in sets:
            venv.step(acts)
        return N_ACTION_SETS * venv.n_envs

    return run


def summarize(rates: list[float]) -> dict:
    return {"median": float(np.median(rates)), "min": float(np.min(rates)), "max": float(np.max(rates))}


_COMPILE_SNIPPET = r"""
import time, numpy as np
t0 = time.perf_counter()
import marl.envs as E
t1 = time.perf_counter()
out = {"import_s": t1 - t0}
for name, n in (("cooperative_navigation", 3), ("treasure_collection", 8)):
    for parallel in (False, True):
        t = time.perf_counter()
        v = E.make_vector_env(name, n_envs=4, n_agents=n, seed=0, parallel=parallel)
        v.reset()
        v.step(v.sample_actions(np.random.default_rng(0)))
        v2 = E.make_vector_env(name, n_envs=4, n_agents=n, seed=0, parallel=parallel, continuous_actions=True)
        v2.reset()
        v2.step(v2.sample_actions(np.random.default_rng(0)))
        out[f"{name}{'_parallel' if parallel else ''}_s"] = time.perf_counter() - t
print(__import__("json").dumps(out))
"""


def compile_times() -> dict:
    """Cold-compile and cache-load times of the kernels, each in a fresh interpreter."""
    result = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold", "cached"):
            out = subprocess.run([sys.executable, "-c", _COMPILE_SNIPPET], env=env, capture_output=True, text=True,
                                 check=True)
            result[label] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timing window")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=0.3)
    parser.add_argument("--max-cycles", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="3 windows of 0.3 s")
    parser.add_argument("--json", type=str, default=None)
    parser.add_argument("--no-compile", action="store_true", help="skip the compile-time subprocesses")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats, args.warmup = 0.3, 3, 0.1

    from mpe2 import collect_treasure_v1, simple_spread_v3

    from marl.envs import cooperative_navigation_v0, make_vector_env, treasure_collection_v0

    T = args.max_cycles
    timing = dict(seconds=args.seconds, repeats=args.repeats, warmup=args.warmup)
    load_before = os.getloadavg()
    rows = []

    def add(task, n, impl, b, rates, ref=None):
        s = summarize(rates)
        row = {"task": task, "N": n, "impl": impl, "B": b, **s, "agent_steps": s["median"] * n}
        row["x_mpe2"] = None if ref is None else s["median"] / ref
        rows.append(row)
        ratio = "" if ref is None else f"  x{row['x_mpe2']:.1f}"
        print(f"{task:<24} N={n:<3} {impl:<22} B={b:<5} {s['median']:>14,.0f} env-steps/s{ratio}", flush=True)
        return s["median"]

    for n in (3, 6, 12):
        ref = add("cooperative_navigation", n, "mpe2 simple_spread_v3", 1,
                  measure(pettingzoo_chunk(simple_spread_v3.parallel_env(N=n, max_cycles=T)), **timing))
        add("cooperative_navigation", n, "ours, PettingZoo", 1,
            measure(pettingzoo_chunk(cooperative_navigation_v0.parallel_env(n_agents=n, max_cycles=T)), **timing),
            ref)
        for b in (1, 32, 1024):
            venv = make_vector_env("cooperative_navigation", n_envs=b, n_agents=n, seed=0, max_cycles=T)
            add("cooperative_navigation", n, "ours, batched", b, measure(batched_chunk(venv), **timing), ref)
        venv = make_vector_env("cooperative_navigation", n_envs=1024, n_agents=n, seed=0, max_cycles=T,
                               parallel=True)
        add("cooperative_navigation", n, "ours, batched 2 threads", 1024, measure(batched_chunk(venv), **timing), ref)

    ref = add("treasure_collection", 8, "mpe2 collect_treasure_v1", 1,
              measure(pettingzoo_chunk(collect_treasure_v1.parallel_env(max_cycles=T)), **timing))
    add("treasure_collection", 8, "ours, PettingZoo", 1,
        measure(pettingzoo_chunk(treasure_collection_v0.parallel_env(n_agents=8, max_cycles=T)), **timing), ref)
    for b in (1, 32, 1024):
        venv = make_vector_env("treasure_collection", n_envs=b, n_agents=8, seed=0, max_cycles=T)
        add("treasure_collection", 8, "ours, batched", b, measure(batched_chunk(venv), **timing), ref)
    venv = make_vector_env("treasure_collection", n_envs=1024, n_agents=8, seed=0, max_cycles=T, parallel=True)
    add("treasure_collection", 8, "ours, batched 2 threads", 1024, measure(batched_chunk(venv), **timing), ref)
    load_after = os.getloadavg()

    compiled = None if args.no_compile else compile_times()

    print()
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f}")
    print(f"Horizon {T}, random actions, {args.repeats} windows of {args.seconds} s after {args.warmup} s warm-up.")
    print()
    print("| task | N | implementation | B | env-steps/s median [min, max] | agent-steps/s | x mpe2 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = "1 (reference)" if r["x_mpe2"] is None else f"{r['x_mpe2']:,.1f}"
        print(f"| {r['task'].replace('_', ' ')} | {r['N']} | {r['impl']} | {r['B']} | **{r['median']:,.0f}** "
              f"[{r['min']:,.0f}, {r['max']:,.0f}] | {r['agent_steps']:,.0f} | {ratio} |")
    if compiled is not None:
        print()
        print("| kernels (discrete + continuous) | cold compile s | cache load s |")
        print("|---|---|---|")
        for key in compiled["cold"]:
            print(f"| {key[:-2]} | {compiled['cold'][key]:.2f} | {compiled['cached'][key]:.2f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "compile": compiled, "timing": timing, "max_cycles": T,
                       "load_before": load_before, "load_after": load_after}, fh, indent=2)


if __name__ == "__main__":
    main()
