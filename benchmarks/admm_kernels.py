"""Speed and iteration-count benchmarks of consensus_admm (results go to BENCHMARKS.md).

    python benchmarks/admm_kernels.py            # all three tables
    python benchmarks/admm_kernels.py --only sync|async|iters [--quick]

1. Sync ring averaging, N=4096, dim=1024, float64: seconds per iteration of the fused Numba kernel, of its NumPy
   twin, and the memory-bandwidth floor = minimal bytes per iteration / STREAM-triad bandwidth measured here
   (target: kernel <= 1.5x floor; the twin is also checked to give the same iterate).
2. Async ring: edge activations per second (whole activation loop in one compiled call) at dim=16 (N=64, in
   cache) and dim=1024 (N=4096, from memory), with the cost per float moved: one activation reads and writes
   24 dim floats at least (two prox steps (A1): read S_q, Lam_q, g_q, write x_q; the edge (A2)-(A3): read x_i,
   x_j, z_e, lam_e (2), S_i, S_j, Lam_i, Lam_j, write z_e, lam_e (2), S_i, S_j, Lam_i, Lam_j), compared with the
   floor of 8 bytes / triad bandwidth per float.
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


def best_times(fn, repeats: int) -> tuple[float, float]:
    """(best wall-clock, best CPU) seconds of ``fn()`` over ``repeats`` calls. On a shared machine the CPU time
    leaves out the time the process waited for a core (it still includes contention for memory bandwidth)."""
    wall = cpu = np.inf
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return wall, cpu


def stream_triad_bandwidth(n_bytes_per_array: int = 256 * 2**20, repeats: int = 7, cpu: bool = False) -> float:
    """Best-of-``repeats`` bandwidth (bytes/s) of a = b + s * c on float64 arrays (STREAM triad counting 3 arrays),
    from wall-clock time (or CPU time with ``cpu=True``)."""
    n = n_bytes_per_array // 8
    b = np.random.default_rng(0).random(n)
    c = np.random.default_rng(1).random(n)
    a = np.empty_like(b)

    def numpy_triad():
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)

    slow = best_times(numpy_triad, repeats)[int(cpu)]
    # NumPy's multiply + add touch 5 arrays (c, a | a, b, a); a single compiled pass touches 3 (STREAM's count).
    # Take the better of the two so the floor is not flattered by a slow reference.
    fused = _numba_triad(a, b, c, repeats)[int(cpu)]
    return max(3 * 8 * n / fused, 5 * 8 * n / slow)


def _numba_triad(a, b, c, repeats):
    from numba import njit

    @njit(cache=False)
    def triad(a, b, c, s):
        for k in range(a.shape[0]):
            a[k] = b[k] + s * c[k]

    triad(a, b, c, 3.0)
    return best_times(lambda: triad(a, b, c, 3.0), repeats)


def bench_sync(n_agents=4096, dim=1024, n_iter=8, quick=False):
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
    # Fused Numba kernel, timed like the triad (best of short runs, so that both see a quiet moment on a shared
    # machine): per iteration = (best call of n_iter + 2 iterations - best call of 2) / n_iter, which cancels the
    # closing (S3)-(S4) pass every call makes.
    def call(k):
        return best_times(lambda: K.sync_node_run(k, x, lam, *bufs, rho, ga.indptr, ga.indices, ga.degree,
                                                  *packed.args(1e-12, 10)), 5)

    long_, short = call(n_iter + 2), call(2)
    best_nb, cpu_nb = ((a - b) / n_iter for a, b in zip(long_, short))
    # NumPy twin.
    prox = prob.prox_batch(1e-12, 10)
    xn, ln = np.zeros_like(x), np.zeros_like(lam)
    best_np = np.inf
    n_np = max(2, n_iter // 4)
    for _ in range(2):
        t = time.perf_counter()
        xn, ln, _, _ = K.sync_node_run_np(n_np, xn, ln, rho, ga.indptr, ga.indices, ga.degree, prox)
        best_np = min(best_np, (time.perf_counter() - t) / n_np)
    # Same iterate from the kernel and its twin (fresh start, a few iterations).
    xa, la = np.zeros_like(x), np.zeros_like(lam)
    K.sync_node_run(3, xa, la, *bufs, rho, ga.indptr, ga.indices, ga.degree, *packed.args(1e-12, 10))
    xb, lb, _, _ = K.sync_node_run_np(3, np.zeros_like(x), np.zeros_like(lam), rho, ga.indptr, ga.indices,
                                      ga.degree, prox)
    twin_err = float(max(np.max(np.abs(xa - xb)), np.max(np.abs(la - lb))))
    bw = stream_triad_bandwidth()
    bw_cpu = stream_triad_bandwidth(cpu=True)
    # Minimal traffic of one fused iteration (alpha = 1): read x^k, lam, targets (g); write lam, x^{k+1}
    # = 5 arrays of N * dim floats (neighbour rows of x^k are cache hits on a ring).
    floor_bytes = 5 * n_agents * dim * 8
    floor = floor_bytes / bw
    return dict(n_agents=n_agents, dim=dim, numba_s=best_nb, numpy_s=best_np, floor_s=floor, bandwidth=bw,
                floor_bytes=floor_bytes, compile_s=compile_s, twin_err=twin_err, numba_cpu_s=cpu_nb,
                floor_cpu_s=floor_bytes / bw_cpu, bandwidth_cpu=bw_cpu)


# ------------------------------------------------------------------------------------------------------------------
# 2. async activations per second
# ------------------------------------------------------------------------------------------------------------------


def bench_async(n_agents=64, dim=16, n_ticks=500_000, quick=False, end_to_end=True):
    if quick:
        n_ticks = max(1, n_ticks // 10)
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
        state = fresh()  # the state keeps evolving over the repeats; the cost per activation does not depend on it
        best, cpu = best_times(lambda: run(state, edges, drops, drop_prob), 5)
        out[label] = dict(kernel_per_s=n_ticks / best, with_draws_per_s=n_ticks / (best + draw_s),
                          ns_per_float=best / n_ticks / (24 * dim) * 1e9, cpu_per_s=n_ticks / cpu,
                          cpu_ns_per_float=cpu / n_ticks / (24 * dim) * 1e9)
    if not end_to_end:
        return out
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
    p = float(kind.removeprefix("ER(").removesuffix(")"))  # "ER(0.2)": Erdos-Renyi G(n, 0.2), redrawn until connected
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
        print(f"| CPU time: fused Numba kernel | {r['numba_cpu_s'] * 1e3:.2f} ms | "
              f"{r['numba_cpu_s'] / r['floor_cpu_s']:.2f} |")
        print(f"| CPU time: floor, {r['bandwidth_cpu'] / 1e9:.1f} GB/s triad | {r['floor_cpu_s'] * 1e3:.2f} ms | 1.00 |")
        print(f"\nns per element and iteration: kernel {r['numba_s'] / (r['n_agents'] * r['dim']) * 1e9:.2f}, floor "
              f"{r['floor_s'] / (r['n_agents'] * r['dim']) * 1e9:.2f}; max |kernel - twin| after 3 iterations "
              f"{r['twin_err']:.1e}")
        print(f"Numba compile (or cache load): {r['compile_s']:.2f} s")
    if args.only in (None, "async"):
        bw, bw_cpu = stream_triad_bandwidth(), stream_triad_bandwidth(cpu=True)
        floor_ns, floor_cpu_ns = 8 / bw * 1e9, 8 / bw_cpu * 1e9
        for n_agents, dim, n_ticks, e2e in ((64, 16, 500_000, True), (4096, 1024, 10_000, False)):
            r = bench_async(n_agents, dim, n_ticks, quick=args.quick, end_to_end=e2e)
            print(f"\n### Async ring, N={r['n_agents']}, dim={r['dim']}, {r['n_ticks']:,} activations\n")
            print("| variant | activations / s (kernel) | incl. drawing the schedule | ns per float moved (x floor) | "
                  "CPU time: activations / s | CPU: ns per float moved (x floor) |")
            print("|---|---|---|---|---|---|")
            for label in ("no drops", "drop_prob=0.3"):
                q = r[label]
                print(f"| {label} | {q['kernel_per_s']:,.0f} | {q['with_draws_per_s']:,.0f} | "
                      f"{q['ns_per_float']:.3f} ({q['ns_per_float'] / floor_ns:.2f}) | {q['cpu_per_s']:,.0f} | "
                      f"{q['cpu_ns_per_float']:.3f} ({q['cpu_ns_per_float'] / floor_cpu_ns:.2f}) |")
            if e2e:
                print(f"| `solve(method='async')` end to end, checks every 10 epochs | {r['solve_per_s']:,.0f} | | | | |")
            print(f"\nNumba compile (or cache load): {r['compile_s']:.2f} s")
        print(f"\nFloor per float moved: 8 B / triad bandwidth = {floor_ns:.3f} ns ({bw / 1e9:.1f} GB/s, wall) or "
              f"{floor_cpu_ns:.3f} ns ({bw_cpu / 1e9:.1f} GB/s, CPU time). Floats moved per activation: 24 x dim "
              "(with drops, lost exchanges move fewer, so that row's figure is not a per-float cost).")
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
