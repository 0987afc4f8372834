"""Numba kernels (and their plain-NumPy twins) for batched Cooperative Treasure Collection.

The maths and conventions are documented in :mod:`marl.envs.treasure_collection_v0`. Agents are ordered hunters
first (0 .. H-1), then banks (H .. N-1); bank ``H + k`` accepts treasure type ``k``.

Array conventions (B environments, N agents, H hunters, T treasures, K types = banks):

=================  ==============  =========  =====================================================
name               shape           dtype      meaning
=================  ==============  =========  =====================================================
``pos``, ``vel``   (B, N, 2)       float64    agent positions and velocities
``hold``           (B, N)          int64      type held by each hunter, -1 when empty (banks: -1)
``tpos``           (B, T, 2)       float64    treasure positions
``ttype``          (B, T)          int64      treasure types in [0, K)
``talive``         (B, T)          bool       treasure present (false for one step after pickup)
``size``, ``mass`` (N,)            float64    per-agent radius and mass
``btype``          (N,)            int64      type accepted by each bank, -1 for hunters
``cfg_i``          (8,)            int64      continuous, clip, variant, reward_mode, max_cycles,
                                              autoreset, H, K
``order``, ``key`` (B, max(N, T))  i64, f64   sorting scratch
``metrics``        (4, B)          float64    collected, deposited, colliding hunter pairs, holding
=================  ==============  =========  =====================================================
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

HUNTER_SIZE = 0.05
BANK_SIZE = 0.075
TREASURE_SIZE = 0.025
HUNTER_MASS = 1.0
BANK_MASS = 2.25
ACCEL = 1.5
MAX_SPEED = 1.0
RESPAWN_BOUND = 0.95
EVENT_REWARD = 5.0
COLLISION_PENALTY = 5.0
SHAPING = 0.1
N_METRICS = 4


def obs_dims(n_hunters: int, n_banks: int, n_treasures: int) -> list[int]:
    """Return the observation length of every agent (hunters first)."""
    n, k = n_hunters + n_banks, n_banks
    common = 4 + (n - 1) * (4 + 2 * k) + n_treasures * (2 + k)
    return [common + k] * n_hunters + [common] * n_banks


def rng_reserve(n_agents: int, n_treasures: int) -> int:
    """Return the most uniforms one step can consume per environment (respawns, then one reset)."""
    return 2 * n_agents + 6 * n_treasures


# --------------------------------------------------------------------------------------------------------------
# Numba building blocks
# --------------------------------------------------------------------------------------------------------------


@njit(cache=True)
def _dist(ax, ay, bx, by):
    dx = ax - bx
    dy = ay - by
    return np.sqrt(dx * dx + dy * dy)


@njit(cache=True)
def _reset_env(b, pos, vel, hold, tpos, ttype, talive, t, ep_ret, n_types, buf, ptr):
    # Agents (x, y) ~ U(-1, 1)^2; treasures (x, y) ~ U(-0.95, 0.95)^2 then type ~ U{0..K-1}.
    p = ptr[b]
    for i in range(pos.shape[1]):
        pos[b, i, 0] = -1.0 + 2.0 * buf[b, p]
        pos[b, i, 1] = -1.0 + 2.0 * buf[b, p + 1]
        p += 2
        vel[b, i, 0] = 0.0
        vel[b, i, 1] = 0.0
        hold[b, i] = -1
        ep_ret[b, i] = 0.0
    for k in range(tpos.shape[1]):
        tpos[b, k, 0] = -RESPAWN_BOUND + 2.0 * RESPAWN_BOUND * buf[b, p]
        tpos[b, k, 1] = -RESPAWN_BOUND + 2.0 * RESPAWN_BOUND * buf[b, p + 1]
        ttype[b, k] = min(int(buf[b, p + 2] * n_types), n_types - 1)
        talive[b, k] = True
        p += 3
    ptr[b] = p
    t[b] = 0


@njit(cache=True)
def _post_step(b, pos, hold, tpos, ttype, talive, size, btype, n_hunters, n_types, dead_xy, buf, ptr):
    """Pickups, respawns and deliveries; returns (#pickups, #deliveries)."""
    N = pos.shape[1]
    picks = 0
    for k in range(tpos.shape[1]):
        if talive[b, k]:
            for h in range(n_hunters):
                if hold[b, h] < 0 and _dist(tpos[b, k, 0], tpos[b, k, 1], pos[b, h, 0], pos[b, h, 1]) < (
                    TREASURE_SIZE + size[h]
                ):
                    hold[b, h] = ttype[b, k]
                    talive[b, k] = False
                    tpos[b, k, 0] = dead_xy
                    tpos[b, k, 1] = dead_xy
                    picks += 1
                    break
        else:
            p = ptr[b]
            tpos[b, k, 0] = -RESPAWN_BOUND + 2.0 * RESPAWN_BOUND * buf[b, p]
            tpos[b, k, 1] = -RESPAWN_BOUND + 2.0 * RESPAWN_BOUND * buf[b, p + 1]
            ttype[b, k] = min(int(buf[b, p + 2] * n_types), n_types - 1)
            talive[b, k] = True
            ptr[b] = p + 3
    drops = 0
    for h in range(n_hunters):
        if hold[b, h] >= 0:
            for d in range(n_hunters, N):
                if btype[d] == hold[b, h] and _dist(pos[b, h, 0], pos[b, h, 1], pos[b, d, 0], pos[b, d, 1]) < (
                    size[h] + size[d]
                ):
                    hold[b, h] = -1
                    drops += 1
                    break
    return picks, drops


@njit(cache=True, inline="always")
def _sort(b, order, key, n):
    # stable insertion sort of order[b, :n] by key[b, :n] (ties keep index order, like Python's sorted)
    for i in range(1, n):
        ki = key[b, i]
        oi = order[b, i]
        j = i - 1
        while j >= 0 and key[b, j] > ki:
            key[b, j + 1] = key[b, j]
            order[b, j + 1] = order[b, j]
            j -= 1
        key[b, j + 1] = ki
        order[b, j + 1] = oi


@njit(cache=True)
def _write_obs(b, pos, vel, hold, tpos, ttype, talive, btype, n_hunters, n_types, variant, order, key,
               obs, obs_off, obs_dim):
    N = pos.shape[1]
    T = tpos.shape[1]
    K = n_types
    for i in range(N):
        o = obs_off[i] + b * obs_dim[i]
        px = pos[b, i, 0]
        py = pos[b, i, 1]
        obs[o] = px
        obs[o + 1] = py
        obs[o + 2] = vel[b, i, 0]
        obs[o + 3] = vel[b, i, 1]
        o += 4
        if i < n_hunters:
            for k in range(K):
                obs[o + k] = 1.0 if hold[b, i] == k else 0.0
            o += K
        # other agents, nearest first
        n = 0
        for j in range(N):
            if j != i:
                order[b, n] = j
                key[b, n] = _dist(pos[b, j, 0], pos[b, j, 1], px, py)
                n += 1
        _sort(b, order, key, n)
        for m in range(n):
            j = order[b, m]
            obs[o] = pos[b, j, 0] - px
            obs[o + 1] = pos[b, j, 1] - py
            obs[o + 2] = vel[b, j, 0]
            obs[o + 3] = vel[b, j, 1]
            o += 4
            for k in range(2 * K):
                obs[o + k] = 0.0
            if j < n_hunters:
                if hold[b, j] >= 0:
                    obs[o + K + hold[b, j]] = 1.0
            else:
                obs[o + btype[j]] = 1.0
            o += 2 * K
        # treasures, nearest first ("mpe2": removed ones last, as zeros)
        for k in range(T):
            order[b, k] = k
            if variant == VARIANT_MPE2 and not talive[b, k]:
                key[b, k] = np.inf
            else:
                key[b, k] = _dist(tpos[b, k, 0], tpos[b, k, 1], px, py)
        _sort(b, order, key, T)
        for m in range(T):
            k = order[b, m]
            if variant == VARIANT_MPE2 and not talive[b, k]:
                for q in range(2 + K):
                    obs[o + q] = 0.0
            else:
                obs[o] = tpos[b, k, 0] - px
                obs[o + 1] = tpos[b, k, 1] - py
                for q in range(K):
                    obs[o + 2 + q] = 1.0 if ttype[b, k] == q else 0.0
            o += 2 + K


@njit(cache=True, inline="always")
def _shaping_distance(b, h, pos, hold, tpos, talive, btype, n_hunters):
    # S_h: nearest present treasure when empty (0 if none), nearest bank of the held type when holding
    best = np.inf
    if hold[b, h] < 0:
        for k in range(tpos.shape[1]):
            if talive[b, k]:
                d = _dist(tpos[b, k, 0], tpos[b, k, 1], pos[b, h, 0], pos[b, h, 1])
                if d < best:
                    best = d
    else:
        for d_ in range(n_hunters, pos.shape[1]):
            if btype[d_] == hold[b, h]:
                d = _dist(pos[b, d_, 0], pos[b, d_, 1], pos[b, h, 0], pos[b, h, 1])
                if d < best:
                    best = d
    return 0.0 if best == np.inf else best


@njit(cache=True, inline="always")
def _bank_distance(b, d, pos, hold, btype, n_hunters):
    # D_d: nearest hunter holding the bank's type, else distance to the hunters' centroid
    best = np.inf
    for h in range(n_hunters):
        if hold[b, h] == btype[d]:
            dist = _dist(pos[b, h, 0], pos[b, h, 1], pos[b, d, 0], pos[b, d, 1])
            if dist < best:
                best = dist
    if best < np.inf:
        return best
    cx = 0.0
    cy = 0.0
    for h in range(n_hunters):
        cx += pos[b, h, 0]
        cy += pos[b, h, 1]
    cx /= n_hunters
    cy /= n_hunters
    return _dist(cx, cy, pos[b, d, 0], pos[b, d, 1])


@njit(cache=True)
def _step_env(b, pos, vel, hold, tpos, ttype, talive, t, ep_ret, act_i, act_c, cfg_i, size, mass, btype,
              buf, ptr, force, order, key, obs, final_obs, obs_off, obs_dim, rew, term, trunc, metrics,
              ep_ret_out, ep_len_out):
    continuous = cfg_i[0] != 0
    clip = cfg_i[1] != 0
    variant = cfg_i[2]
    reward_mode = cfg_i[3]
    max_cycles = cfg_i[4]
    autoreset = cfg_i[5] != 0
    H = cfg_i[6]
    K = cfg_i[7]
    N = pos.shape[1]
    T = tpos.shape[1]

    # (1) control forces; the paper's world (MAAC/new_core) scales by mass * accel again
    for i in range(N):
        ux, uy = action_direction(act_i, act_c, continuous, clip, b, i)
        ux = ux * ACCEL
        uy = uy * ACCEL
        if variant == VARIANT_PAPER:
            force[b, i, 0] = (mass[i] * ACCEL) * ux
            force[b, i, 1] = (mass[i] * ACCEL) * uy
        else:
            force[b, i, 0] = ux
            force[b, i, 1] = uy

    # (2) contact forces between all agents, scaled by the mass ratio ("paper" only; mpe2 agents are ghosts)
    if variant == VARIANT_PAPER:
        for a in range(N):
            for c in range(a + 1, N):
                dx = pos[b, a, 0] - pos[b, c, 0]
                dy = pos[b, a, 1] - pos[b, c, 1]
                dist = np.sqrt(dx * dx + dy * dy)
                if dist == 0.0:
                    continue
                pen = logaddexp0(-(dist - (size[a] + size[c])) / CONTACT_MARGIN) * CONTACT_MARGIN
                fx = CONTACT_FORCE * dx / dist * pen
                fy = CONTACT_FORCE * dy / dist * pen
                ratio = mass[c] / mass[a]
                force[b, a, 0] = ratio * fx + force[b, a, 0]
                force[b, a, 1] = ratio * fy + force[b, a, 1]
                inv = -(1.0 / ratio)
                force[b, c, 0] = inv * fx + force[b, c, 0]
                force[b, c, 1] = inv * fy + force[b, c, 1]

    # (3) integration with the speed limit
    for i in range(N):
        if variant == VARIANT_MPE2:
            pos[b, i, 0] += vel[b, i, 0] * DT
            pos[b, i, 1] += vel[b, i, 1] * DT
        vx = vel[b, i, 0] * (1.0 - DAMPING)
        vy = vel[b, i, 1] * (1.0 - DAMPING)
        vx += (force[b, i, 0] / mass[i]) * DT
        vy += (force[b, i, 1] / mass[i]) * DT
        speed = np.sqrt(vx * vx + vy * vy)
        if speed > MAX_SPEED:
            s = np.sqrt(vx * vx + vy * vy)
            vx = vx / s * MAX_SPEED
            vy = vy / s * MAX_SPEED
        vel[b, i, 0] = vx
        vel[b, i, 1] = vy
        if variant == VARIANT_PAPER:
            pos[b, i, 0] += vx * DT
            pos[b, i, 1] += vy * DT

    # (4) events: mpe2 runs pickup/delivery before rewards; the paper rewards contacts and updates afterwards
    picks = 0
    drops = 0
    if variant == VARIANT_MPE2:
        picks, drops = _post_step(b, pos, hold, tpos, ttype, talive, size, btype, H, K, -999.0, buf, ptr)
        n_collect = picks
        n_deposit = drops
    else:
        n_collect = 0
        for k in range(T):
            if talive[b, k]:
                for h in range(H):
                    if hold[b, h] < 0 and _dist(tpos[b, k, 0], tpos[b, k, 1], pos[b, h, 0], pos[b, h, 1]) < (
                        TREASURE_SIZE + size[h]
                    ):
                        n_collect += 1
        n_deposit = 0
        for d in range(H, N):
            for h in range(H):
                if hold[b, h] == btype[d] and _dist(pos[b, h, 0], pos[b, h, 1], pos[b, d, 0], pos[b, d, 1]) < (
                    size[h] + size[d]
                ):
                    n_deposit += 1
    g_collect = EVENT_REWARD * n_collect
    g_deposit = EVENT_REWARD * n_deposit
    g_all = g_collect + g_deposit

    # (5) rewards; hunter collision counts first (rew used as scratch)
    pairs = 0
    for i in range(N):
        rew[b, i] = 0.0
    for a in range(H):
        for c in range(a + 1, H):
            if _dist(pos[b, a, 0], pos[b, a, 1], pos[b, c, 0], pos[b, c, 1]) < size[a] + size[c]:
                pairs += 1
                rew[b, a] -= COLLISION_PENALTY
                rew[b, c] -= COLLISION_PENALTY
    if reward_mode == MPE2:
        for h in range(H):
            rew[b, h] -= SHAPING * _shaping_distance(b, h, pos, hold, tpos, talive, btype, H)
            rew[b, h] += g_all
        for d in range(H, N):
            r = 0.0
            r -= SHAPING * _bank_distance(b, d, pos, hold, btype, H)
            rew[b, d] = r + g_all
    else:
        # S_h once per hunter (key is free scratch until the observations are written)
        for h in range(H):
            key[b, h] = _shaping_distance(b, h, pos, hold, tpos, talive, btype, H)
        for d in range(H, N):
            r = 0.0
            r -= SHAPING * _bank_distance(b, d, pos, hold, btype, H)
            r += g_deposit
            for h in range(H):
                r -= SHAPING * key[b, h]
                r += g_all
            rew[b, d] = r
        if reward_mode != PRIVATE:
            team = 0.0
            for i in range(N):
                team += rew[b, i]
            for i in range(N):
                rew[b, i] = team

    # (6) observations (paper: before pickups/deliveries), then the paper's post-step
    _write_obs(b, pos, vel, hold, tpos, ttype, talive, btype, H, K, variant, order, key, obs, obs_off, obs_dim)
    if variant == VARIANT_PAPER:
        picks, drops = _post_step(b, pos, hold, tpos, ttype, talive, size, btype, H, K, 0.0, buf, ptr)
    holding = 0
    for h in range(H):
        if hold[b, h] >= 0:
            holding += 1
    metrics[0, b] = picks
    metrics[1, b] = drops
    metrics[2, b] = pairs
    metrics[3, b] = holding

    # (7) bookkeeping and auto-reset (final_obs rows only for finished environments)
    t[b] += 1
    for i in range(N):
        ep_ret[b, i] += rew[b, i]
        ep_ret_out[b, i] = ep_ret[b, i]
    ep_len_out[b] = t[b]
    done = t[b] >= max_cycles
    term[b] = False
    trunc[b] = done
    if done and autoreset:
        copy_obs(b, obs, final_obs, obs_off, obs_dim)
        _reset_env(b, pos, vel, hold, tpos, ttype, talive, t, ep_ret, K, buf, ptr)
        _write_obs(b, pos, vel, hold, tpos, ttype, talive, btype, H, K, variant, order, key, obs, obs_off, obs_dim)


# --------------------------------------------------------------------------------------------------------------
# Numba entry points
# --------------------------------------------------------------------------------------------------------------


@njit(cache=True)
def tc_reset(mask, pos, vel, hold, tpos, ttype, talive, t, ep_ret, cfg_i, btype, buf, ptr, order, key,
             obs, obs_off, obs_dim):
    """Reset the environments where ``mask`` is true and write their first observations into ``obs``."""
    for b in range(pos.shape[0]):
        if mask[b]:
            _reset_env(b, pos, vel, hold, tpos, ttype, talive, t, ep_ret, cfg_i[7], buf, ptr)
            _write_obs(b, pos, vel, hold, tpos, ttype, talive, btype, cfg_i[6], cfg_i[7], cfg_i[2], order, key,
                       obs, obs_off, obs_dim)


@njit(cache=True)
def tc_step(pos, vel, hold, tpos, ttype, talive, t, ep_ret, act_i, act_c, cfg_i, size, mass, btype, buf, ptr,
            force, order, key, obs, final_obs, obs_off, obs_dim, rew, term, trunc, metrics, ep_ret_out, ep_len_out):
    """Advance all B environments one step (serial loop). Returns -1, or b * N + i of a bad action."""
    bad = check_actions(act_i, act_c, cfg_i[0] != 0, cfg_i[1] != 0)
    if bad >= 0:
        return bad
    for b in range(pos.shape[0]):
        _step_env(b, pos, vel, hold, tpos, ttype, talive, t, ep_ret, act_i, act_c, cfg_i, size, mass, btype,
                  buf, ptr, force, order, key, obs, final_obs, obs_off, obs_dim, rew, term, trunc, metrics,
                  ep_ret_out, ep_len_out)
    return -1


@njit(cache=True, parallel=True)
def tc_step_parallel(pos, vel, hold, tpos, ttype, talive, t, ep_ret, act_i, act_c, cfg_i, size, mass, btype, buf,
                     ptr, force, order, key, obs, final_obs, obs_off, obs_dim, rew, term, trunc, metrics,
                     ep_ret_out, ep_len_out):
    """``tc_step`` with the loop over environments spread over Numba's threads (``prange``)."""
    bad = check_actions(act_i, act_c, cfg_i[0] != 0, cfg_i[1] != 0)
    if bad >= 0:
        return bad
    for b in prange(pos.shape[0]):
        _step_env(b, pos, vel, hold, tpos, ttype, talive, t, ep_ret, act_i, act_c, cfg_i, size, mass, btype,
                  buf, ptr, force, order, key, obs, final_obs, obs_off, obs_dim, rew, term, trunc, metrics,
                  ep_ret_out, ep_len_out)
    return -1


# --------------------------------------------------------------------------------------------------------------
# NumPy twins (vectorized over environments; loops over agents and treasures)
# --------------------------------------------------------------------------------------------------------------


def _norm(v):
    return np.sqrt(v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1])


