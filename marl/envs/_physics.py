"""What both particle tasks share: MPE's world constants, action decoding and soft-contact helper (Numba kernels
and their NumPy twins).

Cooperative Navigation (:mod:`marl.envs._navigation_kernels`) and Treasure Collection
(:mod:`marl.envs._treasure_kernels`) run in the same MPE world: the same time step, damping and soft contact
(openai/multiagent-particle-envs core.py; mpe2 _mpe_utils/core.py), the same five discrete moves and the same
continuous action layout (mpe2's Box(0, 1, (5,))). Each ``@njit`` function here keeps a NumPy twin (``*_numpy``).
The tasks' own entities, rewards and observations live in their kernels modules.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# World constants of MPE (openai/multiagent-particle-envs core.py; mpe2 _mpe_utils/core.py).
DT = 0.1
DAMPING = 0.25
CONTACT_FORCE = 100.0
CONTACT_MARGIN = 1e-3
N_MOVES = 5  # discrete actions: 0 no-op, 1 -x, 2 +x, 3 -y, 4 +y
CONT_DIM = 5  # continuous action length (mpe2 layout)
LOGE2 = 0.693147180559945309417232121458176568
EXP_UNDERFLOW = -746.0  # exp(x) == 0.0 in float64 for every x below this

# cfg_i codes shared by both tasks' kernels
PRIVATE, SHARED, MPE2 = 0, 1, 2  # reward modes
VARIANT_PAPER, VARIANT_MPE2 = 0, 1  # world variants


# --------------------------------------------------------------------------------------------------------------
# Numba building blocks
# --------------------------------------------------------------------------------------------------------------


@njit(cache=True)
def logaddexp0(x):
    """numpy.logaddexp(0, x) with NumPy's own branch structure (npy_logaddexp).

    Below x = -746, exp(x) underflows to 0 and the result is exactly 0; returning early skips exp and log1p
    for the (many) far-apart pairs without changing any bit.
    """
    if x < EXP_UNDERFLOW:
        return 0.0
    if x == 0.0:
        return LOGE2
    if x < 0.0:
        return np.log1p(np.exp(x))
    return x + np.log1p(np.exp(-x))


@njit(cache=True)
def check_actions(act_i, act_c, continuous, clip):
    """Return the flat index b * N + i of the first invalid action, or -1 if all are valid."""
    if continuous:
        B, N, C = act_c.shape
        for b in range(B):
            for i in range(N):
                for k in range(C):
                    a = act_c[b, i, k]
                    if not np.isfinite(a):
                        return b * N + i
                    if not clip and (a < 0.0 or a > 1.0):
                        return b * N + i
    else:
        B, N = act_i.shape
        for b in range(B):
            for i in range(N):
                a = act_i[b, i]
                if a < 0 or a >= N_MOVES:
                    return b * N + i
    return -1


@njit(cache=True, inline="always")
def action_direction(act_i, act_c, continuous, clip, b, i):
    """Return the unit-free control (u_x, u_y) of agent i in env b, before the sensitivity factor.

    Discrete: 1 -> (-1, 0), 2 -> (+1, 0), 3 -> (0, -1), 4 -> (0, +1), 0 -> (0, 0).
    Continuous (mpe2 layout, Box(0, 1, (5,))): u_x = a[2] - a[1], u_y = a[4] - a[3], computed in float32 as
    mpe2 does with its float32 actions, after clipping to [0, 1] when ``clip``.
    """
    if continuous:
        a1 = act_c[b, i, 1]
        a2 = act_c[b, i, 2]
        a3 = act_c[b, i, 3]
        a4 = act_c[b, i, 4]
        if clip:
            a1 = min(max(a1, np.float32(0.0)), np.float32(1.0))
            a2 = min(max(a2, np.float32(0.0)), np.float32(1.0))
            a3 = min(max(a3, np.float32(0.0)), np.float32(1.0))
            a4 = min(max(a4, np.float32(0.0)), np.float32(1.0))
        ux = np.float64(a2 - a1)
        uy = np.float64(a4 - a3)
        return ux, uy
    a = act_i[b, i]
    ux = 0.0
    uy = 0.0
    if a == 1:
        ux = -1.0
    elif a == 2:
        ux = 1.0
    elif a == 3:
        uy = -1.0
    elif a == 4:
        uy = 1.0
    return ux, uy


@njit(cache=True, inline="always")
def copy_obs(b, obs, final_obs, obs_off, obs_dim):
    """Copy environment b's rows of the flat observation buffer ``obs`` into ``final_obs`` (before a reset)."""
    for i in range(obs_off.shape[0]):
        o = obs_off[i] + b * obs_dim[i]
        for k in range(obs_dim[i]):
            final_obs[o + k] = obs[o + k]


# --------------------------------------------------------------------------------------------------------------
# NumPy twins
# --------------------------------------------------------------------------------------------------------------


def check_actions_numpy(act_i, act_c, continuous, clip):
    """NumPy twin of :func:`check_actions`."""
    if continuous:
        bad = ~np.isfinite(act_c)
        if not clip:
            bad |= (act_c < 0.0) | (act_c > 1.0)
        bad = bad.any(axis=2)
    else:
        bad = (act_i < 0) | (act_i >= N_MOVES)
    flat = np.flatnonzero(bad.reshape(-1))
    return int(flat[0]) if flat.size else -1


def action_direction_numpy(act_i, act_c, continuous, clip):
    """NumPy twin of :func:`action_direction` for all (b, i) at once; returns ux, uy of shape (B, N)."""
    if continuous:
        a = act_c.astype(np.float32)
        if clip:
            a = np.clip(a, np.float32(0.0), np.float32(1.0))
        return (a[..., 2] - a[..., 1]).astype(np.float64), (a[..., 4] - a[..., 3]).astype(np.float64)
    table = np.array([[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])
    u = table[act_i]
    return u[..., 0], u[..., 1]


def logaddexp0_numpy(x):
    """NumPy twin of :func:`logaddexp0`."""
    return np.logaddexp(0.0, x)
