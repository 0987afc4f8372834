"""The training loop: rollout -> algorithm update -> logs -> atomic checkpoint, resumable bit for bit.

Run directory layout::

    config.json        the resolved configuration (Table III defaults filled in)
    metrics.csv        one row per outer iteration (keys like env/return, admm/primal_residual, trpo/kl)
    tb/                TensorBoard event files (same keys)
    checkpoint.pt      written atomically every ``checkpoint_every`` iterations and at the end
    .lock              held (flock) by the one process working in the directory

This module holds the loop; the pieces it composes live beside it: the run directory's configuration, resume checks
and checkpoint restoring in :mod:`marl.rundir`, file I/O and the lock in :mod:`marl.checkpoint`, the CSV/TensorBoard
logger in :mod:`marl.metrics_log`, the non-finite checks in :mod:`marl.divergence`.

``train(..., resume=True)`` continues from ``checkpoint.pt``: networks, optimiser states, every random stream and the
environments' full state are restored, and rows logged after the checkpoint are discarded (CSV rows and TensorBoard
events alike), so a killed run that is resumed produces exactly the rows of an uninterrupted run with the same seed.
A resumed run keeps its saved settings (a different one is refused) except ``total_steps`` and the settings in
:data:`marl.rundir.RESUMABLE_CHANGES`.

With ``eval_every > 0``, every ``eval_every``-th iteration's row also holds ``eval/*``: greedy episodes on
environments of their own (:mod:`marl.evaluation`), which leave the training streams untouched.

Every iteration's losses, metrics and parameters are checked: a NaN or infinity stops the run with
:class:`~marl.divergence.TrainingDiverged`, naming the quantity and the likely setting, after checkpointing the state at the start of
that iteration (nothing non-finite is ever logged). Explained variance is exempt: it is undefined (NaN) when a
batch's returns are constant.
"""

from __future__ import annotations

import copy
import inspect
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .algos import make_algorithm
from .checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .divergence import TrainingDiverged, divergence_message, nonfinite_metrics
from .env_factory import make_env_for
from .evaluation import MAX_EVAL_STEPS, eval_seed, evaluate_policy
from .metrics_log import MetricLogger
from .rollout import collect_rollout, episode_metrics
from .rundir import (
    checkpoint_matches,
    config_conflicts,
    load_run_config,
    nonfinite_tensors,
    prepare_run_dir,
    remove_if_empty,
    restore_algorithm,
    save_config,
)


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or stopped) run reports."""

    run_dir: Path
    iterations: int
    env_steps: int
    final_metrics: dict
    seconds: float


def _clone(tree):
    """A copy of a state-dict tree: tensors cloned, containers rebuilt, the rest deep-copied (several times
    faster than ``copy.deepcopy`` on tensors)."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().clone()
    if isinstance(tree, dict):
        return {k: _clone(v) for k, v in tree.items()}
    if type(tree) in (list, tuple):
        return type(tree)(_clone(v) for v in tree)
    return copy.deepcopy(tree)


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", unit_scale=True, dynamic_ncols=True)


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    tensorboard: bool = True,
    stop_after: int | None = None,
    algorithm_factory=None,
) -> TrainResult:
    """Train ``config.algo`` on ``config.env`` and write logs and checkpoints to ``out_dir``.

    Parameters
    ----------
    config : TrainConfig
        With ``resume``: must equal the configuration saved in ``out_dir`` except for ``total_steps`` (honoured:
        the run is extended or ends earlier) and the :data:`~marl.rundir.RESUMABLE_CHANGES`.
    out_dir : path
        Run directory. Locked for the duration of the call (one run per directory).
    resume : bool
        Continue from ``out_dir/checkpoint.pt``.
    progress : bool
        Show a progress bar (steps/s, latest return, KL, consensus error).
    tensorboard : bool
        Also write TensorBoard event files.
    stop_after : int, optional
        Stop after this many outer iterations *in this call* (used to test kill-and-resume).
    algorithm_factory : callable(obs_dims, n_actions, config), optional
        Builds the algorithm instead of ``make_algorithm`` (``marl.distributed``: agents in other processes).

    Raises
    ------
    ValueError
        Bad run directory, unreadable or mismatched checkpoint, conflicting settings on resume, a run already in
        ``out_dir`` (``FileExistsError``).
    RunError
        ``out_dir`` is in use by another process.
    TrainingDiverged
        A loss, parameter or metric became non-finite; the state at the start of that iteration is checkpointed.
    """
    if not str(out_dir).strip():
        raise ValueError("the run directory must be a non-empty path")
    run_dir = Path(out_dir)
    lock, created = prepare_run_dir(run_dir, resume=resume)
    started = False
    try:
        state = None
        if resume:
            saved = load_run_config(run_dir)
            conflicts = config_conflicts(saved, config)
            if conflicts:
                raise ValueError(f"cannot resume {run_dir} with different settings ({'; '.join(conflicts)}); "
                                 "resume with the saved settings or start a new run directory")
            config = config.resolved()  # the saved settings, with the allowed changes
            if not (run_dir / CHECKPOINT_NAME).exists():
                raise CheckpointError(f"no checkpoint at {run_dir / CHECKPOINT_NAME}: the run stopped before its "
                                      "first checkpoint; start it again without --resume")
            state = load_checkpoint(run_dir, required=("iteration", "algo", "env", "obs"))
            done = int(state["iteration"]) * config.steps_per_iter
            if config.total_steps < done:
                raise ValueError(f"total steps {config.total_steps} (--steps) is below the {done} steps {run_dir} "
                                 "has already done")
        elif (run_dir / CHECKPOINT_NAME).exists():
            raise FileExistsError(f"{run_dir} already holds a run; pass resume=True (--resume) or choose another --out")
        if config.torch_threads is not None:
            torch.set_num_threads(config.torch_threads)
        venv = make_env_for(config)
        action_sizes = venv.n_actions or venv.action_dims  # per agent: action count, or action dimension
        if algorithm_factory is None:
            algo = make_algorithm(config.algo, venv.obs_dims, action_sizes, config)
        else:
            algo = algorithm_factory(venv.obs_dims, action_sizes, config)
        if config.eval_every and "greedy" not in inspect.signature(algo.act).parameters:
            raise ValueError(f"eval_every={config.eval_every} needs an algorithm that acts greedily; "
                             f"{type(algo).__name__} cannot (set eval_every=0)")
        obs = venv.reset(seed=config.seed)
        start = 0
        if state is not None:
            with checkpoint_matches(run_dir):
                restore_algorithm(algo, state, run_dir)
                venv.load_state_dict(state["env"])
                obs = [np.asarray(o) for o in state["obs"]]
                start = int(state["iteration"])
        save_config(run_dir, config)
        started = True
        return _train_loop(config, run_dir, venv, algo, obs, start, progress=progress, tensorboard=tensorboard,
                           stop_after=stop_after)
    finally:
        lock.release(remove=created and not started)
        if created and not started:
            remove_if_empty(run_dir)


