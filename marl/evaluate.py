"""Evaluate a trained run (``python -m marl eval RUN``): episodes with its saved policies, metrics, optional GIF.

:func:`evaluate` samples actions by default, as the original code tests its policies, and takes the mode with
``--greedy``; episodes are played by :func:`marl.evaluation.play_episodes`, as the ``eval/*`` evaluations during
training are (their seeds and metrics are described there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .algos import make_algorithm
from .checkpoint import load_checkpoint
from .env_factory import make_env_for, parallel_env_for
from .evaluation import MAX_EVAL_STEPS, play_episodes
from .rundir import load_run_config, restore_algorithm


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


def evaluate(run_dir: str | Path, *, episodes: int = 20, seed: int = 12345, gif: str | Path | None = None,
             greedy: bool = False) -> dict:
    """Run ``episodes`` full episodes with the run's policies: actions sampled (as the original code tests), or
    with ``greedy`` each policy's mode (the policy the ``eval/*`` metrics of training measure).

    Returns a dict of means and standard deviations: team return (sum over agents and steps), per-agent returns, and
    the environment's metrics (e.g. coverage distance, collisions).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    config, algo = load_trained(run_dir)
    venv = make_env_for(config, n_envs=episodes, seed=seed)
    try:
        eps = play_episodes(venv, algo, seed=seed, greedy=greedy, max_steps=max(MAX_EVAL_STEPS, config.env.max_cycles))
    finally:
        venv.close()
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
        out["gif"] = str(write_policy_gif(config, algo, gif, seed=seed, greedy=greedy))
    return out


def write_policy_gif(config, algo, path: str | Path, *, seed: int = 0, greedy: bool = False) -> Path:
    """Render one episode of the trained policies (``greedy``: their modes) to a GIF (PettingZoo env with
    ``render_mode='rgb_array'``)."""
    from . import envs

    env = parallel_env_for(config, render_mode="rgb_array")
    obs_dims = [int(np.prod(env.observation_space(a).shape)) for a in env.possible_agents]

    def policy(obs, env):
        # flattened as PettingZooVectorAdapter does; an agent that has left observes zeros
        tensors = [torch.as_tensor(np.asarray(obs[a], dtype=np.float32).reshape(1, -1)) if a in obs
                   else torch.zeros(1, d) for a, d in zip(env.possible_agents, obs_dims)]
        with torch.no_grad():
            joint = algo.act(tensors, greedy=greedy)[0].numpy()
        return {a: int(joint[k]) for k, a in enumerate(env.possible_agents) if a in env.agents}

    try:
        return Path(envs.save_episode_gif(env, path, policy=policy, seed=seed))
    finally:
        env.close()
