"""Speed and iteration-count benchmarks of consensus_admm (results go to BENCHMARKS.md).

    python benchmarks/admm_kernels.py            # all three tables
    python benchmarks/admm_kernels.py --only sync|async|iters [--quick]

1. Sync ring averaging, N=4096, dim=1024, float64: seconds per iteration of the fused Numba kernel, of its NumPy
   twin, and the memory-bandwidth floor = minimal bytes per iteration / STREAM-triad bandwidth measured here.
2. Async ring, dim=16: edge activations per second (whole activation loop in one compiled call).
3. Iterations to 1e-6 relative error (max_i ||x_i - x*|| / ||x*||) of sync ADMM with default settings vs the best
   fixed penalty on a grid 0.01..1000 (3 per decade), for ring / ER(0.2) / ER(0.5) x averaging / least squares /
   lasso x N in {16, 64}.

Compile time is excluded (every kernel is warmed up first) and reported separately.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import networkx as nx
import numpy as np

from consensus_admm import ADMMSettings, Averaging, Lasso, LeastSquares, solve
from consensus_admm import _kernels as K
from consensus_admm._problem import Problem
from consensus_admm.edge import EdgeStream
from consensus_admm.graphs import graph_arrays


# ------------------------------------------------------------------------------------------------------------------
# 1. sync kernel vs twin vs floor
# ------------------------------------------------------------------------------------------------------------------


def stream_triad_bandwidth(n_bytes_per_array: int = 256 * 2**20, repeats: int = 7) -> float:
    """Best-of-``repeats`` bandwidth (bytes/s) of a = b + s * c on float64 arrays (STREAM triad counting 3 arrays)."""
    n = n_bytes_per_array // 8
    b = np.random.default_rng(0).random(n)
    c = np.random.default_rng(1).random(n)
    a = np.empty_like(b)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)
        best = min(best, time.perf_counter() - t)
    # NumPy's multiply + add touch 5 arrays (c, a | a, b, a); a single compiled pass touches 3 (STREAM's count).
    # Take the better of the two so the floor is not flattered by a slow reference.
    fused = _numba_triad(a, b, c, repeats)
    return max(3 * 8 * n / fused, 5 * 8 * n / best)


def _numba_triad(a, b, c, repeats):
    from numba import njit

    @njit(cache=False)
    def triad(a, b, c, s):
        for k in range(a.shape[0]):
            a[k] = b[k] + s * c[k]

    triad(a, b, c, 3.0)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        triad(a, b, c, 3.0)
        best = min(best, time.perf_counter() - t)
    return best


def bench_sync(n_agents=4096, dim=1024, n_iter=20, quick=False):
    if quick:
        n_agents, dim, n_iter = 512, 256, 10
    rng = np.random.default_rng(0)
    graph = nx.cycle_graph(n_agents)
    ga = graph_arrays(graph)
    targets = rng.normal(size=(n_agents, dim))
    prob = Problem([Averaging(t) for t in targets], n_agents)
    packed = prob.packed
    rho = 1.0
    x = np.zeros((n_agents, dim))
    lam = np.zeros((n_agents, dim))
    bufs = [np.empty_like(x) for _ in range(3)]
    t = time.perf_counter()
    K.sync_node_run(1, x.copy(), lam.copy(), *bufs, rho, ga.indptr, ga.indices, ga.degree, *packed.args(1e-12, 10))
    compile_s = time.perf_counter() - t
    # Fused Numba kernel: best of 3 runs of n_iter iterations.
    best_nb = np.inf
    for _ in range(3):
        t = time.perf_counter()
        K.sync_node_run(n_iter, x, lam, *bufs, rho, ga.indptr, ga.indices, ga.degree, *packed.args(1e-12, 10))
        best_nb = min(best_nb, (time.perf_counter() - t) / n_iter)
    # NumPy twin.
    prox = prob.prox_batch(1e-12, 10)
    xn, ln = np.zeros_like(x), np.zeros_like(lam)
    best_np = np.inf
    n_np = max(2, n_iter // 4)
    for _ in range(2):
        t = time.perf_counter()
        xn, ln, _, _ = K.sync_node_run_np(n_np, xn, ln, rho, ga.indptr, ga.indices, ga.degree, prox)
        best_np = min(best_np, (time.perf_counter() - t) / n_np)
    bw = stream_triad_bandwidth()
    # Minimal traffic of one fused iteration (alpha = 1): read x^k, lam, targets (g); write lam, x^{k+1}
    # = 5 arrays of N * dim floats (neighbour rows of x^k are cache hits on a ring).
    floor_bytes = 5 * n_agents * dim * 8
    floor = floor_bytes / bw
    return dict(n_agents=n_agents, dim=dim, numba_s=best_nb, numpy_s=best_np, floor_s=floor, bandwidth=bw,
                floor_bytes=floor_bytes, compile_s=compile_s)


# ------------------------------------------------------------------------------------------------------------------
# 2. async activations per second
# ------------------------------------------------------------------------------------------------------------------


def bench_async(n_agents=64, dim=16, n_ticks=2_000_000, quick=False):
    if quick:
        n_ticks = 200_000
    rng = np.random.default_rng(0)
    ga = graph_arrays(nx.cycle_graph(n_agents))
    prob = Problem([Averaging(rng.normal(size=dim)) for _ in range(n_agents)], n_agents)
    m = ga.n_edges
    rho = 1.0

    def fresh():
        x = np.zeros((n_agents, dim))
        return dict(x=x, z=np.zeros((m, dim)), lam=np.zeros((m, 2, dim)), S=np.zeros_like(x), Lam=np.zeros_like(x),
                    stamp=np.full(n_agents, -1, np.int64), msgs=np.zeros(n_agents, np.int64),
                    floats=np.zeros(n_agents, np.int64), act=np.zeros(m, np.int64), bal=np.ones(m, np.bool_))

    def run(state, edges, drops, drop_prob):
        ptr = np.arange(len(edges) + 1, dtype=np.int64)
        K.edge_run(ptr, edges, drops, drop_prob, state["x"], state["z"], state["lam"], state["S"], state["Lam"],
                   rho, 1.0, ga.edges, ga.degree, state["stamp"], 0, state["msgs"], state["floats"], state["act"],
                   state["bal"], *prob.packed.args(1e-12, 10))

    stream = EdgeStream(np.random.default_rng(1), m, "random", None, 0.0)
    t = time.perf_counter()
    run(fresh(), stream.edges(10), np.zeros((0, 2)), 0.0)
    compile_s = time.perf_counter() - t
    out = dict(n_agents=n_agents, dim=dim, n_ticks=n_ticks, compile_s=compile_s)
    for label, drop_prob in (("no drops", 0.0), ("drop_prob=0.3", 0.3)):
        stream = EdgeStream(np.random.default_rng(1), m, "random", None, drop_prob)
        t = time.perf_counter()
        edges = stream.edges(n_ticks)
        drops = stream.drops(n_ticks)
        draw_s = time.perf_counter() - t
        best = np.inf
        for _ in range(3):
            state = fresh()
            t = time.perf_counter()
            run(state, edges, drops, drop_prob)
            best = min(best, time.perf_counter() - t)
        out[label] = dict(kernel_per_s=n_ticks / best, with_draws_per_s=n_ticks / (best + draw_s))
    # End to end through solve() (includes drawing, residual checks every epoch).
    settings = ADMMSettings(method="async", penalty=rho, adaptive_penalty=False, eps_abs=0.0, eps_rel=0.0,
                            max_iter=max(1, n_ticks // m), check_interval=10)
    objs = prob.objectives
    solve(objs, nx.cycle_graph(n_agents), dataclasses.replace(settings, max_iter=10), seed=0)
    t = time.perf_counter()
    res = solve(objs, nx.cycle_graph(n_agents), settings, seed=0)
    out["solve_per_s"] = res.n_activations / (time.perf_counter() - t)
    return out


# ------------------------------------------------------------------------------------------------------------------
# 3. iteration counts: default vs best fixed penalty
# ------------------------------------------------------------------------------------------------------------------


def make_graph(kind: str, n: int, seed: int) -> nx.Graph:
    if kind == "ring":
        return nx.cycle_graph(n)
    p = {"ER(0.2)": 0.2, "ER(0.5)": 0.5}[kind]
    s = seed
    while True:
        g = nx.erdos_renyi_graph(n, p, seed=s)
        if nx.is_connected(g):
            return g
        s += 1000


def lasso_reference(H, g, l1, tol=1e-15, max_sweeps=200_000):
    """High-accuracy centralized lasso by coordinate descent on 0.5 x'Hx - g'x + l1 |x|_1."""
    from consensus_admm.objectives import coordinate_descent_np

    n = H.shape[0]
    return coordinate_descent_np(H, g, l1, np.full(n, -np.inf), np.full(n, np.inf), np.zeros(n), tol, max_sweeps)


def make_problem(obj: str, n_agents: int, seed: int):
    """Return (objectives, x_star)."""
    rng = np.random.default_rng(seed)
    if obj == "averaging":
        dim = 100
        center = rng.normal(size=dim)
        targets = center + rng.normal(size=(n_agents, dim))
        return [Averaging(t) for t in targets], targets.mean(axis=0)
    if obj == "least squares":
        m, dim = 30, 20
        x_true = rng.normal(size=dim)
        A = rng.normal(size=(n_agents, m, dim))
        b = A @ x_true + 0.1 * rng.normal(size=(n_agents, m))
        xs = np.linalg.lstsq(A.reshape(-1, dim), b.ravel(), rcond=None)[0]
        return [LeastSquares(A[i], b[i]) for i in range(n_agents)], xs
    m, dim = 30, 40
    x_true = np.zeros(dim)
    x_true[rng.choice(dim, 3, replace=False)] = rng.normal(size=3) * 3
    A = rng.normal(size=(n_agents, m, dim))
    b = A @ x_true + 0.1 * rng.normal(size=(n_agents, m))
    H = np.einsum("kmi,kmj->ij", A, A)
    g = np.einsum("kmi,km->i", A, b)
    lam_total = 0.1 * np.max(np.abs(g))
    xs = lasso_reference(H, g, lam_total)
    return [Lasso(A[i], b[i], lam_total / n_agents) for i in range(n_agents)], xs


def iterations_to(objs, graph, x_star, settings, target=1e-6, cap=20_000):
    """Iterations until max_i ||x_i - x*||_2 / ||x*||_2 <= target (cap + 1 if never)."""
    norm = np.linalg.norm(x_star)
    hit = {}

    def cb(state):
        err = np.max(np.linalg.norm(state.x - x_star, axis=1)) / norm
        if err <= target:
            hit["k"] = state.iteration
            raise StopIteration

    s = dataclasses.replace(settings, eps_abs=0.0, eps_rel=0.0, check_interval=1, max_iter=cap)
    res = solve(objs, graph, s, seed=0, callback=cb)
    return hit.get("k", cap + 1), res


PENALTY_GRID = tuple(float(f"{v:.3g}") for v in np.logspace(-2, 3, 16))


def bench_iterations(quick=False):
    rows = []
    graphs = ("ring", "ER(0.2)", "ER(0.5)")
    objs_kinds = ("averaging", "least squares", "lasso")
    sizes = (16, 64) if not quick else (16,)
    for n in sizes:
        for gk in graphs:
            graph = make_graph(gk, n, seed=n)
            for ok in objs_kinds:
                objs, xs = make_problem(ok, n, seed=n)
                default_it, res = iterations_to(objs, graph, xs, ADMMSettings())
                adapt_it, ares = iterations_to(objs, graph, xs, ADMMSettings(adaptive_penalty=True),
                                               cap=max(2000, 20 * default_it))
                bad_it, bres = iterations_to(objs, graph, xs, ADMMSettings(adaptive_penalty=True, penalty=0.01),
                                             cap=max(2000, 20 * default_it))
                fixed = {}
                for rho in PENALTY_GRID:
                    it, _ = iterations_to(objs, graph, xs, ADMMSettings(penalty=rho, adaptive_penalty=False),
                                          cap=max(2000, 20 * default_it))
                    fixed[rho] = it
                best_rho = min(fixed, key=fixed.get)
                rows.append(dict(n=n, graph=gk, objective=ok, default=default_it, rho0=res.initial_penalty,
                                 adaptive=adapt_it, adaptive_rho=ares.penalty, bad=bad_it, bad_rho=bres.penalty,
                                 best_rho=best_rho, best=fixed[best_rho], worst=max(fixed.values())))
                r = rows[-1]
                print(f"  N={n:3d} {gk:8s} {ok:14s} default {default_it:6d} (rho0 {r['rho0']:.3g})  "
                      f"best fixed {r['best']:6d} at rho={best_rho:g}  ratio {default_it / r['best']:.2f}  "
                      f"adaptive {adapt_it} / from 0.01: {bad_it}  worst {r['worst']}", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("sync", "async", "iters"))
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = ap.parse_args(argv)
    if args.only in (None, "sync"):
        r = bench_sync(quick=args.quick)
        print(f"\n### Sync ring averaging, N={r['n_agents']}, dim={r['dim']}, float64 (per iteration)\n")
        print("| variant | time per iteration | x floor |")
        print("|---|---|---|")
        print(f"| fused Numba kernel (`_kernels.sync_node_run`) | {r['numba_s'] * 1e3:.2f} ms | "
              f"{r['numba_s'] / r['floor_s']:.2f} |")
        print(f"| NumPy twin (`_kernels.sync_node_run_np`) | {r['numpy_s'] * 1e3:.2f} ms | "
              f"{r['numpy_s'] / r['floor_s']:.2f} |")
        print(f"| floor: {r['floor_bytes'] / 1e6:.0f} MB / {r['bandwidth'] / 1e9:.1f} GB/s triad | "
              f"{r['floor_s'] * 1e3:.2f} ms | 1.00 |")
        print(f"\nNumba compile (or cache load): {r['compile_s']:.2f} s")
    if args.only in (None, "async"):
        r = bench_async(quick=args.quick)
        print(f"\n### Async ring, N={r['n_agents']}, dim={r['dim']}, {r['n_ticks']:,} activations\n")
        print("| variant | activations / s (kernel) | incl. drawing the schedule |")
        print("|---|---|---|")
        for label in ("no drops", "drop_prob=0.3"):
            print(f"| {label} | {r[label]['kernel_per_s']:,.0f} | {r[label]['with_draws_per_s']:,.0f} |")
        print(f"| `solve(method='async')` end to end, checks every 10 epochs | {r['solve_per_s']:,.0f} | |")
        print(f"\nNumba compile (or cache load): {r['compile_s']:.2f} s")
    if args.only in (None, "iters"):
        print("\n### Iterations to 1e-6 relative error: default settings vs best fixed penalty (sync)\n")
        rows = bench_iterations(quick=args.quick)
        print("\n| N | graph | objective | default (rho0 by (H1)) | rho0 | best fixed | best rho | default / best | "
              "worst fixed | balancing from rho0 (final rho) | balancing from 0.01 (final rho) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['n']} | {r['graph']} | {r['objective']} | {r['default']} | {r['rho0']:.3g} | {r['best']} | "
                  f"{r['best_rho']:g} | {r['default'] / r['best']:.2f} | {r['worst']} | "
                  f"{r['adaptive']} ({r['adaptive_rho']:.3g}) | {r['bad']} ({r['bad_rho']:.3g}) |")
        print("\n(a count of cap + 1 means the target was not reached within the cap)")


if __name__ == "__main__":
    main()
