"""Write one GIF per environment: Cooperative Navigation (N = 3) and Treasure Collection (N = 8).

Agents follow simple hand-written policies that read only their own observations (the layouts are documented in
``marl.envs.cooperative_navigation_v0`` and ``marl.envs.treasure_collection_v0``), so the GIFs show the tasks
being solved rather than random jitter. Pass ``--policy random`` for uniformly random actions.

    python examples/render_envs.py --out-dir out/gifs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from marl.envs import cooperative_navigation_v0, save_episode_gif, treasure_collection_v0


def move_towards(delta: np.ndarray, velocity: np.ndarray, dead_zone: float = 0.02) -> int:
    """Return the discrete move (0 no-op, 1 -x, 2 +x, 3 -y, 4 +y) that best reduces ``delta`` (braking early)."""
    d = delta - 0.3 * velocity
    if np.hypot(*d) < dead_zone:
        return 0
    if abs(d[0]) > abs(d[1]):
        return 2 if d[0] > 0 else 1
    return 4 if d[1] > 0 else 3


def navigation_policy(observations: dict, env) -> dict:
    """Agent i heads for landmark i: o_i = [v, p, (l_j - p)_j, ...]."""
    return {
        agent: move_towards(obs[4 + 2 * i : 6 + 2 * i], obs[0:2])
        for i, (agent, obs) in enumerate(observations.items())
    }


def treasure_policy(observations: dict, env) -> dict:
    """Hunters fetch the nearest treasure and carry it to its bank; banks approach carriers of their type."""
    dims = [env.observation_space(a).shape[0] for a in env.possible_agents]
    n_hunters = sum(d == max(dims) for d in dims)
    n_agents = len(dims)
    n_types = n_agents - n_hunters
    per_other = 4 + 2 * n_types
    actions = {}
    for i, agent in enumerate(env.possible_agents):
        obs = observations[agent]
        vel = obs[2:4]
        hunter = i < n_hunters
        start = 4 + (n_types if hunter else 0)
        others = obs[start : start + (n_agents - 1) * per_other].reshape(n_agents - 1, per_other)
        treasures = obs[start + (n_agents - 1) * per_other :].reshape(-1, 2 + n_types)
        target = None
        if hunter:
            held = obs[4 : 4 + n_types]
            if held.any():
                k = int(np.argmax(held))
                banks = [o for o in others if o[4 + k] == 1.0]
                target = banks[0][:2] if banks else None
            else:
                present = [t for t in treasures if t[2:].any() and np.hypot(*(t[:2] + obs[:2])) > 1e-6]
                target = present[0][:2] if present else None
        else:
            k = i - n_hunters
            carriers = [o for o in others if o[4 + n_types + k] == 1.0]
            target = carriers[0][:2] if carriers else None
        actions[agent] = 0 if target is None else move_towards(target, vel)
    return actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("out/gifs"))
    parser.add_argument("--max-cycles", type=int, default=100)
    parser.add_argument("--size", type=int, default=400, help="frame side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--policy", choices=["heuristic", "random"], default="heuristic")
    args = parser.parse_args()
    runs = [
        ("cooperative_navigation", cooperative_navigation_v0, dict(n_agents=3), navigation_policy),
        ("treasure_collection", treasure_collection_v0, dict(n_agents=8), treasure_policy),
    ]
    for name, module, kwargs, policy in runs:
        env = module.parallel_env(render_mode="rgb_array", render_size=args.size, max_cycles=args.max_cycles,
                                  **kwargs)
        path = save_episode_gif(
            env,
            args.out_dir / f"{name}.gif",
            policy=policy if args.policy == "heuristic" else None,
            seed=args.seed,
            fps=args.fps,
        )
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
