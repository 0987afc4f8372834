"""Diagnostic (issue 12): how much of the gap to MAPPO's published Spread number comes from where the landmarks spawn.

on-policy's MPE (the MAPPO paper's environment) spawns landmarks in 0.8 U(-1, 1)^2; ours, mpe2 and the MATRPO
authors' fork in U(-1, 1)^2 (marl-reference.md §2.2). This script plays a trained Navigation run's policies (sampled
actions, as the training curves are, and greedy) on E fresh episodes with each spawn: the first reset's landmark
positions are multiplied by the factor and the observations rewritten from them (the physics and rewards are
untouched), and prints the team return in the run's convention and, for an ``env.reward_mode = "mpe2"`` run with
25-step episodes, in on-policy's (2 x ours - 75 at N = 3: r_i = -0.5 D - 0.5 C_i summed over agents and steps,
against on-policy's sum_t (-3 D - sum_i C_i - 3)), with the coverage distance per step and the collisions.

    python experiments/diagnostics/landmark_spawn.py RUN_DIR [--episodes 2000] [--seed 777]
"""

from __future__ import annotations

import argparse

import numpy as np

from marl.env_factory import make_env_for
from marl.envs import _navigation_kernels as K
from marl.evaluate import load_trained
from marl.rollout import collect_rollout, episode_metrics


def scaled_landmark_reset(venv, factor: float) -> None:
    """Make ``venv``'s resets spawn landmarks at ``factor`` times their usual position (observations rewritten)."""
    reset = venv._reset_fn

    def wrapped(mask, pos, vel, lm, t, ep_ret, buf, ptr, obs, obs_off, obs_dim):
        reset(mask, pos, vel, lm, t, ep_ret, buf, ptr, obs, obs_off, obs_dim)  # same random draws as unscaled
        idx = np.flatnonzero(mask)
        lm[idx] *= factor
        K._write_obs_numpy(idx, pos, vel, lm, obs, obs_off, obs_dim)

    venv._reset_fn = wrapped


def play(config, algo, factor: float, episodes: int, seed: int, greedy: bool) -> dict:
    venv = make_env_for(config, n_envs=episodes, seed=seed)
    if factor != 1.0:
        scaled_landmark_reset(venv, factor)
    obs = venv.reset(seed=seed)
    rollout, _ = collect_rollout(venv, lambda o: algo.act(o, greedy=greedy), obs, config.env.max_cycles)
    return episode_metrics(rollout.episodes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--episodes", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=777)
    args = ap.parse_args()
    config, algo = load_trained(args.run_dir)
    if config.env.name != "cooperative_navigation":
        raise SystemExit(f"{args.run_dir}: a Cooperative Navigation run is needed, got env.name={config.env.name}")
    on_policy = config.env.reward_mode == "mpe2" and config.env.max_cycles == 25 and config.env.n_agents == 3
    print(f"{args.run_dir}: {args.episodes} episodes of {config.env.max_cycles} steps per row")
    print("| landmark spawn | actions | team return (ours) | on-policy convention | coverage distance per step | "
          "collisions per episode |")
    print("|---|---|---|---|---|---|")
    for factor in (1.0, 0.8):
        for greedy in (False, True):
            m = play(config, algo, factor, args.episodes, args.seed, greedy)
            ret = m["env/return"]
            conv = f"{2 * ret - 75:.1f}" if on_policy else "n/a"
            cov = m["env/coverage_distance_episode_sum"] / config.env.max_cycles
            print(f"| {factor:g} U(-1,1)^2 | {'greedy' if greedy else 'sampled'} | {ret:.2f} | {conv} | {cov:.3f} | "
                  f"{m['env/collisions_episode_sum']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
