"""Smoke learning (slow): MAPPO and FDMARL, trained briefly with their default settings, improve the team return of
Cooperative Navigation (N=3, private rewards) over their initial, almost uniform policies."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from marl.config import TrainConfig, apply_overrides
from marl.train import train


def team_returns(run_dir) -> np.ndarray:
    with open(run_dir / "metrics.csv", newline="") as fh:
        return np.array([float(r["env/return"]) for r in csv.DictReader(fh)])


# (algo, steps, required gain as a fraction of |initial return|). A uniform policy scores about -260 per 100-step
# episode. Measured with seed 0: MAPPO passes easily (about -160 after 150k steps). FDMARL gains more slowly and is
# unstable, as the MATRPO paper reports: -258.5 -> -225.3 (mean of iterations 8-10, 13%) at 100k steps, then it
# drifts back (-330 at 300k); the test checks that early learning phase.
CASES = [("mappo", 150_000, 0.15), ("fdmarl", 100_000, 0.08)]


@pytest.mark.slow
@pytest.mark.parametrize(("algo", "steps", "gain"), CASES)
def test_improves_over_initial_policy(tmp_path, algo, steps, gain):
    cfg = apply_overrides(TrainConfig(algo=algo), [f"total_steps={steps}"])
    train(cfg, tmp_path / "run", progress=False, tensorboard=False)
    returns = team_returns(tmp_path / "run")
    initial, final = returns[0], returns[-3:].mean()
    assert final > initial + gain * abs(initial), (initial, final, returns.round(1).tolist())
