"""PettingZooVectorAdapter presents any ParallelEnv (mpe2 included) through the VectorEnv interface."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from mpe2 import collect_treasure_v1, simple_spread_v3

from marl.envs import PettingZooVectorAdapter, cooperative_navigation_v0, make_vector_env, treasure_collection_v0


@pytest.mark.parametrize(
    ("module", "name", "kw"),
    [
        (cooperative_navigation_v0, "cooperative_navigation", dict(n_agents=3)),
        (treasure_collection_v0, "treasure_collection", dict(n_agents=8, continuous_actions=True)),
    ],
)
def test_adapter_over_our_env_equals_the_batched_engine(module, name, kw):
    horizon = 9
    adapter = PettingZooVectorAdapter(lambda: module.parallel_env(max_cycles=horizon, **kw), n_envs=3, seed=4)
    engine = make_vector_env(name, n_envs=3, seed=4, max_cycles=horizon, **kw)
    assert adapter.agents == engine.agents and adapter.obs_dims == engine.obs_dims
    assert adapter.n_actions == engine.n_actions and adapter.action_dims == engine.action_dims
    for x, y in zip(adapter.reset(), engine.reset()):
        np.testing.assert_array_equal(x, y)
    rng = np.random.default_rng(0)
    for _ in range(25):
        acts = engine.sample_actions(rng)
        oa, ra, ta, tra, ia = adapter.step(acts)
        ob, rb, tb, trb, ib = engine.step(acts)
        for x, y in zip(oa, ob):
            np.testing.assert_array_equal(x, y)
        for x, y in zip(ia["final_obs"], ib["final_obs"]):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(ra, rb)
        np.testing.assert_array_equal(ta, tb)
        np.testing.assert_array_equal(tra, trb)
        np.testing.assert_allclose(ia["episode_return"], ib["episode_return"])
        np.testing.assert_array_equal(ia["episode_length"], ib["episode_length"])


def test_adapter_runs_mpe2_simple_spread_with_auto_reset():
    venv = PettingZooVectorAdapter(lambda: simple_spread_v3.parallel_env(N=3, max_cycles=4), n_envs=2, seed=0)
    assert venv.obs_dims == [18, 18, 18] and venv.n_actions == [5, 5, 5]
    obs = venv.reset()
    assert [o.shape for o in obs] == [(2, 18)] * 3
    rng = np.random.default_rng(0)
    for t in range(1, 9):
        obs, rew, term, trunc, info = venv.step(venv.sample_actions(rng))
        assert rew.dtype == np.float32 and rew.shape == (2, 3)
        assert trunc.all() == (t % 4 == 0) and not term.any()
    with pytest.raises(ValueError, match="agent_1 in env 0"):
        venv.step(np.array([[0, 7, 0], [0, 0, 0]]))


def test_adapter_heterogeneous_mpe2_collect_treasure():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        venv = PettingZooVectorAdapter([lambda: collect_treasure_v1.parallel_env()] * 2, seed=1)
        obs = venv.reset()
    assert venv.agents[0] == "collector_0" and venv.obs_dims == [86] * 6 + [84] * 2
    assert [o.shape[1] for o in obs] == venv.obs_dims
    venv.step(venv.sample_actions(np.random.default_rng(0)))


def test_adapter_seeding_is_reproducible():
    def run():
        venv = PettingZooVectorAdapter(lambda: simple_spread_v3.parallel_env(N=3), n_envs=2, seed=5)
        out = [venv.reset()[0]]
        rng = np.random.default_rng(1)
        for _ in range(5):
            out.append(venv.step(venv.sample_actions(rng))[0][0])
        return out

    for x, y in zip(run(), run()):
        np.testing.assert_array_equal(x, y)


def test_adapter_needs_n_envs_with_a_single_factory():
    with pytest.raises(ValueError, match="n_envs"):
        PettingZooVectorAdapter(lambda: simple_spread_v3.parallel_env())
    venv = PettingZooVectorAdapter(lambda: simple_spread_v3.parallel_env(), n_envs=1)
    with pytest.raises(NotImplementedError):
        venv.state_dict()
