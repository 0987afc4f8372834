"""Diagnostic (issue 11): how much of a bank's advantage reaches each head of its joint-policy model, with shared and
with independent sampling noise, at MATRPO's first outer iteration on Treasure Collection N=8.

Under the per-agent reward only the banks are paid for collection; a hunter can learn to collect only through the
consensus on the log-ratios of its own head, which the banks push. Agent q's pull on head n at theta_old is the
head's part of (M2) with the ADMM terms at zero (z = lambda = 0 at the first iteration):

    g^q_n = (1/M) J^{qn T} A^q = (1/M) sum_m A^q_m grad log pi^q(a^n_m | o^q_m; theta_old).

Its estimate from one batch is a sum over episodes; split the batch into K groups of whole episodes (contiguous in
the env-major sample order), g^q_n = (1/K) sum_k g^q_{n,k}, and compare the squared norm of the mean with the noise
the batch leaves in it:

    SNR^q_n = ||mean_k g_k||^2 / (tr Cov_k(g_k) / K)     (about 1 when the batch holds no direction, >> 1 when it does).

Printed per mode and seed: each bank's SNR on its own head, on the other bank's head and on the hunters' heads
(median over the six), and the same for the hunters' own advantages (collision penalties only) on their own heads.
Settings: the run's defaults (Table III for N=8), one 10,000-step rollout from the initial policies. Run:

    python experiments/diagnostics/bank_signal.py [--seeds 0,1,2] [--groups 20]
    python experiments/diagnostics/bank_signal.py RUN/ckpt_it10.pt ...   # later iterations, from saved checkpoints
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from marl.algos import make_algorithm
from marl.algos.batch import samples
from marl.algos.privacy import acting_as
from marl.checkpoint import load_state
from marl.config import TrainConfig, apply_overrides
from marl.env_factory import make_env_for
from marl.rollout import collect_rollout
from marl.rundir import load_run_config


def snr(g: torch.Tensor) -> float:
    """||mean_k g_k||^2 / (tr Cov_k(g_k) / K) for K group estimates g [K, D]."""
    g = g.double()
    return float(g.mean(dim=0).square().sum() / (g.var(dim=0, unbiased=True).sum() / g.shape[0]))


def head_snr(agent, n: int, groups: int) -> tuple[float, float]:
    """SNR of agent's pull on head n from ``groups`` contiguous blocks of its batch: in parameter space (the
    module docstring's g^q_n) and on the head's logits averaged over the samples (the action-preference part of
    the pull, the same for every observation: 5 numbers instead of the policy's parameters)."""
    b = agent.private.batch
    m = b.advantages.shape[0]
    size = m // groups
    grads, logit_means = [], []
    for k in range(groups):
        rows = slice(k * size, (k + 1) * size)
        w = torch.zeros(m, b.logp_old.shape[0], dtype=b.advantages.dtype)
        w[rows, n] = b.advantages[rows] / size
        grads.append(b.jacobian.vjp(tuple(score * w.unsqueeze(-1) for score in b.score)))
        logit_means.append((b.score[0][rows, n] * b.advantages[rows, None]).mean(dim=0))
    return snr(torch.stack(grads)), snr(torch.stack(logit_means))


def batch_of(config, state: dict | None = None):
    """MATRPO after prepare() on the batch of the iteration after ``state`` (a checkpoint of a run of ``config``;
    None: the first iteration, from the initial policies), exactly as the run collects and prepares it:
    (algo, hunters, share of steps on which every agent took the same action)."""
    venv = make_env_for(config)
    algo = make_algorithm("matrpo", venv.obs_dims, venv.n_actions, config)
    obs, iteration = venv.reset(seed=config.seed), 0
    if state is not None:
        algo.load_state_dict(state["algo"])
        venv.load_state_dict(state["env"])
        obs, iteration = [np.asarray(o) for o in state["obs"]], int(state["iteration"])
    rollout, _ = collect_rollout(venv, algo.act, obs, config.steps_per_env)
    joint = samples(rollout.actions)
    advs = []
    for i, agent in enumerate(algo.agents):
        with acting_as(i):
            advs.append(samples(agent.own_advantages(rollout, i)[0]))
    advs, _ = algo._normalize_advantages(advs, iteration)
    for i, agent in enumerate(algo.agents):
        with acting_as(i):
            agent.prepare(samples(rollout.obs[i]), joint, advs[i])
    same = float((joint == joint[:, :1]).all(dim=1).double().mean())
    return algo, len(algo.agents) - 2, same  # the paper's split: N - 2 hunters, then 2 banks


def cell(values) -> str:
    return " / ".join(f"{a:.1f}, {b:.1f}" for a, b in values)


def median(values) -> str:
    return f"{np.median([a for a, _ in values]):.1f}, {np.median([b for _, b in values]):.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="*", help="checkpoint files of MATRPO runs (RUN/checkpoint.pt or copies "
                    "of it in RUN): measure the batch of the iteration after each instead of the first iteration")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--groups", type=int, default=20, help="blocks of whole episodes the batch is split into")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.checkpoints:
        cases = []
        for path in args.checkpoints:
            config, state = load_run_config(Path(path).parent), load_state(path, required=("algo", "env", "obs"))
            cases.append((f"{config.sampling_noise}, iteration {int(state['iteration']) + 1}", config.seed,
                          config, state))
    else:
        cases = [(mode, seed, apply_overrides(TrainConfig(), [
            "env.name=treasure_collection", "env.n_agents=8", f"seed={seed}", f"sampling_noise={mode}",
            "torch_threads=1"]).resolved(), None)
            for mode in ("independent", "shared") for seed in (int(s) for s in args.seeds.split(","))]
    print("SNR = ||mean||^2 / (noise of the mean); about 1: no direction in the batch. Each cell: parameter space /"
          " mean logit pull.")
    print("| noise | seed | all heads same action | bank own head | bank, other bank's head | bank, hunters' heads "
          "(median of 6) | hunter own head (median of 6) |")
    print("|---|---|---|---|---|---|---|")
    for mode, seed, config, state in cases:
        algo, n_hunters, same = batch_of(config, state)
        n = len(algo.agents)
        banks = list(range(n_hunters, n))
        own, other, hunters, hunter_own = [], [], [], []
        for q in banks:
            with acting_as(q):
                own.append(head_snr(algo.agents[q], q, args.groups))
                other.append(head_snr(algo.agents[q], banks[0] + banks[-1] - q, args.groups))
                hunters.extend(head_snr(algo.agents[q], h, args.groups) for h in range(n_hunters))
        for h in range(n_hunters):
            with acting_as(h):
                hunter_own.append(head_snr(algo.agents[h], h, args.groups))

        print(f"| {mode} | {seed} | {same:.3f} | {cell(own)} | {cell(other)} | {median(hunters)} | "
              f"{median(hunter_own)} |", flush=True)


if __name__ == "__main__":
    main()
