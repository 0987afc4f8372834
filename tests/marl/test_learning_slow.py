"""Smoke learning (slow): MATRPO, trained briefly with the paper's settings per iteration, clearly improves the
team return of Cooperative Navigation (N=3, private rewards) over its initial, almost uniform policy, with discrete
and with continuous actions."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from marl.config import TrainConfig, apply_overrides
from marl.train import train


def _team_returns(cfg: TrainConfig, tmp_path) -> np.ndarray:
    """Train ``cfg`` in ``tmp_path/run``; the team return logged at every iteration."""
    train(cfg, tmp_path / "run", progress=False, tensorboard=False)
    with open(tmp_path / "run" / "metrics.csv", newline="") as fh:
        return np.array([float(r["env/return"]) for r in csv.DictReader(fh)])


@pytest.mark.slow
def test_matrpo_improves_over_initial_policy(tmp_path):
    cfg = apply_overrides(TrainConfig(), ["total_steps=120000", "steps_per_iter=10000", "admm.iterations=50"])
    returns = _team_returns(cfg, tmp_path)
    initial, final = returns[0], returns[-3:].mean()
    # A uniform policy scores about -270 per 100-step episode; the original code reached about -155 after 500k
    # steps. After 120k steps we require a clear gain: at least 15% of the initial return.
    assert final > initial + 0.15 * abs(initial), (initial, final, returns.round(1).tolist())


@pytest.mark.slow
def test_matrpo_improves_on_continuous_navigation(tmp_path):
    """Continuous actions (Gaussian heads on the [0, 1]^5 action boxes): MATRPO with the paper's settings per
    iteration improves the team return of Cooperative Navigation N=3 within 100k steps."""
    cfg = apply_overrides(TrainConfig(), ["total_steps=100000", "steps_per_iter=10000", "env.continuous_actions=true"])
    returns = _team_returns(cfg, tmp_path)
    initial, final = returns[0], returns[-3:].mean()
    # Seed 0 measured: -239.2 at the first iteration, -197.3 over the last three (a gain of 17% of |initial|);
    # we require 10%.
    assert final > initial + 0.10 * abs(initial), (initial, final, returns.round(1).tolist())
