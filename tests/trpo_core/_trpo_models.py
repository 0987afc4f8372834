"""Tiny policies shared by the trpo_core tests: one per distribution, float64 by default."""

from __future__ import annotations

import torch
from torch import nn

from trpo_core import Categorical, DiagGaussian, MultiCategorical

OBS_DIM = 3


class GaussianPolicy(nn.Module):
    """Mean MLP plus a state-independent log-std parameter."""

    def __init__(self, act_dim: int = 2, hidden: int = 5) -> None:
        super().__init__()
        self.mean = nn.Sequential(nn.Linear(OBS_DIM, hidden), nn.Tanh(), nn.Linear(hidden, act_dim))
        self.log_std = nn.Parameter(0.3 * torch.randn(act_dim))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mean(obs)


def make_policy(kind: str, seed: int, dtype: torch.dtype = torch.float64, hidden: int = 5):
    """Return (module, dist_fn) for kind in {"categorical", "multicategorical", "gaussian"}."""
    torch.manual_seed(seed)
    if kind == "categorical":
        net = nn.Sequential(nn.Linear(OBS_DIM, hidden), nn.Tanh(), nn.Linear(hidden, 4)).to(dtype)
        return net, lambda o: Categorical(net(o))
    if kind == "multicategorical":
        net = nn.Sequential(nn.Linear(OBS_DIM, hidden), nn.SELU(), nn.Linear(hidden, 6)).to(dtype)
        return net, lambda o: MultiCategorical(net(o).view(-1, 2, 3))
    if kind == "gaussian":
        net = GaussianPolicy(hidden=hidden).to(dtype)
        return net, lambda o: DiagGaussian(net(o), net.log_std)
    raise ValueError(kind)


KINDS = ["categorical", "multicategorical", "gaussian"]
