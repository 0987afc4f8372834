"""Policy and value networks used by every algorithm (matrpo-reference-code.md §1.1).

* trunk: ``len(hidden_sizes)`` dense layers with SELU (paper: 2 x 128), orthogonal init with gain sqrt(2), zero bias;
* policy heads: one linear head per controlled action (MATRPO: one per agent, pi^i(a|o^i) = prod_n pi^i(a^n|o^i)),
  orthogonal init with gain 0.001 so the initial policy is almost exactly uniform;
* continuous actions (:class:`MultiHeadGaussianPolicy`): the same trunk and heads give the means of independent
  diagonal Gaussian heads, with a state-independent log-std per head and action dimension (initialised to
  ``LOG_STD_INIT``), as HARL's and the original TRPO code's Gaussian policies;
* value: a separate trunk of the same shape and a linear head with gain 1.

Every policy's ``forward`` returns one tensor with the batch axis first and the head axis second, so slicing heads,
evaluating at flat parameters and chunking a batch work alike for both; ``policy.distribution(output)`` turns it
into the trpo_core distribution (``MultiCategorical`` or ``MultiDiagGaussian``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trpo_core import MultiCategorical, MultiDiagGaussian

_ACTIVATIONS = {"selu": nn.SELU, "tanh": nn.Tanh, "relu": nn.ReLU}


def _orthogonal(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


def mlp_trunk(in_dim: int, hidden_sizes: tuple[int, ...], activation: str = "selu") -> nn.Sequential:
    """Return the dense trunk ``in_dim -> hidden_sizes[0] -> ... -> hidden_sizes[-1]`` with activations."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    prev = in_dim
    for width in hidden_sizes:
        layers += [_orthogonal(nn.Linear(prev, width), math.sqrt(2.0)), _ACTIVATIONS[activation]()]
        prev = width
    return nn.Sequential(*layers)


class MultiHeadPolicy(nn.Module):
    """Categorical policy with ``n_heads`` independent heads over a shared trunk.

    ``forward(obs [B, obs_dim]) -> logits [B, n_heads, n_actions]``.
    """

    def __init__(self, obs_dim: int, n_heads: int, n_actions: int, hidden_sizes=(128, 128), activation="selu"):
        super().__init__()
        if obs_dim <= 0 or n_heads <= 0 or n_actions <= 1:
            raise ValueError(
                f"obs_dim and n_heads must be > 0 and n_actions > 1, got {obs_dim}, {n_heads}, {n_actions}"
            )
        self.obs_dim, self.n_heads, self.n_actions = obs_dim, n_heads, n_actions
        self.trunk = mlp_trunk(obs_dim, tuple(hidden_sizes), activation)
        self.heads = _orthogonal(nn.Linear(hidden_sizes[-1], n_heads * n_actions), 0.001)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.heads(self.trunk(obs)).view(obs.shape[0], self.n_heads, self.n_actions)

    @staticmethod
    def distribution(logits: torch.Tensor) -> MultiCategorical:
        """pi(. | o) from ``forward``'s logits [B, heads, n_actions] (or a slice of its heads)."""
        return MultiCategorical(logits)


LOG_STD_INIT = -0.5  # initial log-std of every Gaussian head: std 0.61 on the environments' [0, 1] action boxes


class MultiHeadGaussianPolicy(nn.Module):
    """Diagonal Gaussian policy with ``n_heads`` independent heads of ``action_dim`` dimensions over a shared trunk.

    ``forward(obs [B, obs_dim]) -> [B, n_heads, 2, action_dim]``: the means (``[..., 0, :]``) and the state-independent
    log-stds (``[..., 1, :]``, the parameter ``log_std`` [n_heads, action_dim] broadcast over the batch).
    """

    def __init__(self, obs_dim: int, n_heads: int, action_dim: int, hidden_sizes=(128, 128), activation="selu"):
        super().__init__()
        if obs_dim <= 0 or n_heads <= 0 or action_dim <= 0:
            raise ValueError(f"obs_dim, n_heads and action_dim must be > 0, got {obs_dim}, {n_heads}, {action_dim}")
        self.obs_dim, self.n_heads, self.action_dim = obs_dim, n_heads, action_dim
        self.trunk = mlp_trunk(obs_dim, tuple(hidden_sizes), activation)
        self.heads = _orthogonal(nn.Linear(hidden_sizes[-1], n_heads * action_dim), 0.001)
        self.log_std = nn.Parameter(torch.full((n_heads, action_dim), LOG_STD_INIT))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        mean = self.heads(self.trunk(obs)).view(obs.shape[0], self.n_heads, self.action_dim)
        return torch.stack((mean, self.log_std.expand_as(mean)), dim=-2)

    @staticmethod
    def distribution(output: torch.Tensor) -> MultiDiagGaussian:
        """pi(. | o) from ``forward``'s output [B, heads, 2, action_dim] (or a slice of its heads)."""
        return MultiDiagGaussian(output[..., 0, :], output[..., 1, :])


class ValueNet(nn.Module):
    """State-value network ``V(o)``; ``forward(obs [B, obs_dim]) -> [B]``."""

    def __init__(self, obs_dim: int, hidden_sizes=(128, 128), activation="selu"):
        super().__init__()
        self.trunk = mlp_trunk(obs_dim, tuple(hidden_sizes), activation)
        self.head = _orthogonal(nn.Linear(hidden_sizes[-1], 1), 1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(obs)).squeeze(-1)
