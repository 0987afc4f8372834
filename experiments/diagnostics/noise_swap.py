"""Diagnostic (issue 11): does a trained MATRPO team's return depend on how its actions are sampled?

A run trained with ``sampling_noise = "shared"`` acts with one uniform draw per step applied by every agent to its
own logits (Gumbel-max), so agents whose policies agree move in lockstep. This script plays the *same saved
policies* three ways, on the same evaluation episodes:

    shared       every agent applies the common draw u_t to its own logits   (the authors' sampler)
    independent  agent i draws from its own generator                         (the paper's model)
    greedy       every agent takes its mode

and prints the team return, the banks'/hunters' returns (Treasure), the environment's episode metrics and the
fraction of steps on which all agents take the same action. If a shared-trained team loses its return when its
agents sample independently, what it learned is a *pack* behaviour that exists only under correlated execution,
not N policies that are good on their own; the reverse test (an independent-trained team played with shared noise)
shows whether lockstep execution alone would raise that team's return.

Run (about 10 s per mode for 100 Treasure episodes):

    python experiments/diagnostics/noise_swap.py runs/matrpo_tc8_shared_s0 [runs/... ...] [--episodes 100]
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from marl.algos.seeding import seed_sequence, shared_noise_generator, torch_generator
from marl.env_factory import make_env_for
from marl.evaluate import load_trained
from marl.evaluation import eval_seed
from marl.rollout import collect_rollout

MODES = ("shared", "independent", "greedy")


def set_noise(algo, mode: str, seed: int) -> None:
    """Give every agent the action stream of ``mode`` ('shared': one common generator; 'independent': its own)."""
    learners = algo.agents if hasattr(algo, "agents") else [algo.learner]  # C-TRPO: one learner, all heads
    noise = "shared" if mode == "shared" else "independent"  # greedy draws nothing; any stream will do
    for agent in learners:
        agent.settings = dataclasses.replace(agent.settings, sampling_noise=noise)
        agent.private.act_gen = (shared_noise_generator(seed) if noise == "shared"
                                 else torch_generator(seed_sequence(seed, 99, agent.owner)))


def play(config, algo, mode: str, episodes: int, seed: int) -> dict:
    """``episodes`` episodes (one per environment copy, all of the horizon's length) acted in ``mode``."""
    set_noise(algo, mode, seed)
    venv = make_env_for(config, n_envs=episodes, seed=seed)
    try:
        obs = venv.reset(seed=seed)
        rollout, _ = collect_rollout(venv, lambda o: algo.act(o, greedy=mode == "greedy"), obs, config.env.max_cycles)
    finally:
        venv.close()
    eps = rollout.episodes
    returns = np.stack([e["return"] for e in eps])  # [episodes, N]
    actions = rollout.actions.reshape(-1, returns.shape[1])  # [T * B, N]
    out = {"episodes": len(eps), "team": float(returns.sum(1).mean()), "team_sd": float(returns.sum(1).std()),
           "agents": returns.mean(0), "same_action": float((actions == actions[:, :1]).all(1).float().mean())}
    for key in eps[0]:
        if key not in ("return", "length"):
            out[key] = float(np.mean([e[key] for e in eps]))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for run in args.runs:
        config, algo = load_trained(run)
        seed = eval_seed(config.seed)
        print(f"\n{run} (trained with sampling_noise={config.sampling_noise})")
        for mode in MODES:
            r = play(config, algo, mode, args.episodes, seed)
            agents = " ".join(f"{x:+.2f}" for x in r["agents"])
            extra = "  ".join(f"{k.split('/')[-1]} {v:.2f}" for k, v in r.items()
                              if k not in ("episodes", "team", "team_sd", "agents", "same_action"))
            print(f"  {mode:<11} team {r['team']:+8.1f} ± {r['team_sd']:5.1f}  all-same-action {r['same_action']:.3f}"
                  f"  agents [{agents}]  {extra}")


if __name__ == "__main__":
    main()