def _reset_numpy(idx, pos, vel, hold, tpos, ttype, talive, t, ep_ret, n_types, buf, ptr):
    N, T = pos.shape[1], tpos.shape[1]
    cols = ptr[idx][:, None] + np.arange(2 * N + 3 * T)[None, :]
    u = buf[idx[:, None], cols]
    pos[idx] = (-1.0 + 2.0 * u[:, : 2 * N]).reshape(-1, N, 2)
    vel[idx] = 0.0
    hold[idx] = -1
    ep_ret[idx] = 0.0
    ut = u[:, 2 * N :].reshape(-1, T, 3)
    tpos[idx] = -RESPAWN_BOUND + 2.0 * RESPAWN_BOUND * ut[:, :, :2]
    ttype[idx] = np.minimum((ut[:, :, 2] * n_types).astype(np.int64), n_types - 1)
    talive[idx] = True
    ptr[idx] += 2 * N + 3 * T
    t[idx] = 0


def _post_step_numpy(pos, hold, tpos, ttype, talive, size, btype, n_hunters, n_types, dead_xy, buf, ptr):
    B, N, _ = pos.shape
    picks = np.zeros(B, dtype=np.int64)
    for k in range(tpos.shape[1]):
        alive = talive[:, k].copy()
        taken = np.zeros(B, dtype=bool)
        for h in range(n_hunters):
            touch = _norm(tpos[:, k] - pos[:, h]) < TREASURE_SIZE + size[h]
            grab = alive & ~taken & (hold[:, h] < 0) & touch
            hold[grab, h] = ttype[grab, k]
            taken |= grab
        talive[taken, k] = False
        tpos[taken, k] = dead_xy
        picks += taken
        respawn = np.flatnonzero(~alive)
        if respawn.size:
            p = ptr[respawn]
            tpos[respawn, k, 0] = -RESPAWN_BOUND + 2.0 * RESPAWN_BOUND * buf[respawn, p]
            tpos[respawn, k, 1] = -RESPAWN_BOUND + 2.0 * RESPAWN_BOUND * buf[respawn, p + 1]
            ttype[respawn, k] = np.minimum((buf[respawn, p + 2] * n_types).astype(np.int64), n_types - 1)
            talive[respawn, k] = True
            ptr[respawn] = p + 3
    drops = np.zeros(B, dtype=np.int64)
    for h in range(n_hunters):
        delivered = np.zeros(B, dtype=bool)
        for d in range(n_hunters, N):
            hit = (hold[:, h] >= 0) & (hold[:, h] == btype[d]) & (_norm(pos[:, h] - pos[:, d]) < size[h] + size[d])
            delivered |= hit
        hold[delivered, h] = -1
        drops += delivered
    return picks, drops


