"""Evaluation: episodes with a policy, during training and of a trained run, with convention-free metrics.

During training (``TrainConfig.eval_every``): after every ``eval_every``-th outer iteration, :func:`evaluate_policy`
plays ``eval_episodes`` episodes with the greedy (mode) policy, one per copy of a batched environment of its own,
and the loop logs them as ``eval/*`` in that iteration's row:

=====================  ==========================================================================================
``eval/return``        mean team return (sum over agents and steps), the convention of ``env/return``
``eval/return_std``    its standard deviation over the episodes (population, ddof = 0)
``eval/return_agent_i`` mean return of agent i
``eval/episode_length`` mean episode length; ``eval/episodes``: episodes played
``eval/<metric>``      the environment's episode metrics (e.g. ``eval/episode_collisions``), like ``env/<metric>``
=====================  ==========================================================================================

Seeds: evaluation environment ``b`` of a run with seed ``s`` is reset with ``s + EVAL_SEED_OFFSET + b`` at every
evaluation, so every evaluation of a run plays the same initial states (its curve measures the policy, not the
draw), and none of them is a training environment's seed (those are ``s + b``, ``b < env.n_envs``). Greedy acting
draws nothing from the algorithms' action generators and the evaluation environments are separate objects, so a run
with evaluation trains exactly as one without (tested), and a resumed run re-evaluates identically.

``python -m marl eval RUN`` (:func:`evaluate`) samples actions by default, as the original code tests its policies,
and takes the mode with ``--greedy``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .algos import make_algorithm
from .checkpoint import load_checkpoint
from .rollout import collect_rollout, episode_metrics
from .rundir import load_run_config, restore_algorithm

# Evaluation seeds start this far above the run's seed: disjoint from its training environments' seeds while
# env.n_envs < 2**31, and below 2**32 (what numpy's legacy seeding and many environments accept) for seeds < 2**31.
EVAL_SEED_OFFSET = 2**31


def eval_seed(seed: int) -> int:
    """The seed of evaluation environment 0 of a run with ``seed`` (environment b gets ``eval_seed(seed) + b``)."""
    return seed + EVAL_SEED_OFFSET


def play_episodes(venv, algo, *, seed: int, n_steps: int, greedy: bool) -> list[dict]:
    """Reset ``venv`` with ``seed`` and act with ``algo`` for ``n_steps`` joint steps; the finished episodes.

    With ``n_steps`` the episode horizon and no early termination, every copy of ``venv`` finishes one episode.
    ``greedy``: every agent takes its policy's mode; otherwise actions are sampled from the algorithm's generators.
    """
    obs = venv.reset(seed=seed)
    rollout, _ = collect_rollout(venv, lambda o: algo.act(o, greedy=greedy), obs, n_steps)
    return rollout.episodes


def evaluation_metrics(episodes: list[dict]) -> dict[str, float]:
    """``eval/*`` metrics of finished episodes: those of ``env/*`` (same conventions) and ``eval/return_std``."""
    if not episodes:
        return {}
    out = {f"eval/{k.split('/', 1)[1]}": v for k, v in episode_metrics(episodes).items()}
    out["eval/return_std"] = float(np.stack([ep["return"] for ep in episodes]).sum(axis=1).std())
    return out


def evaluate_policy(venv, algo, *, seed: int, n_steps: int) -> dict[str, float]:
    """One evaluation during training: ``venv.n_envs`` greedy episodes from ``seed``, as ``eval/*`` metrics."""
    return evaluation_metrics(play_episodes(venv, algo, seed=seed, n_steps=n_steps, greedy=True))


def load_trained(run_dir: str | Path):
    """(config, algorithm with the checkpoint's weights) of a run directory.

    Raises ``ValueError`` naming the file for a missing or unreadable ``config.json`` or ``checkpoint.pt`` and for a
    checkpoint that does not fit the configuration; the checkpoint is loaded without executing pickled code.
    """
    from .train import make_env_for  # here, not at the top: marl.train imports this module

    config = load_run_config(run_dir)
    state = load_checkpoint(run_dir, required=("algo",))
    venv = make_env_for(config, n_envs=1)
    algo = make_algorithm(config.algo, venv.obs_dims, venv.n_actions, config)
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
    from .train import make_env_for  # here, not at the top: marl.train imports this module

    config, algo = load_trained(run_dir)
    venv = make_env_for(config, n_envs=episodes, seed=seed)
    eps = play_episodes(venv, algo, seed=seed, n_steps=config.env.max_cycles, greedy=greedy)
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

    module = getattr(envs, f"{config.env.name}_v0")
    env = module.parallel_env(n_agents=config.env.n_agents, reward_mode=config.env.reward_mode,
                              max_cycles=config.env.max_cycles, render_mode="rgb_array")

    def policy(obs, env):
        tensors = [torch.as_tensor(np.asarray(obs[a], dtype=np.float32))[None] for a in env.possible_agents]
        with torch.no_grad():
            joint = algo.act(tensors, greedy=greedy)[0].numpy()
        return {a: int(joint[k]) for k, a in enumerate(env.possible_agents) if a in env.agents}

    try:
        return Path(envs.save_episode_gif(env, path, policy=policy, seed=seed))
    finally:
        env.close()
