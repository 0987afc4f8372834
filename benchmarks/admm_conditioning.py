"""Iterations to 1e-6 relative error on ill-conditioned and badly scaled problems: defaults vs the best fixed penalty.

    python benchmarks/admm_conditioning.py [--quick] [--methods sync,async,star] [--problems cond,scales]

Problems (consensus_admm.testing.build_problem, 12 agents on a connected Erdos-Renyi graph G(12, 0.3), dim 20,
30 rows per agent):

* least squares with cond(A'A) in {1e2, 1e4, 1e6} (singular values log-spaced, random rotations);
* least squares, lasso and L2-logistic regression with feature (column) scales log-spaced from 1e-3 to 1e2.

For each problem and method the script counts iterations until max_i ||x_i - x*||_2 / ||x*||_2 <= 1e-6 (x* the
centralized solution) for

* the default settings (``ADMMSettings()``: curvature preconditioning, consensus_admm.precondition);
* the previous default (``preconditioning="none"``: no scaling, mean-curvature penalty (H1));
* every fixed penalty of a grid 1e-4..1e3 (3 per decade) on the problem as given (``preconditioning="none"``):
  the best of them is the reference of the target (default within 5x of its iterations);
* every fixed penalty of the same grid with the diagonal scaling on (how close (P3) is to the best penalty after
  scaling).

Each count stops at a cap (2x the default's count + 200; "> cap" means not reached): enough to decide the
target, since a best fixed penalty above the default's count only makes the ratio smaller. Sweeps run from the
grid point nearest the default outward and cap each run at the best count found so far, since only the minimum is
reported. Iteration counts are deterministic (sync, star; async with seed 0), so the table does not depend on the
machine's load.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
from admm_kernels import make_graph  # benchmarks/ is on sys.path when a script in it runs

from consensus_admm import ADMMSettings, solve
from consensus_admm.testing import build_problem

GRID = tuple(float(f"{v:.3g}") for v in np.logspace(-4, 3, 22))
TARGET = 1e-6


def problems(quick: bool, groups=("cond", "scales")):
    n, dim, rows = 12, 20, 30
    scales = np.logspace(-3, 2, dim)
    out = []
    for cond in ((1e2, 1e4) if quick else (1e2, 1e4, 1e6)) if "cond" in groups else ():
        out.append((f"least squares, cond(A'A) = {cond:.0e}",
                    build_problem("least_squares", n, dim, seed=7, rows=rows, condition_number=cond)))
    for kind in (("least_squares", "lasso") if quick else ("least_squares", "lasso", "logistic")) \
            if "scales" in groups else ():
        out.append((f"{kind.replace('_', ' ')}, feature scales 1e-3..1e2",
                    build_problem(kind, n, dim, seed=7, rows=rows, feature_scales=scales)))
    return out


def iterations_to(problem, graph, settings, cap):
    """Iterations until max_i ||x_i - x*||_2 / ||x*||_2 <= TARGET (cap + 1 if never); also the result."""
    xs = problem.solution
    norm = np.linalg.norm(xs)
    hit = {}

    def cb(state):
        if np.max(np.linalg.norm(state.x - xs, axis=1)) / norm <= TARGET:
            hit["k"] = state.iteration
            raise StopIteration

    s = dataclasses.replace(settings, eps_abs=0.0, eps_rel=0.0, check_interval=10, max_iter=cap)
    res = solve(problem.objectives, graph, s, seed=0, callback=cb)
    return hit.get("k", cap + 1), res


def sweep(problem, graph, method, preconditioning, start, cap):
    """Best fixed penalty of GRID: (iterations, penalty); runs outward from the grid point nearest ``start``."""
    order = sorted(GRID, key=lambda r: abs(np.log(r / start)))
    best, best_rho = cap + 1, None
    for rho in order:
        s = ADMMSettings(method=method, penalty=rho, preconditioning=preconditioning)
        it, _ = iterations_to(problem, graph, s, min(cap, best))
        if it < best:
            best, best_rho = it, rho
    return best, best_rho


def run(methods, quick, groups=("cond", "scales")):
    graph = make_graph("ER(0.3)", 12, seed=0)
    rows = []
    for label, problem in problems(quick, groups):
        for method in methods:
            t = time.perf_counter()
            default, res = iterations_to(problem, graph, ADMMSettings(method=method), 400_000)
            cap = 2 * default + 200
            old, old_res = iterations_to(problem, graph, ADMMSettings(method=method, preconditioning="none"), cap)
            best, best_rho = sweep(problem, graph, method, "none", old_res.initial_penalty, cap)
            best_s, best_s_rho = sweep(problem, graph, method, "curvature", res.initial_penalty, cap)
            scaled = bool(np.ptp(res.scale) > 0)
            rows.append(dict(problem=label, method=method, default=default, rho0=res.initial_penalty, scaled=scaled,
                             old=old, old_rho=old_res.initial_penalty, best=best, best_rho=best_rho,
                             best_s=best_s, best_s_rho=best_s_rho, cap=cap))
            r = rows[-1]
            print(f"  {label:45s} {method:5s} default {default:7d} (rho0 {r['rho0']:.3g}, scaled {scaled})  "
                  f"old {_fmt(old, cap)}  best fixed {_fmt(best, cap)} at {best_rho}  best fixed scaled "
                  f"{_fmt(best_s, cap)} at {best_s_rho}  [{time.perf_counter() - t:.0f} s]", flush=True)
    return rows


def _fmt(it, cap):
    return f"> {cap:,}" if it > cap else f"{it:,}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer problems (smoke run)")
    ap.add_argument("--methods", default="sync,async,star")
    ap.add_argument("--problems", default="cond,scales", help="cond (condition numbers), scales (feature scales)")
    args = ap.parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(","))
    rows = run(methods, args.quick, tuple(g.strip() for g in args.problems.split(",")))
    print("\n| problem | method | default | rho0 | scaled | previous default (H1) | best fixed, unscaled (rho) | "
          "default / best | best fixed, scaled (rho) | default / best scaled |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for r in rows:
        ratio = r["default"] / r["best"] if r["best"] <= r["cap"] else float("nan")
        ratio_s = r["default"] / r["best_s"] if r["best_s"] <= r["cap"] else float("nan")
        worst = max(worst, ratio if np.isfinite(ratio) else 0.0)
        best = _fmt(r["best"], r["cap"]) + (f" ({r['best_rho']:g})" if r["best_rho"] else "")
        best_s = _fmt(r["best_s"], r["cap"]) + (f" ({r['best_s_rho']:g})" if r["best_s_rho"] else "")
        print(f"| {r['problem']} | {r['method']} | {r['default']:,} | {r['rho0']:.3g} | {'yes' if r['scaled'] else 'no'} "
              f"| {_fmt(r['old'], r['cap'])} | {best} | {ratio:.2f} | {best_s} | {ratio_s:.2f} |")
    if worst > 0:
        print(f"\nworst default / best fixed (unscaled) where the best reached the target: {worst:.2f} (target <= 5)")
    else:
        print("\nno fixed penalty (unscaled) reached the target within its cap on these rows: target met")


if __name__ == "__main__":
    main()
