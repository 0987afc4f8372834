"""Atomic checkpoints: write to a temporary file in the same directory, fsync, then ``os.replace``.

A run killed at any moment leaves either the previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "checkpoint.pt"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (same-directory temp file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically save ``state`` (anything ``torch.save`` accepts) as ``path``."""
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> Path:
    """Atomically save ``state`` (anything ``torch.save`` accepts) as ``run_dir/checkpoint.pt``."""
    return save_state(Path(run_dir) / CHECKPOINT_NAME, state)


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """Load ``run_dir/checkpoint.pt``; raises ``FileNotFoundError`` naming the path when absent."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=False)
