"""Numba kernels (and their plain-NumPy twins) for batched Cooperative Navigation.

One fused kernel call advances B environments by one step: action forces, contact forces, integration,
rewards, metrics, observations, episode bookkeeping and (optionally) the auto-reset of finished environments.
The maths and the conventions are documented in :mod:`marl.envs.cooperative_navigation_v0`; this module only
implements them. Every ``@njit`` entry point has a NumPy twin with the same signature (``*_numpy``), used for
reading and for equivalence tests.

Array conventions (B environments, N agents, L = N landmarks, D = 4 + 2L + 2(N-1) observation entries):

=================  ==========================  =========  ==========================================
name               shape                       dtype      meaning
=================  ==========================  =========  ==========================================
``pos``, ``vel``   (B, N, 2)                   float64    agent positions p_i and velocities v_i
``lm``             (B, L, 2)                   float64    landmark positions
``t``              (B,)                        int64      steps taken in the current episode
``ep_ret``         (B, N)                      float64    running undiscounted return per agent
``act_i``          (B, N)                      int64      discrete actions (0 no-op, 1 -x, 2 +x, 3 -y, 4 +y)
``act_c``          (B, N, 5)                   float32    continuous actions, mpe2 layout (see module docs)
``cfg_i``          (6,)                        int64      continuous, clip, variant, reward_mode, max_cycles,
                                                          autoreset
``cfg_f``          (1,)                        float64    local_ratio (mpe2 reward mode)
``buf``, ``ptr``   (B, K), (B,)                f64, i64   pre-drawn U[0,1) numbers and read positions
``force``          (B, N, 2)                   float64    scratch for the total force on each agent
``obs``            (B * N * D,)                float32    agent i's block [B, D] starts at ``obs_off[i]``
``final_obs``      like ``obs``                float32    pre-reset observation, written only for
                                                          environments that auto-reset in this call
``rew``            (B, N)                      float64    rewards of this step
``metrics``        (3, B)                      float64    coverage distance, colliding pairs, occupied
                                                          landmarks
=================  ==========================  =========  ==========================================
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from marl.envs._physics import (
    CONTACT_FORCE,
    CONTACT_MARGIN,
    DAMPING,
    DT,
    MPE2,
    PRIVATE,
    VARIANT_MPE2,
    VARIANT_PAPER,
    action_direction,
    action_direction_numpy,
    check_actions,
    check_actions_numpy,
    copy_obs,
    logaddexp0,
    logaddexp0_numpy,
)

# Cooperative Navigation's entities (openai/multiagent-particle-envs simple_spread.py; mpe2 simple_spread).
AGENT_SIZE = 0.15
LANDMARK_SIZE = 0.05
AGENT_MASS = 1.0
SENSITIVITY = 5.0
OCCUPY_RADIUS = 0.1
N_METRICS = 3


def obs_dim(n_agents: int) -> int:
    """Return the observation length 4 + 2N + 2(N-1) of every agent."""
    return 4 + 2 * n_agents + 2 * (n_agents - 1)


def rng_reserve(n_agents: int) -> int:
    """Return the most uniforms one step can consume per environment (one reset: 2N + 2L)."""
    return 4 * n_agents


# --------------------------------------------------------------------------------------------------------------
# Numba building blocks
# --------------------------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _reset_env(b, pos, vel, lm, t, ep_ret, buf, ptr):
    # Draw order: agents (x, y) then landmarks (x, y), each U(-1, 1) = -1 + 2u, as mpe2's reset_world.
    p = ptr[b]
    N = pos.shape[1]
    for i in range(N):
        pos[b, i, 0] = -1.0 + 2.0 * buf[b, p]
        pos[b, i, 1] = -1.0 + 2.0 * buf[b, p + 1]
        p += 2
        vel[b, i, 0] = 0.0
        vel[b, i, 1] = 0.0
    for j in range(lm.shape[1]):
        lm[b, j, 0] = -1.0 + 2.0 * buf[b, p]
        lm[b, j, 1] = -1.0 + 2.0 * buf[b, p + 1]
        p += 2
    ptr[b] = p
    t[b] = 0
    for i in range(N):
        ep_ret[b, i] = 0.0


@njit(cache=True, inline="always")
def _write_obs(b, B, pos, vel, lm, obs, obs_off, obs_dim):
    # o_i = [v_i, p_i, (l_j - p_i)_j, (p_k - p_i)_{k != i}]
    N = pos.shape[1]
    L = lm.shape[1]
    for i in range(N):
        o = obs_off[i] + b * obs_dim[i]
        px = pos[b, i, 0]
        py = pos[b, i, 1]
        obs[o] = vel[b, i, 0]
        obs[o + 1] = vel[b, i, 1]
        obs[o + 2] = px
        obs[o + 3] = py
        o += 4
        for j in range(L):
            obs[o] = lm[b, j, 0] - px
            obs[o + 1] = lm[b, j, 1] - py
            o += 2
        for k in range(N):
            if k == i:
                continue
            obs[o] = pos[b, k, 0] - px
            obs[o + 1] = pos[b, k, 1] - py
            o += 2


# Not inlined at the Numba-IR level (unlike the helpers above): inlining it into the prange driver made the
# parallel kernel an order of magnitude slower, and it did not speed up the serial one.
@njit(cache=True)
def _step_env(b, B, pos, vel, lm, t, ep_ret, act_i, act_c, cfg_i, cfg_f, buf, ptr, force,
              obs, final_obs, obs_off, obs_dim, rew, term, trunc, metrics, ep_ret_out, ep_len_out):
    continuous = cfg_i[0] != 0
    clip = cfg_i[1] != 0
    variant = cfg_i[2]
    reward_mode = cfg_i[3]
    max_cycles = cfg_i[4]
    autoreset = cfg_i[5] != 0
    local_ratio = cfg_f[0]
    N = pos.shape[1]
    L = lm.shape[1]

    # (1) control forces u_i * sensitivity
    for i in range(N):
        ux, uy = action_direction(act_i, act_c, continuous, clip, b, i)
        force[b, i, 0] = ux * SENSITIVITY
        force[b, i, 1] = uy * SENSITIVITY

    # (2) soft contact forces between agents, accumulated in mpe2's pair order (a ascending, c > a)
    dmin = AGENT_SIZE + AGENT_SIZE
    for a in range(N):
        for c in range(a + 1, N):
            dx = pos[b, a, 0] - pos[b, c, 0]
            dy = pos[b, a, 1] - pos[b, c, 1]
            dist = np.sqrt(dx * dx + dy * dy)
            if dist == 0.0:
                continue  # coincident centres: direction undefined (mpe2 would produce NaN)
            pen = logaddexp0(-(dist - dmin) / CONTACT_MARGIN) * CONTACT_MARGIN
            fx = CONTACT_FORCE * dx / dist * pen
            fy = CONTACT_FORCE * dy / dist * pen
            force[b, a, 0] = fx + force[b, a, 0]
            force[b, a, 1] = fy + force[b, a, 1]
            force[b, c, 0] = -fx + force[b, c, 0]
            force[b, c, 1] = -fy + force[b, c, 1]

    # (3) integration: "paper" = openai MPE (velocity, then position); "mpe2" = position first
    for i in range(N):
        if variant == VARIANT_MPE2:
            pos[b, i, 0] += vel[b, i, 0] * DT
            pos[b, i, 1] += vel[b, i, 1] * DT
        vx = vel[b, i, 0] * (1.0 - DAMPING)
        vy = vel[b, i, 1] * (1.0 - DAMPING)
        vx += (force[b, i, 0] / AGENT_MASS) * DT
        vy += (force[b, i, 1] / AGENT_MASS) * DT
        vel[b, i, 0] = vx
        vel[b, i, 1] = vy
        if variant == VARIANT_PAPER:
            pos[b, i, 0] += vx * DT
            pos[b, i, 1] += vy * DT

    # (4) coverage distance D = sum_l min_i |p_i - l|, occupied landmarks
    g = 0.0
    occupied = 0
    for j in range(L):
        best = np.inf
        for i in range(N):
            dx = pos[b, i, 0] - lm[b, j, 0]
            dy = pos[b, i, 1] - lm[b, j, 1]
            d = np.sqrt(dx * dx + dy * dy)
            if d < best:
                best = d
        g -= best
        if best < OCCUPY_RADIUS:
            occupied += 1
    # collisions C_i = #{k != i : |p_i - p_k| < 2 * size}; stored (negated) in rew as scratch
    pairs = 0
    for i in range(N):
        rew[b, i] = 0.0
    for a in range(N):
        for c in range(a + 1, N):
            dx = pos[b, a, 0] - pos[b, c, 0]
            dy = pos[b, a, 1] - pos[b, c, 1]
            if np.sqrt(dx * dx + dy * dy) < dmin:
                pairs += 1
                rew[b, a] -= 1.0
                rew[b, c] -= 1.0

    # (5) rewards from G = -D and L_i = -C_i
    if reward_mode == MPE2:
        for i in range(N):
            rew[b, i] = g * (1.0 - local_ratio) + rew[b, i] * local_ratio
    elif reward_mode == PRIVATE:
        rew[b, 0] = g + rew[b, 0]
    else:
        team = g
        for i in range(N):
            team += rew[b, i]
        for i in range(N):
            rew[b, i] = team
    metrics[0, b] = -g
    metrics[1, b] = pairs
    metrics[2, b] = occupied

    # (6) observation, bookkeeping, auto-reset
    _write_obs(b, B, pos, vel, lm, obs, obs_off, obs_dim)
    t[b] += 1
    for i in range(N):
        ep_ret[b, i] += rew[b, i]
        ep_ret_out[b, i] = ep_ret[b, i]
    ep_len_out[b] = t[b]
    done = t[b] >= max_cycles
    term[b] = False
    trunc[b] = done
    if done and autoreset:
        # final_obs rows are written only for finished environments; the driver fills the others from obs
        copy_obs(b, obs, final_obs, obs_off, obs_dim)
        _reset_env(b, pos, vel, lm, t, ep_ret, buf, ptr)
        _write_obs(b, B, pos, vel, lm, obs, obs_off, obs_dim)


# --------------------------------------------------------------------------------------------------------------
# Numba entry points
# --------------------------------------------------------------------------------------------------------------


@njit(cache=True)
def nav_reset(mask, pos, vel, lm, t, ep_ret, buf, ptr, obs, obs_off, obs_dim):
    """Reset the environments where ``mask`` is true and write their first observations into ``obs``."""
    B = pos.shape[0]
    for b in range(B):
        if mask[b]:
            _reset_env(b, pos, vel, lm, t, ep_ret, buf, ptr)
            _write_obs(b, B, pos, vel, lm, obs, obs_off, obs_dim)


@njit(cache=True)
def nav_step(pos, vel, lm, t, ep_ret, act_i, act_c, cfg_i, cfg_f, buf, ptr, force,
             obs, final_obs, obs_off, obs_dim, rew, term, trunc, metrics, ep_ret_out, ep_len_out):
    """Advance all B environments one step (serial loop). Returns -1, or b * N + i of a bad action."""
    bad = check_actions(act_i, act_c, cfg_i[0] != 0, cfg_i[1] != 0)
    if bad >= 0:
        return bad
    B = pos.shape[0]
    for b in range(B):
        _step_env(b, B, pos, vel, lm, t, ep_ret, act_i, act_c, cfg_i, cfg_f, buf, ptr, force,
                  obs, final_obs, obs_off, obs_dim, rew, term, trunc, metrics, ep_ret_out, ep_len_out)
    return -1


@njit(cache=True, parallel=True)
def nav_step_parallel(pos, vel, lm, t, ep_ret, act_i, act_c, cfg_i, cfg_f, buf, ptr, force,
                      obs, final_obs, obs_off, obs_dim, rew, term, trunc, metrics, ep_ret_out, ep_len_out):
    """``nav_step`` with the loop over environments spread over Numba's threads (``prange``)."""
    bad = check_actions(act_i, act_c, cfg_i[0] != 0, cfg_i[1] != 0)
    if bad >= 0:
        return bad
    B = pos.shape[0]
    for b in prange(B):
        _step_env(b, B, pos, vel, lm, t, ep_ret, act_i, act_c, cfg_i, cfg_f, buf, ptr, force,
                  obs, final_obs, obs_off, obs_dim, rew, term, trunc, metrics, ep_ret_out, ep_len_out)
    return -1


