"""Speed of trpo_core's primitives on the MATRPO policy shape, as ratios to the gradient measured in the same run.

Policy: MLP 18 -> 128 -> 128 (SELU) -> 3 heads x 5 actions (MultiCategorical), 20,879 parameters, float32, CPU.
For each M (samples in the batch) it prints the median time over ``--reps`` repetitions of

- gradient:          forward + backward of MATRPO's (1/M) sum_m sum_n w_{n,m} logratio_{n,m}(theta)
- exact FVP / call:  one double-backward product on the cached first-order graph (form="exact")
- fast FVP / call:   one Gauss-Newton product J^T F_z J v (form="fast"): the hand-written MLP path, on every
                     sample and on every 5th; and the autograd path it falls back to for other modules (measured on
                     the same network written with functional SELU, which is not a chain of modules)
- FVP build:         building each operator (forward + first backward), paid once per update
- full step:         ``trust_region_step``: gradient, FVP build, exactly 10 CG iterations, step length, line search
                     (HARL rule), with the fast FVP on all M samples and on every 5th sample (MATRPO's subsampling)

The operations are timed round-robin (one of each per repetition) so that load from other processes hits them alike.
Targets (issue 4): fast FVP <= 1.3x gradient, full step <= 15x gradient.

Run:  python benchmarks/trpo_primitives.py [--samples 2000 10000] [--reps 30] [--threads N]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch
from torch import nn

from trpo_core import (
    MultiCategorical,
    TRPOSettings,
    fisher_vector_product,
    flat_grad,
    flat_params,
    n_parameters,
    set_flat_params,
    trust_region_step,
)

OBS_DIM, HIDDEN, N_HEADS, N_ACTIONS = 18, 128, 3, 5


def make_policy(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(OBS_DIM, HIDDEN), nn.SELU(), nn.Linear(HIDDEN, HIDDEN), nn.SELU(),
        nn.Linear(HIDDEN, N_HEADS * N_ACTIONS),
    )


class FunctionalMLP(nn.Module):
    """The same network with SELU applied as a function: not a chain of modules, so the fast FVP runs on autograd."""

    def __init__(self, seq: nn.Sequential) -> None:
        super().__init__()
        self.l1, self.l2, self.l3 = seq[0], seq[2], seq[4]

    def forward(self, o: torch.Tensor) -> torch.Tensor:
        return self.l3(torch.selu(self.l2(torch.selu(self.l1(o)))))


def bench(M: int, reps: int) -> dict[str, float]:
    policy = make_policy()
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(M, OBS_DIM, generator=g)
    actions = torch.randint(0, N_ACTIONS, (M, N_HEADS), generator=g)
    weights = torch.randn(N_HEADS, M, generator=g)

    def dist_fn(o):
        return MultiCategorical(policy(o).view(-1, N_HEADS, N_ACTIONS))

    with torch.no_grad():
        old = dist_fn(obs).detach()
        logp_old = old.log_prob_per_head(actions)

    def surrogate(_theta=None):
        # MATRPO's linearised objective: (1/M) sum_m sum_n w_{n,m} logratio_{n,m}(theta)
        return (weights * (dist_fn(obs).log_prob_per_head(actions) - logp_old)).sum() / M

    def kl(_theta=None):
        return old.kl(dist_fn(obs)).mean()

    v = torch.randn(n_parameters(policy), generator=g)
    exact_op = fisher_vector_product(policy, dist_fn, obs, form="exact")
    fast_op = fisher_vector_product(policy, dist_fn, obs, form="fast")
    fast_sub_op = fisher_vector_product(policy, dist_fn, obs, form="fast", subsample_every=5)
    generic = FunctionalMLP(policy)
    generic_op = fisher_vector_product(generic, lambda o: MultiCategorical(generic(o).view(-1, N_HEADS, N_ACTIONS)),
                                       obs, form="fast")
    assert fast_op.path == "mlp" and generic_op.path == "autograd"
    err = float((fast_op(v) - exact_op(v)).norm() / exact_op(v).norm())
    base = TRPOSettings.harl(max_kl=0.01, cg_residual_tol=0.0)  # tol 0: always exactly 10 CG iterations
    theta0 = flat_params(policy)
    step_info = {}

    def full_step(every: int):
        s = dataclasses.replace(base, fvp_subsample_every=every)
        set_flat_params(policy, theta0)
        fvp = fisher_vector_product(policy, dist_fn, obs, form="fast", subsample_every=every)
        _, info = trust_region_step(policy, fvp, kl_fn=kl, surrogate_fn=surrogate, settings=s)
        step_info[every] = info

    ops = {
        "gradient": lambda: flat_grad(surrogate(), policy),
        "exact FVP / call": lambda: exact_op(v),
        "fast FVP / call": lambda: fast_op(v),
        "fast FVP / call, every 5th": lambda: fast_sub_op(v),
        "fast FVP / call, autograd path": lambda: generic_op(v),
        "exact FVP build": lambda: fisher_vector_product(policy, dist_fn, obs, form="exact"),
        "fast FVP build": lambda: fisher_vector_product(policy, dist_fn, obs, form="fast"),
        "full step (fast FVP, all M)": lambda: full_step(1),
        "full step (fast FVP, every 5th)": lambda: full_step(5),
    }
    times: dict[str, list[float]] = {k: [] for k in ops}
    for rep in range(reps + 3):
        for name, fn in ops.items():
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if rep >= 3:  # warm-up
                times[name].append(dt)
    med = {k: statistics.median(t) * 1e3 for k, t in times.items()}
    q = {k: statistics.quantiles(t, n=4) for k, t in times.items()}
    return {"median_ms": med, "quartiles_ms": {k: (a * 1e3, c * 1e3) for k, (a, _, c) in q.items()},
            "rel_err": err, "step_info": step_info}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, params {n_parameters(make_policy())}, "
          f"reps {args.reps}")
    results = {M: bench(M, args.reps) for M in args.samples}
    names = list(next(iter(results.values()))["median_ms"])
    header = "| op | " + " | ".join(f"M={M} median ms [IQR] | ratio" for M in args.samples) + " |"
    print(header)
    print("|---|" + "---|---|" * len(args.samples))
    for name in names:
        cells = []
        for M in args.samples:
            r = results[M]
            med, (lo, hi) = r["median_ms"][name], r["quartiles_ms"][name]
            cells.append(f"{med:.2f} [{lo:.2f}, {hi:.2f}] | {med / r['median_ms']['gradient']:.2f}x")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for M in args.samples:
        r = results[M]
        infos = r["step_info"]
        print(f"M={M}: fast vs exact FVP rel. L2 error {r['rel_err']:.1e}; full step: "
              + "; ".join(f"every {k}: accepted {i.accepted}, backtracks {i.n_backtracks}, CG iters {i.cg_n_iter}, "
                          f"KL {i.kl:.4f}" for k, i in infos.items()))


if __name__ == "__main__":
    main()
