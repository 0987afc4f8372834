"""The training loop: rollout -> algorithm update -> logs -> atomic checkpoint, resumable bit for bit.

Run directory layout::

    config.json        the resolved configuration (Table III defaults filled in)
    metrics.csv        one row per outer iteration (keys like env/return, admm/primal_residual, trpo/kl)
    tb/                TensorBoard event files (same keys)
    checkpoint.pt      written atomically every ``checkpoint_every`` iterations and at the end

``train(..., resume=True)`` continues from ``checkpoint.pt``: networks, optimiser states, every random stream and the
environments' full state are restored, and rows logged after the checkpoint are discarded, so a killed run that is
resumed produces exactly the rows of an uninterrupted run with the same seed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .algos import make_algorithm
from .algos.common import episode_metrics
from .checkpoint import CHECKPOINT_NAME, atomic_write_bytes, load_checkpoint, save_checkpoint
from .config import TrainConfig, config_from_dict
from .envs import make_vector_env
from .rollout import collect_rollout

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
    )


class MetricLogger:
    """CSV + TensorBoard logging of flat ``section/name`` metric dicts."""

    def __init__(self, run_dir: Path, *, start_iteration: int = 0, tensorboard: bool = True):
        self.path = run_dir / METRICS_NAME
        self.rows: list[dict] = []
        if start_iteration > 0 and self.path.exists():
            with open(self.path, newline="") as fh:
                self.rows = [r for r in csv.DictReader(fh) if int(float(r["iteration"])) < start_iteration]
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=start_iteration if start_iteration else None)

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
    """The configuration saved in a run directory."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.exists():
        raise FileNotFoundError(f"no {CONFIG_NAME} in {run_dir}")
    return config_from_dict(json.loads(path.read_text()))


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
) -> TrainResult:
    """Train ``config.algo`` on ``config.env`` and write logs and checkpoints to ``out_dir``.

    Parameters
    ----------
    config : TrainConfig
        Ignored when ``resume`` is true except for ``total_steps`` (a resumed run may be extended).
    out_dir : path
        Run directory.
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` with the configuration saved there.
    progress : bool
        Show a progress bar (steps/s, latest return, KL, consensus error).
    tensorboard : bool
        Also write TensorBoard event files.
    stop_after : int, optional
        Stop after this many outer iterations *in this call* (used to test kill-and-resume).
    """
    run_dir = Path(out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = None
    if resume:
        saved = load_run_config(run_dir)
        import dataclasses

        config = dataclasses.replace(saved, total_steps=max(saved.total_steps, config.total_steps))
        state = load_checkpoint(run_dir)
    elif (run_dir / CHECKPOINT_NAME).exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass resume=True (--resume) or choose another --out")
    save_config(run_dir, config)
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)

    venv = make_env_for(config)
    algo = make_algorithm(config.algo, venv.obs_dims, venv.n_actions, config)
    obs = venv.reset(seed=config.seed)
    start = 0
    if state is not None:
        algo.load_state_dict(state["algo"])
        venv.load_state_dict(state["env"])
        obs = [np.asarray(o) for o in state["obs"]]
        start = int(state["iteration"])
    logger = MetricLogger(run_dir, start_iteration=start, tensorboard=tensorboard)
    n_iter = config.n_iterations
    bar = _progress_bar(n_iter * config.steps_per_iter, start * config.steps_per_iter, progress)
    t_start = time.perf_counter()
    metrics: dict[str, float] = {}
    it = start
    try:
        while it < n_iter:
            if stop_after is not None and it - start >= stop_after:
                break
            t0 = time.perf_counter()
            rollout, obs = collect_rollout(venv, algo.act, obs, config.steps_per_env)
            t1 = time.perf_counter()
            metrics = algo.update(rollout, it)
            t2 = time.perf_counter()
            metrics.update(episode_metrics(rollout.episodes))
            metrics["env/steps"] = float((it + 1) * config.steps_per_iter)
            metrics["time/rollout"] = t1 - t0
            metrics["time/update"] = t2 - t1
            metrics["time/steps_per_second"] = config.steps_per_iter / (t2 - t0)
            logger.log(it, metrics)
            it += 1
            if it % config.checkpoint_every == 0 or it == n_iter:
                save_checkpoint(run_dir, {"iteration": it, "algo": algo.state_dict(), "env": venv.state_dict(),
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