# --------------------------------------------------------------------------------------------------------------
# NumPy twins (vectorized over environments)
# --------------------------------------------------------------------------------------------------------------


def _obs_views(obs, obs_off, obs_dim, B):
    return [obs[o : o + B * d].reshape(B, d) for o, d in zip(obs_off, obs_dim)]


def _write_obs_numpy(idx, pos, vel, lm, obs, obs_off, obs_dim):
    B, N, _ = pos.shape
    views = _obs_views(obs, obs_off, obs_dim, B)
    p = pos[idx]
    for i in range(N):
        others = [k for k in range(N) if k != i]
        parts = [vel[idx, i], p[:, i], (lm[idx] - p[:, i : i + 1]).reshape(len(idx), -1)]
        parts.append((p[:, others] - p[:, i : i + 1]).reshape(len(idx), -1))
        views[i][idx] = np.concatenate(parts, axis=1)


def _reset_numpy(idx, pos, vel, lm, t, ep_ret, buf, ptr):
    N, L = pos.shape[1], lm.shape[1]
    cols = ptr[idx][:, None] + np.arange(2 * N + 2 * L)[None, :]
    u = buf[idx[:, None], cols]
    pos[idx] = (-1.0 + 2.0 * u[:, : 2 * N]).reshape(-1, N, 2)
    vel[idx] = 0.0
    lm[idx] = (-1.0 + 2.0 * u[:, 2 * N :]).reshape(-1, L, 2)
    ptr[idx] += 2 * N + 2 * L
    t[idx] = 0
    ep_ret[idx] = 0.0


