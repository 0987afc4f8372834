"""Evaluate a trained run: episodes with the saved policies, convention-free metrics, optional GIF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .algos import make_algorithm
from .checkpoint import load_checkpoint
from .rollout import collect_rollout
from .train import load_run_config, make_env_for, restore_algorithm


def load_trained(run_dir: str | Path):
    """(config, algorithm with the checkpoint's weights) of a run directory.

    Raises ``ValueError`` naming the file for a missing or unreadable ``config.json`` or ``checkpoint.pt`` and for a
    checkpoint that does not fit the configuration; the checkpoint is loaded without executing pickled code.
    """
    config = load_run_config(run_dir)
    state = load_checkpoint(run_dir, required=("algo",))
    venv = make_env_for(config, n_envs=1)
    algo = make_algorithm(config.algo, venv.obs_dims, venv.n_actions or venv.action_dims, config)
    from .distributed import assemble_state, is_manifest

    if is_manifest(state["algo"]):  # an MPI run: the agents' parts of the checkpoint set the manifest names
        state = {**state, "algo": assemble_state(run_dir, state["algo"])}
    restore_algorithm(algo, state, Path(run_dir))
    return config, algo


def evaluate(run_dir: str | Path, *, episodes: int = 20, seed: int = 12345, gif: str | Path | None = None) -> dict:
    """Run ``episodes`` full episodes with the run's policies (actions sampled, as the original code tests).

    Returns a dict of means and standard deviations: team return (sum over agents and steps), per-agent returns, and
    the environment's metrics (e.g. coverage distance, collisions).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    config, algo = load_trained(run_dir)
    venv = make_env_for(config, n_envs=episodes, seed=seed)
    obs = venv.reset(seed=seed)
    rollout, _ = collect_rollout(venv, algo.act, obs, config.env.max_cycles)
    eps = rollout.episodes
    returns = np.stack([e["return"] for e in eps])
    out = {
        "episodes": len(eps),
        "return_mean": float(returns.sum(1).mean()),
        "return_std": float(returns.sum(1).std()),
    }
    for i in range(returns.shape[1]):
        out[f"return_agent_{i}"] = float(returns[:, i].mean())
    for key in eps[0]:
        if key not in ("return", "length"):
            vals = np.array([e[key] for e in eps], dtype=float)
            out[f"{key}_mean"] = float(vals.mean())
    if gif is not None:
        out["gif"] = str(write_policy_gif(config, algo, gif, seed=seed))
    return out


def write_policy_gif(config, algo, path: str | Path, *, seed: int = 0) -> Path:
    """Render one episode of the trained policies to a GIF (PettingZoo env with ``render_mode='rgb_array'``)."""
    from . import envs

    module = getattr(envs, f"{config.env.name}_v0")
    env = module.parallel_env(n_agents=config.env.n_agents, reward_mode=config.env.reward_mode,
                              max_cycles=config.env.max_cycles, render_mode="rgb_array")

    def policy(obs, env):
        tensors = [torch.as_tensor(np.asarray(obs[a], dtype=np.float32))[None] for a in env.possible_agents]
        with torch.no_grad():
            joint = algo.act(tensors)[0].numpy()
        return {a: int(joint[k]) for k, a in enumerate(env.possible_agents) if a in env.agents}

    try:
        return Path(envs.save_episode_gif(env, path, policy=policy, seed=seed))
    finally:
        env.close()
