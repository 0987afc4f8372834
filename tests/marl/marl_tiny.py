"""Tiny training configurations shared by the marl tests (imported as a plain module)."""

from __future__ import annotations

from marl.config import TrainConfig, apply_overrides


def tiny_config(algo: str = "matrpo", *extra: str) -> TrainConfig:
    """A configuration that trains in about a second: 4 envs x 50 steps, 16-unit networks, 6 ADMM iterations."""
    return apply_overrides(
        TrainConfig(algo=algo),
        [
            "total_steps=600",
            "steps_per_iter=200",
            "env.n_envs=4",
            "env.max_cycles=25",
            "hidden_sizes=16,16",
            "admm.iterations=6",
            "vf_epochs=1",
            "checkpoint_every=1",
            *extra,
        ],
    )
