"""The run directory's configuration and its checks: saving and loading ``config.json``, the settings a resumed run
may change, creating and locking the directory, and restoring a checkpoint that must fit the saved configuration.

The files themselves are written and read by :mod:`marl.checkpoint` (atomic writes, safe loading, the lock);
:func:`marl.train.train` composes the two.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CHECKPOINT_NAME, CheckpointError, RunLock, atomic_write_bytes, remove_stale_temporaries
from .config import TrainConfig, config_from_dict

CONFIG_NAME = "config.json"

# Settings a resumed run may change: they change how fast it runs, how often it saves or how often it is evaluated
# (evaluation leaves training untouched), not what it trains. eval_episodes is not one: it changes what eval/* means.
RESUMABLE_CHANGES = frozenset({"total_steps", "torch_threads", "checkpoint_every", "concurrent_value_fit",
                               "admm.parallel_endpoints", "eval_every", "mpi_agent_timeout"})


def save_config(run_dir: Path, config: TrainConfig) -> None:
    """Write the resolved ``config`` (Table III defaults filled in) to ``run_dir/config.json``, atomically."""
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


def flat_settings(config: TrainConfig) -> dict:
    """The resolved settings as one flat dict keyed like ``--set`` (``trpo.max_kl``, ``seed``)."""
    out = {}
    for key, value in config.resolved().to_dict().items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def config_conflicts(saved: TrainConfig, requested: TrainConfig) -> list[str]:
    """``key: saved -> requested`` for every resolved setting that differs, except :data:`RESUMABLE_CHANGES`."""
    a, b = flat_settings(saved), flat_settings(requested)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in RESUMABLE_CHANGES and a.get(k) != b.get(k)]


def prepare_run_dir(run_dir: Path, *, resume: bool) -> tuple[RunLock, bool]:
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
            remove_if_empty(run_dir)
        raise
    remove_stale_temporaries(run_dir)
    return lock, created


def remove_if_empty(run_dir: Path) -> None:
    """Remove ``run_dir`` if it is an empty directory (a run that never started leaves nothing behind)."""
    try:
        run_dir.rmdir()
    except OSError:
        pass


def nonfinite_tensors(tree, path: str = "") -> list[str]:
    """Paths of the floating tensors and arrays in a (state-dict) tree that hold a NaN or an infinity."""
    if isinstance(tree, dict):
        return [p for k, v in tree.items() for p in nonfinite_tensors(v, f"{path}.{k}" if path else str(k))]
    if isinstance(tree, (list, tuple)):
        return [p for k, v in enumerate(tree) for p in nonfinite_tensors(v, f"{path}.{k}" if path else str(k))]
    if isinstance(tree, torch.Tensor) and tree.is_floating_point():
        return [] if bool(torch.isfinite(tree).all()) else [path]
    if isinstance(tree, np.ndarray) and np.issubdtype(tree.dtype, np.floating):
        return [] if bool(np.isfinite(tree).all()) else [path]
    return []


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
    bad = nonfinite_tensors(state["algo"])
    if bad:
        raise CheckpointError(f"{Path(run_dir) / CHECKPOINT_NAME} holds non-finite parameters ({', '.join(bad[:3])})")
    with checkpoint_matches(run_dir):
        algo.load_state_dict(state["algo"])
