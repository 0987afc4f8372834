"""End-to-end check (issue 4): TRPO built only from trpo_core's public names learns CartPole-v1.

Training uses ``examples/trpo_cartpole.py`` (60 iterations x 4,096 steps, fixed budget, no early stopping); the
policy is then evaluated deterministically (argmax action) on 20 episodes whose seeds are disjoint from training.
About 10 s with one torch thread on the 2-vCPU machine.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import numpy as np
import pytest
import torch

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "trpo_cartpole.py"


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_trpo_learns_cartpole(one_thread):
    pytest.importorskip("gymnasium")
    spec = importlib.util.spec_from_file_location("trpo_cartpole_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example  # dataclasses look their module up there
    spec.loader.exec_module(example)
    policy, history = example.train(example.CartPoleConfig(seed=0))
    assert len(history) == 60
    assert sum(h["accepted"] for h in history) >= 30
    returns = example.evaluate(policy, n_episodes=20)
    assert np.mean(returns) > 475, returns
