"""A policy evaluated at flat parameter vectors without touching the module, with a chunked, early-stopping KL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.func import functional_call

from trpo_core import MultiCategorical, unflatten


@dataclass
class PolicyEvaluator:
    """Evaluates a policy's distribution at flat parameter vectors without touching the module; caches the last one.

    A line search asks for the KL and the loss at the same candidate; both come from one forward pass (and one
    log-softmax). :meth:`kl_within` runs that forward in chunks and stops as soon as the KL is proved too large.
    """

    policy: torch.nn.Module
    obs: torch.Tensor
    make_dist: Callable[[torch.Tensor], MultiCategorical] = MultiCategorical
    chunk_size: int = 2000
    _names: list | None = None
    _like: list | None = None
    _last: tuple | None = None
    _old_chunks: tuple | None = None

    def __post_init__(self) -> None:
        named = [(n, p) for n, p in self.policy.named_parameters() if p.requires_grad]
        self._names = [n for n, _ in named]
        self._like = [p for _, p in named]

    def _logits(self, theta: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        params = dict(zip(self._names, unflatten(theta, self._like)))
        with torch.no_grad():
            return functional_call(self.policy, params, (obs,))

    def dist(self, theta: torch.Tensor) -> MultiCategorical:
        if self._last is not None and self._last[0] is theta:
            return self._last[1]
        out = self.make_dist(self._logits(theta, self.obs))
        self._last = (theta, out)
        return out

    def kl_within(self, theta: torch.Tensor, old_logits: torch.Tensor, limit: float) -> float:
        """mean_m KL(pi_old(.|o_m) || pi_theta(.|o_m)), or a lower bound above ``limit`` once that is certain.

        The per-sample KL terms are non-negative, so after each chunk, (sum so far) / M is a lower bound of the mean;
        when it exceeds ``limit`` the rest of the batch is skipped (a line search's failing candidates usually show
        it within the first chunks). A complete pass leaves the full distribution cached for :meth:`dist`.
        """
        n = self.obs.shape[0]
        if self._old_chunks is None or self._old_chunks[0] is not old_logits:
            olds = [self.make_dist(old_logits[a:a + self.chunk_size]) for a in range(0, n, self.chunk_size)]
            self._old_chunks = (old_logits, olds, self.make_dist(old_logits))
        if self._last is not None and self._last[0] is theta:
            return float(self._old_chunks[2].kl(self._last[1]).mean())
        total = 0.0
        pieces = []
        for k, a in enumerate(range(0, n, self.chunk_size)):
            logits = self._logits(theta, self.obs[a:a + self.chunk_size])
            total += float(self._old_chunks[1][k].kl(self.make_dist(logits)).sum())
            if total / n > limit:
                return total / n
            pieces.append(logits)
        self._last = (theta, self.make_dist(torch.cat(pieces)))
        return total / n