def _write_obs_numpy(idx, pos, vel, hold, tpos, ttype, talive, btype, n_hunters, n_types, variant,
                     obs, obs_off, obs_dim):
    B, N, _ = pos.shape
    K = n_types
    nb = len(idx)
    p, v, hd, tp, tt, ta = pos[idx], vel[idx], hold[idx], tpos[idx], ttype[idx], talive[idx]
    eye = np.eye(K)
    enc = np.zeros((nb, N, 2 * K))
    for j in range(N):
        if j < n_hunters:
            has = hd[:, j] >= 0
            enc[has, j, K:] = eye[hd[has, j]]
        else:
            enc[:, j, btype[j]] = 1.0
    tonehot = eye[tt]  # (nb, T, K)
    for i in range(N):
        parts = [p[:, i], v[:, i]]
        if i < n_hunters:
            oh = np.zeros((nb, K))
            has = hd[:, i] >= 0
            oh[has] = eye[hd[has, i]]
            parts.append(oh)
        others = np.array([j for j in range(N) if j != i])
        rel = p[:, others] - p[:, i : i + 1]
        order = np.argsort(_norm(rel), axis=1, kind="stable")
        sel = others[order]  # (nb, N-1)
        rows = np.arange(nb)[:, None]
        block = np.concatenate([p[rows, sel] - p[:, i : i + 1], v[rows, sel], enc[rows, sel]], axis=2)
        parts.append(block.reshape(nb, -1))
        trel = tp - p[:, i : i + 1]
        tkey = _norm(trel)
        if variant == VARIANT_MPE2:
            tkey = np.where(ta, tkey, np.inf)
        torder = np.argsort(tkey, axis=1, kind="stable")
        tblock = np.concatenate([trel[rows, torder], tonehot[rows, torder]], axis=2)
        if variant == VARIANT_MPE2:
            tblock[~ta[rows, torder]] = 0.0
        parts.append(tblock.reshape(nb, -1))
        view = obs[obs_off[i] : obs_off[i] + B * obs_dim[i]].reshape(B, obs_dim[i])
        view[idx] = np.concatenate(parts, axis=1)


