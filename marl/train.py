"""The training loop: rollout -> algorithm update -> logs -> atomic checkpoint, resumable bit for bit.

Run directory layout::

    config.json        the resolved configuration (Table III defaults filled in)
    metrics.csv        one row per outer iteration (keys like env/return, admm/primal_residual, trpo/kl)
    tb/                TensorBoard event files (same keys)
    checkpoint.pt      written atomically every ``checkpoint_every`` iterations and at the end
    .lock              held (flock) by the one process working in the directory

``train(..., resume=True)`` continues from ``checkpoint.pt``: networks, optimiser states, every random stream and the
environments' full state are restored, and rows logged after the checkpoint are discarded (CSV rows and TensorBoard
events alike), so a killed run that is resumed produces exactly the rows of an uninterrupted run with the same seed.
A resumed run keeps its saved settings (a different one is refused) except ``total_steps`` and the settings in
:data:`RESUMABLE_CHANGES`.

Every iteration's losses, metrics and parameters are checked: a NaN or infinity stops the run with
:class:`TrainingDiverged`, naming the quantity and the likely setting, after checkpointing the state at the start of
that iteration (nothing non-finite is ever logged). Explained variance is exempt: it is undefined (NaN) when a
batch's returns are constant.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .algos import make_algorithm
from .checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    RunError,
    RunLock,
    atomic_write_bytes,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from .config import TrainConfig, config_from_dict
from .envs import make_vector_env
from .rollout import collect_rollout, episode_metrics

CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.csv"


def make_env_for(config: TrainConfig, n_envs: int | None = None, seed: int | None = None):
    """The batched environment a config trains on."""
    env = config.env
    return make_vector_env(
        env.name,
        n_envs=env.n_envs if n_envs is None else n_envs,
        n_agents=env.n_agents,
        seed=config.seed if seed is None else seed,
        reward_mode=env.reward_mode,
        max_cycles=env.max_cycles,
        **({"continuous_actions": True, "clip_actions": True} if env.continuous_actions else {}),
    )


class MetricLogger:
    """CSV + TensorBoard logging of flat ``section/name`` metric dicts.

    A resumed run keeps the CSV rows before ``start_iteration`` and purges the TensorBoard events at steps
    ``>= purge_step`` (the environment-step axis the scalars are logged on), so every row is present once.
    """

    def __init__(self, run_dir: Path, *, start_iteration: int = 0, purge_step: int = 0, tensorboard: bool = True):
        self.path = run_dir / METRICS_NAME
        self.rows: list[dict] = []
        if start_iteration > 0 and self.path.exists():
            try:
                with open(self.path, newline="") as fh:
                    self.rows = [r for r in csv.DictReader(fh) if int(float(r["iteration"])) < start_iteration]
            except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
                raise ValueError(f"{self.path} is not a metrics file of this package ({exc!r})") from None
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=purge_step)

    def log(self, iteration: int, metrics: dict[str, float]) -> None:
        row = {"iteration": iteration, **metrics}
        self.rows.append(row)
        keys: list[str] = []
        for r in self.rows:
            keys.extend(k for k in r if k not in keys)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(self.path, buf.getvalue().encode())
        if self.writer is not None:
            step = int(metrics.get("env/steps", iteration))
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or stopped) run reports."""

    run_dir: Path
    iterations: int
    env_steps: int
    final_metrics: dict
    seconds: float


