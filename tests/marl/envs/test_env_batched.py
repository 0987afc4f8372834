"""The batched engine: B environments equal B single environments; Numba equals its NumPy twin (and the
parallel kernel the serial one); determinism; checkpoint/resume; auto-reset bookkeeping."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import NUMBA_VS_NUMPY_ATOL, NUMBA_VS_NUMPY_RTOL
from hypothesis import given
from hypothesis import strategies as st

from marl.envs import VectorEnv, cooperative_navigation_v0, make_vector_env, treasure_collection_v0
from marl.envs._rng import UniformPool

CONFIGS = [
    ("cooperative_navigation", dict(n_agents=3)),
    ("cooperative_navigation", dict(n_agents=6, reward_mode="shared", continuous_actions=True)),
    ("cooperative_navigation", dict(n_agents=3, reward_mode="mpe2", variant="mpe2", local_ratio=0.3)),
    ("treasure_collection", dict(n_agents=8)),
    ("treasure_collection", dict(n_agents=8, reward_mode="mpe2", variant="mpe2", continuous_actions=True)),
    ("treasure_collection", dict(n_hunters=4, n_banks=3, n_treasures=6, reward_mode="shared")),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw in CONFIGS]
MODULES = {"cooperative_navigation": cooperative_navigation_v0, "treasure_collection": treasure_collection_v0}


def _actions(venv: VectorEnv, rng: np.random.Generator) -> np.ndarray:
    if venv.continuous_actions:
        # include out-of-box values: they are clipped identically everywhere
        return rng.uniform(-0.2, 1.2, (venv.n_envs, venv.n_agents, 5)).astype(np.float32)
    return rng.integers(0, 5, (venv.n_envs, venv.n_agents))


def _assert_step_equal(a, b, exact=True):
    obs_a, rew_a, term_a, trunc_a, info_a = a
    obs_b, rew_b, term_b, trunc_b, info_b = b
    cmp = np.testing.assert_array_equal if exact else (
        lambda x, y: np.testing.assert_allclose(x, y, rtol=NUMBA_VS_NUMPY_RTOL[np.float32],
                                                atol=NUMBA_VS_NUMPY_ATOL[np.float32])
    )
    for x, y in zip(obs_a, obs_b):
        cmp(x, y)
    cmp(rew_a, rew_b)
    np.testing.assert_array_equal(term_a, term_b)
    np.testing.assert_array_equal(trunc_a, trunc_b)
    assert info_a.keys() == info_b.keys()
    for k in info_a:
        if k == "final_obs":
            for x, y in zip(info_a[k], info_b[k]):
                cmp(x, y)
        else:
            cmp(info_a[k], info_b[k])


@pytest.mark.parametrize(("name", "kw"), CONFIGS, ids=IDS)
def test_batch_equals_independent_single_environments(name, kw):
    n_envs, seed, steps, horizon = 4, 11, 60, 17  # several auto-resets per environment
    venv = make_vector_env(name, n_envs=n_envs, seed=seed, max_cycles=horizon, **kw)
    obs = venv.reset()
    singles = [MODULES[name].parallel_env(max_cycles=horizon, **kw) for _ in range(n_envs)]
    single_obs = [e.reset(seed=seed + b)[0] for b, e in enumerate(singles)]
    for b in range(n_envs):
        for i, agent in enumerate(venv.agents):
            np.testing.assert_array_equal(obs[i][b], single_obs[b][agent])
    rng = np.random.default_rng(0)
    for _ in range(steps):
        acts = _actions(venv, rng)
        obs, rew, term, trunc, info = venv.step(acts)
        for b, env in enumerate(singles):
            o, r, te, tr, inf = env.step({a: acts[b, i] if venv.continuous_actions else int(acts[b, i])
                                          for i, a in enumerate(venv.agents)})
            for i, agent in enumerate(venv.agents):
                np.testing.assert_array_equal(info["final_obs"][i][b], o[agent])
                assert rew[b, i] == np.float32(r[agent])
                assert trunc[b] == tr[agent] and term[b] == te[agent]
            for m in type(venv).metric_names:
                assert info[m][b] == inf["agent_0"][m]
            if trunc[b]:
                o, _ = env.reset()  # continues the environment's own random stream, like auto-reset
                for i, agent in enumerate(venv.agents):
                    np.testing.assert_array_equal(obs[i][b], o[agent])


@pytest.mark.parametrize(("name", "kw"), CONFIGS, ids=IDS)
def test_numba_kernels_equal_their_numpy_twins(name, kw):
    a = make_vector_env(name, n_envs=5, seed=3, max_cycles=23, backend="numba", **kw)
    b = make_vector_env(name, n_envs=5, seed=3, max_cycles=23, backend="numpy", **kw)
    for x, y in zip(a.reset(), b.reset()):
        np.testing.assert_array_equal(x, y)
    rng = np.random.default_rng(1)
    for _ in range(80):
        acts = _actions(a, rng)
        _assert_step_equal(a.step(acts), b.step(acts), exact=False)
    for k, v in a.state_dict()["arrays"].items():
        np.testing.assert_allclose(v, b.state_dict()["arrays"][k], rtol=NUMBA_VS_NUMPY_RTOL[np.float64],
                                   atol=NUMBA_VS_NUMPY_ATOL[np.float64])


@pytest.mark.parametrize(("name", "kw"), CONFIGS, ids=IDS)
def test_parallel_kernel_equals_serial_kernel(name, kw):
    a = make_vector_env(name, n_envs=37, seed=5, max_cycles=9, parallel=False, **kw)
    b = make_vector_env(name, n_envs=37, seed=5, max_cycles=9, parallel=True, **kw)
    a.reset(), b.reset()
    rng = np.random.default_rng(2)
    for _ in range(30):
        acts = _actions(a, rng)
        _assert_step_equal(a.step(acts), b.step(acts))


@pytest.mark.parametrize(("name", "kw"), CONFIGS, ids=IDS)
def test_same_seed_same_actions_identical_rollouts(name, kw):
    runs = []
    for _ in range(2):
        venv = make_vector_env(name, n_envs=3, seed=42, max_cycles=50, **kw)
        rng = np.random.default_rng(9)
        trace = [venv.reset()]
        for _ in range(220):
            trace.append(venv.step(_actions(venv, rng)))
        runs.append(trace)
    for x, y in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(x, y)
    for s1, s2 in zip(runs[0][1:], runs[1][1:]):
        _assert_step_equal(s1, s2)


def test_different_seeds_differ_and_reset_seed_restarts():
    a = make_vector_env("cooperative_navigation", n_envs=2, seed=0)
    b = make_vector_env("cooperative_navigation", n_envs=2, seed=1)
    oa, ob = a.reset(), b.reset()
    assert not np.array_equal(oa[0], ob[0])
    np.testing.assert_array_equal(oa[0][1], ob[0][0])  # env b of seed s is env 0 of seed s + b
    again = a.reset(seed=0)
    np.testing.assert_array_equal(oa[0], again[0])
    cont = a.reset()
    assert not np.array_equal(cont[0], again[0])  # unseeded reset continues the streams


@pytest.mark.parametrize(("name", "kw"), CONFIGS, ids=IDS)
def test_state_dict_resumes_bit_identically(name, kw):
    venv = make_vector_env(name, n_envs=4, seed=8, max_cycles=13, **kw)
    venv.reset()
    rng = np.random.default_rng(4)
    for _ in range(25):
        venv.step(_actions(venv, rng))
    state = pickle.loads(pickle.dumps(venv.state_dict()))  # checkpoints are pickled
    rng_state = rng.bit_generator.state
    first = [venv.step(_actions(venv, rng)) for _ in range(40)]
    other = make_vector_env(name, n_envs=4, seed=999, max_cycles=13, **kw)
    other.load_state_dict(state)
    rng.bit_generator.state = rng_state
    second = [other.step(_actions(other, rng)) for _ in range(40)]
    for s1, s2 in zip(first, second):
        _assert_step_equal(s1, s2)


def test_state_dict_rejects_another_config():
    a = make_vector_env("cooperative_navigation", n_envs=2, n_agents=3, seed=0)
    a.reset()
    b = make_vector_env("cooperative_navigation", n_envs=2, n_agents=3, seed=0, reward_mode="shared")
    with pytest.raises(ValueError, match="config"):
        b.load_state_dict(a.state_dict())
    c = make_vector_env("treasure_collection", n_envs=2, seed=0)
    with pytest.raises(ValueError, match="cooperative_navigation_v0"):
        c.load_state_dict(a.state_dict())


@pytest.mark.parametrize(("name", "kw"), CONFIGS[:1] + CONFIGS[3:4], ids=IDS[:1] + IDS[3:4])
def test_auto_reset_bookkeeping(name, kw):
    horizon = 5
    venv = make_vector_env(name, n_envs=3, seed=0, max_cycles=horizon, **kw)
    venv.reset()
    rng = np.random.default_rng(0)
    total = np.zeros((3, venv.n_agents))
    metric_sums = {m: np.zeros(3) for m in type(venv).metric_names}
    for t in range(1, 2 * horizon + 1):
        obs, rew, term, trunc, info = venv.step(_actions(venv, rng))
        total += rew
        for m, acc in metric_sums.items():
            acc += info[m]
            np.testing.assert_allclose(info[f"episode_{m}"], acc, rtol=1e-12)
        assert not term.any()
        assert trunc.all() == (t % horizon == 0)
        np.testing.assert_array_equal(info["episode_length"], np.full(3, (t - 1) % horizon + 1))
        np.testing.assert_allclose(info["episode_return"], total, rtol=1e-5, atol=1e-5)
        if trunc.all():
            total[:] = 0.0
            for acc in metric_sums.values():
                acc[:] = 0.0
            for i in range(venv.n_agents):
                assert not np.array_equal(obs[i], info["final_obs"][i])
        else:
            for i in range(venv.n_agents):
                np.testing.assert_array_equal(obs[i], info["final_obs"][i])


def test_vector_interface_shapes_and_dtypes():
    venv = make_vector_env("treasure_collection", n_envs=6, n_agents=12, seed=0, continuous_actions=True)
    assert venv.n_envs == 6 and venv.n_agents == 12
    assert venv.agents == [f"agent_{i}" for i in range(12)]
    assert venv.obs_dims == [134] * 10 + [132] * 2
    assert venv.n_actions is None and venv.action_dims == [5] * 12
    obs = venv.reset()
    assert [o.shape for o in obs] == [(6, d) for d in venv.obs_dims]
    assert all(o.dtype == np.float32 and o.flags.c_contiguous for o in obs)
    obs, rew, term, trunc, info = venv.step(venv.sample_actions(np.random.default_rng(0)))
    assert rew.shape == (6, 12) and rew.dtype == np.float32
    assert term.shape == trunc.shape == (6,) and term.dtype == trunc.dtype == bool
    assert info["episode_return"].shape == (6, 12) and info["episode_length"].shape == (6,)
    for m in ("treasures_collected", "treasures_deposited", "hunter_collisions", "holding"):
        assert info[m].shape == (6,) and info[m].dtype == np.int64
    nav = make_vector_env("cooperative_navigation", n_envs=2, n_agents=6, seed=0)
    assert nav.n_actions == [5] * 6 and nav.action_dims is None and nav.obs_dims == [26] * 6
    nav.reset()
    _, _, _, _, info = nav.step(nav.sample_actions(np.random.default_rng(0)))
    assert info["coverage_distance"].dtype == np.float64 and info["collisions"].dtype == np.int64


def test_step_before_reset_raises():
    venv = make_vector_env("cooperative_navigation", n_envs=2, seed=0)
    with pytest.raises(RuntimeError, match="reset"):
        venv.step(np.zeros((2, 3), dtype=np.int64))


def test_private_and_shared_navigation_rewards_follow_their_formulas():
    kw = dict(n_envs=64, n_agents=3, seed=0, max_cycles=100)
    private = make_vector_env("cooperative_navigation", reward_mode="private", **kw)
    shared = make_vector_env("cooperative_navigation", reward_mode="shared", **kw)
    mpe2 = make_vector_env("cooperative_navigation", reward_mode="mpe2", local_ratio=0.25, **kw)
    for v in (private, shared, mpe2):
        v.reset()
    rng = np.random.default_rng(0)
    seen_collision = False
    for _ in range(100):
        acts = rng.integers(0, 5, (64, 3))
        _, rp, _, _, info = private.step(acts)
        _, rs, _, _, _ = shared.step(acts)
        _, rm, _, _, _ = mpe2.step(acts)
        d = info["coverage_distance"]
        local = rp.astype(np.float64).copy()
        local[:, 0] += d  # r_0 = -D - C_0 (float32 rewards: compare after rounding)
        np.testing.assert_allclose(local, np.round(local), atol=1e-5)
        local = np.round(local)
        assert np.all(local <= 0)
        np.testing.assert_allclose(-local.sum(axis=1) / 2, info["collisions"])
        np.testing.assert_allclose(rs, np.repeat(rp.sum(axis=1, keepdims=True), 3, axis=1), rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(rm, -0.75 * d[:, None] + 0.25 * local, rtol=1e-6, atol=1e-5)
        seen_collision |= bool(info["collisions"].any())
    assert seen_collision


def test_uniform_pool_serves_each_generator_stream_in_order():
    pool = UniformPool(n_envs=3, reserve=10, capacity=40)
    pool.seed(7)
    taken = [[] for _ in range(3)]
    rng = np.random.default_rng(0)
    for _ in range(50):
        for b in range(3):
            k = int(rng.integers(0, 11))
            p = pool.ptr[b]
            taken[b].extend(pool.buf[b, p : p + k])
            pool.ptr[b] += k
        pool.ensure()
    for b in range(3):
        ref = np.random.default_rng(7 + b).random(len(taken[b]))
        np.testing.assert_array_equal(np.array(taken[b]), ref)


@given(
    name=st.sampled_from(["cooperative_navigation", "treasure_collection"]),
    n_agents=st.integers(2, 7),
    n_envs=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
    reward_mode=st.sampled_from(["private", "shared", "mpe2"]),
    variant=st.sampled_from(["paper", "mpe2"]),
    continuous=st.booleans(),
    horizon=st.integers(1, 12),
)
def test_property_numba_equals_numpy_on_generated_configs(
    name, n_agents, n_envs, seed, reward_mode, variant, continuous, horizon
):
    if name == "treasure_collection" and n_agents < 3:
        n_agents = 3
    kw = dict(n_envs=n_envs, n_agents=n_agents, seed=seed, reward_mode=reward_mode, variant=variant,
              continuous_actions=continuous, max_cycles=horizon)
    a = make_vector_env(name, backend="numba", **kw)
    b = make_vector_env(name, backend="numpy", **kw)
    for x, y in zip(a.reset(), b.reset()):
        np.testing.assert_array_equal(x, y)
    rng = np.random.default_rng(seed)
    for _ in range(2 * horizon + 3):
        acts = _actions(a, rng)
        _assert_step_equal(a.step(acts), b.step(acts), exact=False)