def nav_reset_numpy(mask, pos, vel, lm, t, ep_ret, buf, ptr, obs, obs_off, obs_dim):
    """NumPy twin of :func:`nav_reset`."""
    idx = np.flatnonzero(mask)
    if idx.size:
        _reset_numpy(idx, pos, vel, lm, t, ep_ret, buf, ptr)
        _write_obs_numpy(idx, pos, vel, lm, obs, obs_off, obs_dim)


def nav_step_numpy(pos, vel, lm, t, ep_ret, act_i, act_c, cfg_i, cfg_f, buf, ptr, force,
                   obs, final_obs, obs_off, obs_dim, rew, term, trunc, metrics, ep_ret_out, ep_len_out):
    """NumPy twin of :func:`nav_step`."""
    continuous, clip, variant, reward_mode, max_cycles, autoreset = (int(x) for x in cfg_i)
    local_ratio = float(cfg_f[0])
    bad = check_actions_numpy(act_i, act_c, continuous, clip)
    if bad >= 0:
        return bad
    B, N, _ = pos.shape
    ux, uy = action_direction_numpy(act_i, act_c, continuous, clip)
    force[..., 0] = ux * SENSITIVITY
    force[..., 1] = uy * SENSITIVITY
    dmin = AGENT_SIZE + AGENT_SIZE
    for a in range(N):
        for c in range(a + 1, N):
            d = pos[:, a] - pos[:, c]
            dist = np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])
            ok = dist != 0.0
            safe = np.where(ok, dist, 1.0)
            pen = logaddexp0_numpy(-(safe - dmin) / CONTACT_MARGIN) * CONTACT_MARGIN
            f = CONTACT_FORCE * d / safe[:, None] * pen[:, None]
            f[~ok] = 0.0
            force[:, a] = f + force[:, a]
            force[:, c] = -f + force[:, c]
    if variant == VARIANT_MPE2:
        pos += vel * DT
    vel *= 1.0 - DAMPING
    vel += (force / AGENT_MASS) * DT
    if variant == VARIANT_PAPER:
        pos += vel * DT

    diff = pos[:, :, None, :] - lm[:, None, :, :]  # (B, N, L, 2)
    dist_al = np.sqrt(diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1])
    best = dist_al.min(axis=1)  # (B, L)
    g = np.zeros(B)
    for j in range(lm.shape[1]):
        g -= best[:, j]
    occupied = (best < OCCUPY_RADIUS).sum(axis=1)
    local = np.zeros((B, N))
    pairs = np.zeros(B, dtype=np.int64)
    for a in range(N):
        for c in range(a + 1, N):
            d = pos[:, a] - pos[:, c]
            hit = np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]) < dmin
            pairs += hit
            local[:, a] -= hit
            local[:, c] -= hit
    if reward_mode == MPE2:
        rew[:] = g[:, None] * (1.0 - local_ratio) + local * local_ratio
    elif reward_mode == PRIVATE:
        rew[:] = local
        rew[:, 0] = g + local[:, 0]
    else:
        team = g.copy()
        for i in range(N):
            team += local[:, i]
        rew[:] = team[:, None]
    metrics[0] = -g
    metrics[1] = pairs
    metrics[2] = occupied

    every = np.arange(B)
    _write_obs_numpy(every, pos, vel, lm, obs, obs_off, obs_dim)
    t += 1
    ep_ret += rew
    ep_ret_out[:] = ep_ret
    ep_len_out[:] = t
    done = t >= max_cycles
    term[:] = False
    trunc[:] = done
    if autoreset and done.any():
        idx = np.flatnonzero(done)
        for src, dst in zip(_obs_views(obs, obs_off, obs_dim, B), _obs_views(final_obs, obs_off, obs_dim, B)):
            dst[idx] = src[idx]
        _reset_numpy(idx, pos, vel, lm, t, ep_ret, buf, ptr)
        _write_obs_numpy(idx, pos, vel, lm, obs, obs_off, obs_dim)
    return -1
