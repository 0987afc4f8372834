"""Divergence checks of the training loop: which losses, metrics and parameters are non-finite, and the error that
names them with the settings most likely at fault."""

from __future__ import annotations

import math
from pathlib import Path

from .checkpoint import RunError
from .config import TrainConfig
from .rundir import flat_settings


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


def nonfinite_metrics(metrics: dict) -> list[str]:
    """Keys of the metrics that are NaN or infinite (a NaN explained variance is not counted: it is undefined)."""
    return [k for k, v in metrics.items() if isinstance(v, (int, float)) and not math.isfinite(v)
            and not (math.isnan(v) and any(u in k for u in _MAY_BE_UNDEFINED))]


def divergence_message(iteration: int, config: TrainConfig, bad: list[str], checkpoint: Path) -> str:
    """What diverged at ``iteration`` (``bad``: metric keys or parameter paths), the likely setting, and where the
    state at the start of that iteration was saved."""
    settings = flat_settings(config)
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