def _train_loop(config: TrainConfig, run_dir: Path, venv, algo, obs, start: int, *, progress: bool,
                tensorboard: bool, stop_after: int | None) -> TrainResult:
    logger = MetricLogger(run_dir, start_iteration=start, purge_step=start * config.steps_per_iter + 1,
                          tensorboard=tensorboard)
    n_iter = config.n_iterations
    bar = _progress_bar(n_iter * config.steps_per_iter, start * config.steps_per_iter, progress)
    t_start = time.perf_counter()
    metrics: dict[str, float] = {}
    eval_env = None
    it = start
    # The algorithm's state at the start of the iteration (the one checked finite at the end of the previous one):
    # what a divergence falls back to. One state_dict() per iteration (a gather from the agents' processes under
    # marl.distributed).
    algo_state = _clone(algo.state_dict())
    try:
        while it < n_iter:
            if stop_after is not None and it - start >= stop_after:
                break
            good = {"iteration": it, "algo": algo_state, "env": venv.state_dict(),
                    "obs": [np.asarray(o).copy() for o in obs]}
            t0 = time.perf_counter()
            rollout, obs = collect_rollout(venv, algo.act, obs, config.steps_per_env)
            t1 = time.perf_counter()
            try:
                metrics = algo.update(rollout, it)
            except Exception as exc:
                bad = nonfinite_tensors(algo.state_dict())
                if not bad:
                    raise
                raise TrainingDiverged(divergence_message(it, config, bad, save_checkpoint(run_dir, good))) from exc
            t2 = time.perf_counter()
            metrics.update(episode_metrics(rollout.episodes))
            state = algo.state_dict()
            bad = nonfinite_metrics(metrics) + nonfinite_tensors(state)
            if bad:
                raise TrainingDiverged(divergence_message(it, config, bad, save_checkpoint(run_dir, good)))
            algo_state = _clone(state)
            metrics["env/steps"] = float((it + 1) * config.steps_per_iter)
            metrics["time/rollout"] = t1 - t0
            metrics["time/update"] = t2 - t1
            metrics["time/steps_per_second"] = config.steps_per_iter / (t2 - t0)
            if config.eval_every and (it + 1) % config.eval_every == 0:
                t3 = time.perf_counter()
                if eval_env is None:  # its own environments: the training ones' state is untouched
                    eval_env = make_env_for(config, n_envs=config.eval_episodes, seed=eval_seed(config.seed))
                metrics.update(evaluate_policy(eval_env, algo, seed=eval_seed(config.seed),
                                               max_steps=max(MAX_EVAL_STEPS, config.env.max_cycles)))
                metrics["time/eval"] = time.perf_counter() - t3
            logger.log(it, metrics)
            it += 1
            if it % config.checkpoint_every == 0 or it == n_iter:
                save_checkpoint(run_dir, {"iteration": it, "algo": algo_state, "env": venv.state_dict(),
                                          "obs": [np.asarray(o).copy() for o in obs]})
            if bar is not None:
                bar.update(config.steps_per_iter)
                kl = metrics.get("trpo/kl", metrics.get("policy/kl", float("nan")))  # policy/kl: MAPPO, FDMARL
                post = {"ret": metrics.get("env/return", float("nan")), "kl": kl}
                if "admm/consensus_error" in metrics:
                    post["cons"] = metrics["admm/consensus_error"]
                bar.set_postfix({k: f"{v:.3g}" for k, v in post.items()})
    finally:
        if bar is not None:
            bar.close()
        logger.close()
    return TrainResult(run_dir, it, it * config.steps_per_iter, metrics, time.perf_counter() - t_start)