def _shaping_distance_numpy(pos, hold, tpos, talive, btype, n_hunters, h):
    to_treasure = np.where(talive, _norm(tpos - pos[:, h : h + 1]), np.inf).min(axis=1)
    to_bank = np.full(pos.shape[0], np.inf)
    for d in range(n_hunters, pos.shape[1]):
        match = hold[:, h] == btype[d]
        to_bank = np.where(match, np.minimum(to_bank, _norm(pos[:, d] - pos[:, h])), to_bank)
    best = np.where(hold[:, h] < 0, to_treasure, to_bank)
    return np.where(np.isinf(best), 0.0, best)


def _bank_distance_numpy(pos, hold, btype, n_hunters, d):
    hunters = pos[:, :n_hunters]
    holding = hold[:, :n_hunters] == btype[d]
    best = np.where(holding, _norm(hunters - pos[:, d : d + 1]), np.inf).min(axis=1)
    c = np.zeros((pos.shape[0], 2))
    for h in range(n_hunters):
        c += pos[:, h]
    c /= n_hunters
    return np.where(np.isinf(best), _norm(c - pos[:, d]), best)


def tc_reset_numpy(mask, pos, vel, hold, tpos, ttype, talive, t, ep_ret, cfg_i, btype, buf, ptr, order, key,
                   obs, obs_off, obs_dim):
    """NumPy twin of :func:`tc_reset`."""
    idx = np.flatnonzero(mask)
    if idx.size:
        _reset_numpy(idx, pos, vel, hold, tpos, ttype, talive, t, ep_ret, int(cfg_i[7]), buf, ptr)
        _write_obs_numpy(idx, pos, vel, hold, tpos, ttype, talive, btype, int(cfg_i[6]), int(cfg_i[7]),
                         int(cfg_i[2]), obs, obs_off, obs_dim)


