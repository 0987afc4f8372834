"""Run-directory I/O: atomic writes, checkpoints loaded without running pickled code, and the run-directory lock.

Writes go to a temporary file in the same directory (``.<name>.<random>.tmp``), are fsynced, then ``os.replace``d:
a run killed at any moment leaves either the previous file or the new one, never a torn file. A kill between the
two steps leaves the temporary file behind; :func:`remove_stale_temporaries` deletes those when the directory is
next locked.

Checkpoints are ``torch.save`` archives read with ``torch.load(weights_only=True)`` and an allow-list of NumPy's
array reconstruction (the environments' state is NumPy arrays): tensors, arrays and plain Python data load, any
other object is refused before it is built, so opening someone else's run directory cannot execute code.

One process at a time works in a run directory: :class:`RunLock` holds an exclusive ``flock`` on ``<run>/.lock``
(released by the kernel when the process dies, so a killed run never leaves a stale lock).
"""

from __future__ import annotations

import fcntl
import io
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"
LOCK_NAME = ".lock"
_TMP_PREFIX, _TMP_SUFFIX = ".", ".tmp"

# What a checkpoint may contain besides tensors and plain data: NumPy arrays of numeric or bool dtype.
_NUMPY_CORE = getattr(np, "_core", None) or np.core  # numpy >= 2 / numpy 1.x
_NUMPY_ALLOWED = [_NUMPY_CORE.multiarray._reconstruct, np.ndarray, np.dtype] + [
    type(np.dtype(code)) for code in "?bBhHiIlLqQefdg"
]


class RunError(RuntimeError):
    """A run cannot start or continue (its directory is in use, or training produced non-finite values)."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, truncated, not a checkpoint, or holding objects we refuse."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (same-directory temp file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_TMP_PREFIX}{path.name}.", suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete the temporary files that killed :func:`atomic_write_bytes` calls left in ``run_dir``; return them.

    Call it only while holding the directory's :class:`RunLock` (no live writer can own them then)."""
    stale = [p for p in Path(run_dir).glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically save ``state`` (tensors, NumPy arrays, plain data) as ``path``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> Path:
    """Atomically save ``state`` (tensors, NumPy arrays, plain data) as ``run_dir/checkpoint.pt``."""
    return save_state(Path(run_dir) / CHECKPOINT_NAME, state)


def load_checkpoint(run_dir: str | Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load ``run_dir/checkpoint.pt`` without executing pickled code.

    Raises
    ------
    CheckpointError
        (a ``ValueError``) naming the path, when it is absent, unreadable (empty, truncated, not a checkpoint),
        holds anything but tensors, numeric NumPy arrays and plain data, or lacks one of the ``required`` keys.
    """
    return load_state(Path(run_dir) / CHECKPOINT_NAME, required)


def load_state(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load the checkpoint file ``path`` (a run's ``checkpoint.pt`` or an MPI agent's part) as
    :func:`load_checkpoint` does: tensors, numeric NumPy arrays and plain data only; ``CheckpointError`` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with torch.serialization.safe_globals(_NUMPY_ALLOWED):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if refused:
            raise CheckpointError(f"refusing to load {path}: it holds a {refused.group(1)!r} object, and only "
                                  "tensors, NumPy arrays and plain data are loaded (no pickled code runs)") from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
        raise CheckpointError(f"{path} is not a readable checkpoint (empty, truncated or another format: "
                              f"{detail.group(1).strip() if detail else _first_line(exc)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint (empty, truncated or another format: "
                              f"{_first_line(exc)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a checkpoint of this package (a {type(state).__name__}, not a dict)")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a checkpoint of this package (missing {missing})")
    return state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class RunLock:
    """Exclusive lock on a run directory, held from construction to :meth:`release` (or process exit).

    Raises
    ------
    RunError
        When another process holds it; the message names that process.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            raise RunError(f"run directory {self.path.parent} is in use by another process (pid {holder}); "
                           "wait for that run to end or choose another --out") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self, *, remove: bool = False) -> None:
        """Unlock; with ``remove``, also delete the lock file (for a directory this call created and leaves empty)."""
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
