"""Evaluation episodes with a policy and their ``eval/*`` metrics: during training, and for ``python -m marl eval``.

During training (``TrainConfig.eval_every``): after every ``eval_every``-th outer iteration, :func:`evaluate_policy`
plays ``eval_episodes`` episodes with the greedy (mode) policy, one per copy of a batched environment of its own,
and the loop logs them as ``eval/*`` in that iteration's row:

=====================  ==========================================================================================
``eval/return``        mean team return (sum over agents and steps), the convention of ``env/return``
``eval/return_std``    its standard deviation over the episodes (population, ddof = 0)
``eval/return_agent_i`` mean return of agent i
``eval/episode_length`` mean episode length; ``eval/episodes``: episodes played
``eval/<metric>``      the environment's episode metrics (e.g. ``eval/collisions_episode_sum``), like ``env/*``
=====================  ==========================================================================================

Seeds: evaluation environment ``b`` of a run with seed ``s`` is reset with ``s + EVAL_SEED_OFFSET + b`` at every
evaluation, so every evaluation of a run plays the same initial states (its curve measures the policy, not the
draw), and none of them is a training environment's seed (those are ``s + b``, ``b < env.n_envs``). Greedy acting
draws nothing from the algorithms' action generators and the evaluation environments are separate objects, so a run
with evaluation trains exactly as one without (tested), and a resumed run re-evaluates identically.

``python -m marl eval RUN`` (:func:`marl.evaluate.evaluate`, which loads a run directory) plays its episodes with
:func:`play_episodes` too. This module does not load runs, so that the training loop can import it.
"""

from __future__ import annotations

import numpy as np

from .rollout import collect_rollout, episode_metrics

# Evaluation seeds start this far above the run's seed: disjoint from its training environments' seeds while
# env.n_envs < 2**31, and below 2**32 (what numpy's legacy seeding and many environments accept) for seeds < 2**31.
EVAL_SEED_OFFSET = 2**31


def eval_seed(seed: int) -> int:
    """The seed of evaluation environment 0 of a run with ``seed`` (environment b gets ``eval_seed(seed) + b``)."""
    return seed + EVAL_SEED_OFFSET


MAX_EVAL_STEPS = 100_000  # an evaluation episode longer than this is taken for one that never ends


def play_episodes(venv, algo, *, seed: int, greedy: bool, max_steps: int = MAX_EVAL_STEPS) -> list[dict]:
    """Reset ``venv`` with ``seed`` and act with ``algo`` until each of its ``n_envs`` copies has finished an
    episode; the first episode of each copy, in copy order.

    A paper task's episodes all end at its horizon, so this is one rollout of ``max_cycles`` steps; another
    environment's may differ in length. ``greedy``: every agent takes its policy's mode; otherwise actions are
    sampled from the algorithm's generators. ``ValueError`` when some copy has not finished an episode after
    ``max_steps`` steps.
    """
    obs = venv.reset(seed=seed)
    found: dict[int, dict] = {}
    steps = 0
    while len(found) < venv.n_envs:
        if steps >= max_steps:
            raise ValueError(f"no episode of environments {sorted(set(range(venv.n_envs)) - set(found))} ended in "
                             f"{max_steps} steps; evaluation needs episodes that end")
        rollout, obs = collect_rollout(venv, lambda o: algo.act(o, greedy=greedy), obs, 1)
        steps += 1
        for (_, b), ep in zip(rollout.done_index.tolist(), rollout.episodes):
            found.setdefault(b, ep)
    return [found[b] for b in range(venv.n_envs)]


def evaluation_metrics(episodes: list[dict]) -> dict[str, float]:
    """``eval/*`` metrics of finished episodes: those of ``env/*`` (same conventions) and ``eval/return_std``."""
    if not episodes:
        return {}
    out = {f"eval/{k.split('/', 1)[1]}": v for k, v in episode_metrics(episodes).items()}
    out["eval/return_std"] = float(np.stack([ep["return"] for ep in episodes]).sum(axis=1).std())
    return out


def evaluate_policy(venv, algo, *, seed: int, max_steps: int = MAX_EVAL_STEPS) -> dict[str, float]:
    """One evaluation during training: ``venv.n_envs`` greedy episodes from ``seed``, as ``eval/*`` metrics."""
    return evaluation_metrics(play_episodes(venv, algo, seed=seed, greedy=True, max_steps=max_steps))
