"""Generalized advantage estimation on time-major tensors.

Problem: estimate A_t = Q(s_t, a_t) - V(s_t) along rollouts of length T (any number of parallel environments or
agents in the trailing dimensions), with episode ends of two kinds: *termination* (the MDP reached a terminal state,
whose value is 0) and *truncation* (a time limit or the end of the rollout cut an episode that would go on).

Symbols
-------
r_t       rewards[t]                        [T, ...]
V(s_t)    values[t]                         [T, ...]
V(s'_t)   next_values[t], value of the state reached after step t (the final observation at episode ends) [T, ...]
d_t       terminated[t]                     [T, ...] bool
u_t       truncated[t]                      [T, ...] bool
gamma     discount, lam the GAE trace parameter

Equations (Schulman et al. 2016, "High-Dimensional Continuous Control Using GAE", eqs. 11-16)
----------------------------------------------------------------------------------------------
(G1) delta_t = r_t + gamma (1 - d_t) V(s'_t) - V(s_t)          bootstrap unless terminated
(G2) A_t = delta_t + gamma lam (1 - max(d_t, u_t)) A_{t+1},  A_T = 0   trace cut at both kinds of end
(G3) R_t = A_t + V(s_t)                                       regression target of the value function

Departures
----------
The paper's single ``done`` is split in two (STYLE.md §4): truncation still bootstraps from V(s'_t) in (G1), which
the paper's infinite-horizon derivation assumes. The last step of a rollout needs no flag: A_T = 0 and V(s'_{T-1})
bootstrap it.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["compute_gae"]


def compute_gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    *,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Return GAE advantages and value targets, eqs. (G1)-(G3).

    Parameters
    ----------
    rewards, values, next_values : torch.Tensor
        Float, shape [T, ...] (all the same).
    terminated, truncated : torch.Tensor
        Bool (or 0/1), shape [T, ...].
    gamma : float
        Discount in [0, 1].
    lam : float
        GAE lambda in [0, 1].

    Returns
    -------
    advantages : torch.Tensor
        A_t, shape [T, ...], dtype of ``rewards``.
    returns : torch.Tensor
        R_t = A_t + V(s_t), shape [T, ...].

    Raises
    ------
    ValueError
        On mismatched shapes or gamma, lam outside [0, 1].

    Example
    -------
    >>> r = torch.ones(3); v = torch.zeros(3); f = torch.zeros(3, dtype=torch.bool)
    >>> adv, ret = compute_gae(r, v, v, f, f, gamma=0.5, lam=1.0)
    >>> adv
    tensor([1.7500, 1.5000, 1.0000])
    """
    shape = rewards.shape
    for name, t in (("values", values), ("next_values", next_values), ("terminated", terminated),
                    ("truncated", truncated)):
        if t.shape != shape:
            raise ValueError(f"{name} must have the shape of rewards {tuple(shape)}, got {tuple(t.shape)}")
    if rewards.dim() < 1:
        raise ValueError("rewards must have a leading time dimension [T, ...]")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam!r}")
    dtype = rewards.dtype if rewards.is_floating_point() else torch.get_default_dtype()
    with torch.no_grad():
        not_terminal = 1.0 - terminated.to(dtype)
        not_done = 1.0 - torch.maximum(terminated.to(dtype), truncated.to(dtype))
        # (G1), vectorised over t
        delta = rewards.to(dtype) + gamma * not_terminal * next_values.to(dtype) - values.to(dtype)
        decay = (gamma * lam) * not_done
        adv = torch.empty_like(delta)
        running = torch.zeros_like(delta[0])
        # (G2), backwards in time
        for t in range(shape[0] - 1, -1, -1):
            running = delta[t] + decay[t] * running
            adv[t] = running
        # (G3)
        returns = adv + values.to(dtype)
    return adv, returns