def save_config(run_dir: Path, config: TrainConfig) -> None:
    atomic_write_bytes(run_dir / CONFIG_NAME, json.dumps(config.resolved().to_dict(), indent=2).encode())


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The configuration saved in a run directory (``ValueError`` naming the file when absent or unreadable)."""
    path = Path(run_dir) / CONFIG_NAME
    if not Path(run_dir).is_dir():
        raise ValueError(f"{run_dir} is not a run directory (no such directory)")
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a run directory (no {CONFIG_NAME})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is unreadable: {exc}") from None
    try:
        return config_from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


# Settings a resumed run may change: they change how fast it runs or how often it saves, not what it computes.
RESUMABLE_CHANGES = frozenset({"total_steps", "torch_threads", "checkpoint_every", "concurrent_value_fit",
                               "admm.parallel_endpoints"})


def config_conflicts(saved: TrainConfig, requested: TrainConfig) -> list[str]:
    """``key: saved -> requested`` for every resolved setting that differs, except :data:`RESUMABLE_CHANGES`."""
    a, b = _flat_settings(saved), _flat_settings(requested)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in RESUMABLE_CHANGES and a.get(k) != b.get(k)]


class TrainingDiverged(RunError):
    """Training produced a non-finite loss, parameter or metric; the last good state was checkpointed."""


# Where a non-finite value points: (substring of the metric key or parameter path, the settings to look at, what).
_LIKELY_SETTING = (
    ("value", ("vf_lr",), "the value regression"),
    ("admm", ("admm.penalty", "trpo.max_kl"), "the consensus step"),
    ("trpo", ("trpo.max_kl", "trpo.damping"), "the policy step"),
    ("policy", ("trpo.max_kl", "trpo.damping"), "the policy step"),
)
# Metrics that are NaN by definition in a degenerate batch (explained variance of constant returns), not a fault.
_MAY_BE_UNDEFINED = ("explained_variance",)


def _nonfinite_metrics(metrics: dict) -> list[str]:
    return [k for k, v in metrics.items() if isinstance(v, (int, float)) and not math.isfinite(v)
            and not (math.isnan(v) and any(u in k for u in _MAY_BE_UNDEFINED))]


def _nonfinite_tensors(tree, path: str = "") -> list[str]:
    """Paths of the floating tensors and arrays in a (state-dict) tree that hold a NaN or an infinity."""
    if isinstance(tree, dict):
        return [p for k, v in tree.items() for p in _nonfinite_tensors(v, f"{path}.{k}" if path else str(k))]
    if isinstance(tree, (list, tuple)):
        return [p for k, v in enumerate(tree) for p in _nonfinite_tensors(v, f"{path}.{k}" if path else str(k))]
    if isinstance(tree, torch.Tensor) and tree.is_floating_point():
        return [] if bool(torch.isfinite(tree).all()) else [path]
    if isinstance(tree, np.ndarray) and np.issubdtype(tree.dtype, np.floating):
        return [] if bool(np.isfinite(tree).all()) else [path]
    return []


def _flat_settings(config: TrainConfig) -> dict:
    out = {}
    for key, value in config.resolved().to_dict().items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _divergence_message(iteration: int, config: TrainConfig, bad: list[str], checkpoint: Path) -> str:
    settings = _flat_settings(config)
    hints = []
    for key in bad:
        for sub, keys, what in _LIKELY_SETTING:
            hint = f"{what} ({', '.join(f'{k}={settings[k]}' for k in keys if k in settings)})"
            if sub in key and hint not in hints:
                hints.append(hint)
    shown = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
    cause = f"; likely culprit: {' or '.join(hints)}" if hints else ""
    return (f"training diverged at iteration {iteration}: non-finite {shown}{cause}. The state at the start of "
            f"iteration {iteration} ({iteration * config.steps_per_iter} steps) is saved in {checkpoint}")


@contextlib.contextmanager
def checkpoint_matches(run_dir: Path):
    """Turn the errors of restoring a checkpoint that does not fit the run's configuration into a CheckpointError."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"{Path(run_dir) / CHECKPOINT_NAME} does not match {Path(run_dir) / CONFIG_NAME} "
                              f"({type(exc).__name__}: {detail})") from None


def restore_algorithm(algo, state: dict, run_dir: Path) -> None:
    """Load a checkpoint's ``algo`` state, refusing non-finite parameters and states of another configuration."""
    bad = _nonfinite_tensors(state["algo"])
    if bad:
        raise CheckpointError(f"{Path(run_dir) / CHECKPOINT_NAME} holds non-finite parameters ({', '.join(bad[:3])})")
    with checkpoint_matches(run_dir):
        algo.load_state_dict(state["algo"])


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


def _prepare_run_dir(run_dir: Path, *, resume: bool) -> tuple[RunLock, bool]:
    """Create (unless resuming) and lock the run directory; remove stale temporaries. Returns (lock, created)."""
    if resume:
        if not run_dir.is_dir():
            raise ValueError(f"cannot resume {run_dir}: no such run directory")
        created = False
    else:
        if run_dir.exists() and not run_dir.is_dir():
            raise ValueError(f"run directory {run_dir} exists and is not a directory")
        created = not run_dir.exists()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cannot create run directory {run_dir}: {exc.strerror or exc}") from None
    try:
        lock = RunLock(run_dir)
    except PermissionError as exc:
        raise ValueError(f"run directory {run_dir} is not writable: {exc.strerror}") from None
    except BaseException:
        if created:
            _remove_if_empty(run_dir)
        raise
    remove_stale_temporaries(run_dir)
    return lock, created


def _remove_if_empty(run_dir: Path) -> None:
    try:
        run_dir.rmdir()
    except OSError:
        pass


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
        the run is extended or ends earlier) and the :data:`RESUMABLE_CHANGES`.
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
    lock, created = _prepare_run_dir(run_dir, resume=resume)
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
            _remove_if_empty(run_dir)


def _train_loop(config: TrainConfig, run_dir: Path, venv, algo, obs, start: int, *, progress: bool,
                tensorboard: bool, stop_after: int | None) -> TrainResult:
    logger = MetricLogger(run_dir, start_iteration=start, purge_step=start * config.steps_per_iter + 1,
                          tensorboard=tensorboard)
    n_iter = config.n_iterations
    bar = _progress_bar(n_iter * config.steps_per_iter, start * config.steps_per_iter, progress)
    t_start = time.perf_counter()
    metrics: dict[str, float] = {}
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
                bad = _nonfinite_tensors(algo.state_dict())
                if not bad:
                    raise
                raise TrainingDiverged(_divergence_message(it, config, bad, save_checkpoint(run_dir, good))) from exc
            t2 = time.perf_counter()
            metrics.update(episode_metrics(rollout.episodes))
            state = algo.state_dict()
            bad = _nonfinite_metrics(metrics) + _nonfinite_tensors(state)
            if bad:
                raise TrainingDiverged(_divergence_message(it, config, bad, save_checkpoint(run_dir, good)))
            algo_state = _clone(state)
            metrics["env/steps"] = float((it + 1) * config.steps_per_iter)
            metrics["time/rollout"] = t1 - t0
            metrics["time/update"] = t2 - t1
            metrics["time/steps_per_second"] = config.steps_per_iter / (t2 - t0)
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
