"""Bad actions raise clear errors naming the agent, and leave the environment untouched."""

from __future__ import annotations

import numpy as np
import pytest

from marl.envs import cooperative_navigation_v0, make_vector_env, treasure_collection_v0

MODULES = [cooperative_navigation_v0, treasure_collection_v0]
NAMES = ["cooperative_navigation", "treasure_collection"]


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("bad", [5, -1, 17])
def test_parallel_env_out_of_range_discrete_action_names_the_agent(module, bad):
    env = module.parallel_env()
    env.reset(seed=0)
    acts = {a: 0 for a in env.agents}
    acts["agent_2"] = bad
    with pytest.raises(ValueError, match=r"agent_2.*\[0, 5\)"):
        env.step(acts)


@pytest.mark.parametrize("module", MODULES)
def test_parallel_env_non_integer_discrete_action_names_the_agent(module):
    env = module.parallel_env()
    env.reset(seed=0)
    acts = {a: 0 for a in env.agents}
    acts["agent_1"] = 1.5
    with pytest.raises(TypeError, match="agent_1"):
        env.step(acts)


@pytest.mark.parametrize("module", MODULES)
def test_parallel_env_missing_or_unknown_agent(module):
    env = module.parallel_env()
    env.reset(seed=0)
    acts = {a: 0 for a in env.agents}
    del acts["agent_0"]
    with pytest.raises(ValueError, match="missing action for agent_0"):
        env.step(acts)
    acts = {a: 0 for a in env.agents}
    acts["agent_99"] = 0
    with pytest.raises(ValueError, match="agent_99"):
        env.step(acts)


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_parallel_env_non_finite_continuous_action_names_the_agent(module, value):
    env = module.parallel_env(continuous_actions=True)
    env.reset(seed=0)
    acts = {a: np.full(5, 0.5, dtype=np.float32) for a in env.agents}
    acts["agent_1"] = np.array([0.1, value, 0.2, 0.3, 0.4], dtype=np.float32)
    with pytest.raises(ValueError, match="non-finite action for agent_1"):
        env.step(acts)


@pytest.mark.parametrize("module", MODULES)
def test_parallel_env_wrong_shape_continuous_action_names_the_agent(module):
    env = module.parallel_env(continuous_actions=True)
    env.reset(seed=0)
    acts = {a: np.full(5, 0.5, dtype=np.float32) for a in env.agents}
    acts["agent_0"] = np.zeros(2, dtype=np.float32)
    with pytest.raises(ValueError, match=r"agent_0.*\(5,\)"):
        env.step(acts)


@pytest.mark.parametrize("module", MODULES)
def test_continuous_out_of_box_is_clipped_or_rejected(module):
    clipped = module.parallel_env(continuous_actions=True)
    reference = module.parallel_env(continuous_actions=True)
    clipped.reset(seed=0), reference.reset(seed=0)
    big = {a: np.array([0.0, -3.0, 4.0, 0.5, 2.0], dtype=np.float32) for a in clipped.agents}
    inside = {a: np.clip(v, 0, 1) for a, v in big.items()}
    o1, r1, *_ = clipped.step(big)
    o2, r2, *_ = reference.step(inside)
    for a in o1:
        np.testing.assert_array_equal(o1[a], o2[a])
    strict = module.parallel_env(continuous_actions=True, clip_actions=False)
    strict.reset(seed=0)
    with pytest.raises(ValueError, match="agent_0.*outside Box"):
        strict.step(big)


@pytest.mark.parametrize("name", NAMES)
def test_vector_out_of_range_action_names_agent_and_env_and_changes_nothing(name):
    venv = make_vector_env(name, n_envs=4, seed=0)
    venv.reset()
    before = venv.state_dict()
    acts = np.zeros((4, venv.n_agents), dtype=np.int64)
    acts[2, 1] = 5
    with pytest.raises(ValueError, match=r"agent_1 in env 2: 5"):
        venv.step(acts)
    after = venv.state_dict()
    for k, v in before["arrays"].items():
        np.testing.assert_array_equal(v, after["arrays"][k])
    np.testing.assert_array_equal(before["rng"]["ptr"], after["rng"]["ptr"])


@pytest.mark.parametrize("name", NAMES)
def test_vector_nan_continuous_action_names_agent(name):
    venv = make_vector_env(name, n_envs=3, seed=0, continuous_actions=True)
    venv.reset()
    acts = np.full((3, venv.n_agents, 5), 0.5, dtype=np.float32)
    acts[1, 0, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite action for agent_0 in env 1"):
        venv.step(acts)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("continuous", "shape", "dtype", "error"),
    [
        (False, (4, 2), np.int64, ValueError),
        (False, (4,), np.int64, ValueError),
        (False, None, np.float64, TypeError),
        (True, (4, 5), np.float32, ValueError),
        (True, None, np.bool_, TypeError),
    ],
)
def test_vector_wrong_shape_or_dtype(name, continuous, shape, dtype, error):
    venv = make_vector_env(name, n_envs=4, seed=0, continuous_actions=continuous)
    venv.reset()
    if shape is None:
        shape = (4, venv.n_agents, 5) if continuous else (4, venv.n_agents)
    with pytest.raises(error, match="actions"):
        venv.step(np.zeros(shape, dtype=dtype))


def test_stepping_a_finished_parallel_env():
    env = cooperative_navigation_v0.parallel_env(max_cycles=1)
    env.reset(seed=0)
    env.step({a: 0 for a in env.agents})
    assert env.agents == []
    assert env.step({}) == ({}, {}, {}, {}, {})
    with pytest.raises(RuntimeError, match="reset"):
        env.step({"agent_0": 0})