def tc_step_numpy(pos, vel, hold, tpos, ttype, talive, t, ep_ret, act_i, act_c, cfg_i, size, mass, btype, buf,
                  ptr, force, order, key, obs, final_obs, obs_off, obs_dim, rew, term, trunc, metrics,
                  ep_ret_out, ep_len_out):
    """NumPy twin of :func:`tc_step`."""
    continuous, clip, variant, reward_mode, max_cycles, autoreset, H, K = (int(x) for x in cfg_i)
    bad = check_actions_numpy(act_i, act_c, continuous, clip)
    if bad >= 0:
        return bad
    B, N, _ = pos.shape
    ux, uy = action_direction_numpy(act_i, act_c, continuous, clip)
    ux = ux * ACCEL
    uy = uy * ACCEL
    if variant == VARIANT_PAPER:
        force[..., 0] = (mass * ACCEL) * ux
        force[..., 1] = (mass * ACCEL) * uy
        for a in range(N):
            for c in range(a + 1, N):
                d = pos[:, a] - pos[:, c]
                dist = _norm(d)
                ok = dist != 0.0
                safe = np.where(ok, dist, 1.0)
                pen = logaddexp0_numpy(-(safe - (size[a] + size[c])) / CONTACT_MARGIN) * CONTACT_MARGIN
                f = CONTACT_FORCE * d / safe[:, None] * pen[:, None]
                f[~ok] = 0.0
                ratio = mass[c] / mass[a]
                force[:, a] = ratio * f + force[:, a]
                force[:, c] = -(1.0 / ratio) * f + force[:, c]
    else:
        force[..., 0] = ux
        force[..., 1] = uy
    if variant == VARIANT_MPE2:
        pos += vel * DT
    vel *= 1.0 - DAMPING
    vel += (force / mass[None, :, None]) * DT
    speed = _norm(vel)
    fast = speed > MAX_SPEED
    vel[fast] = vel[fast] / speed[fast][:, None] * MAX_SPEED
    if variant == VARIANT_PAPER:
        pos += vel * DT

    picks = np.zeros(B, dtype=np.int64)
    drops = np.zeros(B, dtype=np.int64)
    if variant == VARIANT_MPE2:
        picks, drops = _post_step_numpy(pos, hold, tpos, ttype, talive, size, btype, H, K, -999.0, buf, ptr)
        n_collect, n_deposit = picks, drops
    else:
        n_collect = np.zeros(B, dtype=np.int64)
        for k in range(tpos.shape[1]):
            for h in range(H):
                n_collect += talive[:, k] & (hold[:, h] < 0) & (_norm(tpos[:, k] - pos[:, h]) < TREASURE_SIZE + size[h])
        n_deposit = np.zeros(B, dtype=np.int64)
        for d in range(H, N):
            for h in range(H):
                n_deposit += (hold[:, h] == btype[d]) & (_norm(pos[:, h] - pos[:, d]) < size[h] + size[d])
    g_collect = EVENT_REWARD * n_collect
    g_deposit = EVENT_REWARD * n_deposit
    g_all = g_collect + g_deposit

    rew[:] = 0.0
    pairs = np.zeros(B, dtype=np.int64)
    for a in range(H):
        for c in range(a + 1, H):
            hit = _norm(pos[:, a] - pos[:, c]) < size[a] + size[c]
            pairs += hit
            rew[hit, a] -= COLLISION_PENALTY
            rew[hit, c] -= COLLISION_PENALTY
    shaping = [_shaping_distance_numpy(pos, hold, tpos, talive, btype, H, h) for h in range(H)]
    if reward_mode == MPE2:
        for h in range(H):
            rew[:, h] -= SHAPING * shaping[h]
            rew[:, h] += g_all
        for d in range(H, N):
            rew[:, d] = (0.0 - SHAPING * _bank_distance_numpy(pos, hold, btype, H, d)) + g_all
    else:
        for d in range(H, N):
            r = 0.0 - SHAPING * _bank_distance_numpy(pos, hold, btype, H, d)
            r = r + g_deposit
            for h in range(H):
                r = r - SHAPING * shaping[h]
                r = r + g_all
            rew[:, d] = r
        if reward_mode != PRIVATE:
            team = np.zeros(B)
            for i in range(N):
                team += rew[:, i]
            rew[:] = team[:, None]

    every = np.arange(B)
    _write_obs_numpy(every, pos, vel, hold, tpos, ttype, talive, btype, H, K, variant, obs, obs_off, obs_dim)
    if variant == VARIANT_PAPER:
        picks, drops = _post_step_numpy(pos, hold, tpos, ttype, talive, size, btype, H, K, 0.0, buf, ptr)
    metrics[0] = picks
    metrics[1] = drops
    metrics[2] = pairs
    metrics[3] = (hold[:, :H] >= 0).sum(axis=1)

    t += 1
    ep_ret += rew
    ep_ret_out[:] = ep_ret
    ep_len_out[:] = t
    done = t >= max_cycles
    term[:] = False
    trunc[:] = done
    if autoreset and done.any():
        idx = np.flatnonzero(done)
        for o, d in zip(obs_off, obs_dim):
            src = obs[o : o + B * d].reshape(B, d)
            dst = final_obs[o : o + B * d].reshape(B, d)
            dst[idx] = src[idx]
        _reset_numpy(idx, pos, vel, hold, tpos, ttype, talive, t, ep_ret, K, buf, ptr)
        _write_obs_numpy(idx, pos, vel, hold, tpos, ttype, talive, btype, H, K, variant, obs, obs_off, obs_dim)
    return -1
