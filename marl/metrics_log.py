"""Logging of a run's flat ``section/name`` metric dicts: ``metrics.csv`` (one row per outer iteration, rewritten
atomically) and TensorBoard event files under ``tb/`` (the same keys, on the environment-step axis)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from .checkpoint import atomic_write_bytes

METRICS_NAME = "metrics.csv"


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
