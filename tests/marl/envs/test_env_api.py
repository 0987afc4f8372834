"""PettingZoo conformance of every environment x parameter set (STYLE.md §6, kind 7)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pettingzoo.test import api_test, max_cycles_test, parallel_api_test, parallel_seed_test, seed_test

from marl.envs import cooperative_navigation_v0, treasure_collection_v0

# Infinite Box bounds and heterogeneous observation sizes are intentional (Tables I and II).
EXPECTED_WARNINGS = ("observation space value is", "different observation space sizes", "Observations are different")

NAV_PARAMS = [
    dict(n_agents=3),
    dict(n_agents=6, reward_mode="shared"),
    dict(n_agents=3, reward_mode="mpe2", variant="mpe2", local_ratio=0.25),
    dict(n_agents=3, continuous_actions=True),
    dict(n_agents=6, continuous_actions=True, reward_mode="mpe2", variant="mpe2"),
]
TREASURE_PARAMS = [
    dict(n_agents=8),
    dict(n_agents=12, reward_mode="shared"),
    dict(n_agents=8, reward_mode="mpe2", variant="mpe2"),
    dict(n_agents=8, continuous_actions=True),
    dict(n_hunters=3, n_banks=3, n_treasures=4, continuous_actions=True, variant="mpe2"),
]
CASES = [(cooperative_navigation_v0, p) for p in NAV_PARAMS] + [(treasure_collection_v0, p) for p in TREASURE_PARAMS]
IDS = [f"{m.__name__.split('.')[-1]}-{'-'.join(f'{k}={v}' for k, v in p.items())}" for m, p in CASES]


def _filter_expected(record):
    return [w for w in record if not any(s in str(w.message) for s in EXPECTED_WARNINGS)]


@pytest.mark.parametrize(("module", "params"), CASES, ids=IDS)
def test_parallel_api(module, params):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        parallel_api_test(module.parallel_env(**params), num_cycles=250)
    assert _filter_expected(record) == []


@pytest.mark.parametrize(("module", "params"), CASES, ids=IDS)
def test_parallel_seed(module, params):
    parallel_seed_test(lambda: module.parallel_env(**params), num_cycles=200)


@pytest.mark.parametrize(("module", "params"), CASES, ids=IDS)
def test_aec_api_and_seed(module, params):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        api_test(module.env(**params), num_cycles=60)
        seed_test(lambda: module.env(**params), num_cycles=60)
    assert _filter_expected(record) == []


@pytest.mark.parametrize("module", [cooperative_navigation_v0, treasure_collection_v0])
def test_max_cycles(module):
    max_cycles_test(module)


@pytest.mark.parametrize(("module", "params"), CASES, ids=IDS)
def test_episode_is_truncated_after_max_cycles(module, params):
    env = module.parallel_env(max_cycles=7, **params)
    env.reset(seed=1)
    for t in range(7):
        assert env.agents == env.possible_agents
        _, _, term, trunc, _ = env.step({a: env.action_space(a).sample() for a in env.agents})
        assert not any(term.values())
        assert all(trunc.values()) == (t == 6)
    assert env.agents == []


def test_observation_sizes_match_the_paper():
    nav3 = cooperative_navigation_v0.parallel_env(n_agents=3)
    nav6 = cooperative_navigation_v0.parallel_env(n_agents=6)
    assert {nav3.observation_space(a).shape for a in nav3.possible_agents} == {(14,)}
    assert {nav6.observation_space(a).shape for a in nav6.possible_agents} == {(26,)}
    tc8 = treasure_collection_v0.parallel_env(n_agents=8)
    assert [tc8.observation_space(a).shape[0] for a in tc8.possible_agents] == [86] * 6 + [84] * 2
    tc12 = treasure_collection_v0.parallel_env(n_agents=12)
    assert [tc12.observation_space(a).shape[0] for a in tc12.possible_agents] == [134] * 10 + [132] * 2


def test_agent_ids_and_action_spaces():
    env = treasure_collection_v0.parallel_env(n_agents=8, continuous_actions=True)
    assert env.possible_agents == [f"agent_{i}" for i in range(8)]
    space = env.action_space("agent_3")
    assert space.shape == (5,) and space.dtype == np.float32
    assert float(space.low.min()) == 0.0 and float(space.high.max()) == 1.0
    nav = cooperative_navigation_v0.parallel_env()
    assert nav.action_space("agent_0").n == 5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(n_agents=1), "n_agents"),
        (dict(reward_mode="team"), "reward_mode"),
        (dict(local_ratio=1.5), "local_ratio"),
        (dict(max_cycles=0), "max_cycles"),
        (dict(variant="maac"), "variant"),
        (dict(render_mode="human"), "render_mode"),
    ],
)
def test_invalid_navigation_options_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        cooperative_navigation_v0.parallel_env(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(n_agents=8, n_hunters=5, n_banks=2), "n_agents"),
        (dict(n_banks=7), "n_banks"),
        (dict(n_agents=2, n_banks=2), "n_hunters"),
        (dict(n_treasures=0), "n_treasures"),
    ],
)
def test_invalid_treasure_options_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        treasure_collection_v0.parallel_env(**kwargs)


def test_team_split_follows_the_paper():
    assert treasure_collection_v0.team_split(8) == (6, 2)
    assert treasure_collection_v0.team_split(12) == (10, 2)
    assert treasure_collection_v0.team_split(12, n_hunters=9, n_banks=3) == (9, 3)
    assert treasure_collection_v0.team_split(None, n_hunters=4) == (4, 2)
    assert treasure_collection_v0.team_split(9, n_hunters=6) == (6, 3)
