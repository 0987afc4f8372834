"""Rollout tensors as an update's samples: flattening [T, B, ...] to the sample axis, and standardisation."""

from __future__ import annotations

import torch


def samples(x: torch.Tensor) -> torch.Tensor:
    """Flatten rollout tensors [T, B, ...] into the update's sample axis, env-major: sample m = env * T + t.

    The original MATRPO code orders samples this way (baselines' ``sf01``), and the Fisher-vector product uses every
    5th sample, so the subsample is every 5th step of *every* environment (all 100 episodes of a batch). A time-major
    order would give all steps of two environments out of ten instead.
    """
    return x.transpose(0, 1).reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def standardize(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return (x - mean) / (std + 1e-8)
