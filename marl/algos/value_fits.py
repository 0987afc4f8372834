"""The agents' value regressions: each learner fits V on its own data, stacked or one by one, now or in a thread."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import torch

from trpo_core import fit_stacked

from .privacy import acting_as

if TYPE_CHECKING:
    from .learner import Learner


def value_metrics(returns_flat: torch.Tensor, values_flat: torch.Tensor, info) -> dict:
    """value_loss (after the fit, or of the old values without one) and the explained variance of the old values."""
    var = float(returns_flat.var())
    explained = 1.0 - float((returns_flat - values_flat).var()) / var if var > 0 else float("nan")
    loss = info.loss_after if info is not None else float(((values_flat - returns_flat) ** 2).mean())
    return {"value_loss": loss, "explained_variance": explained}


def fit_values(learners: list[Learner], obs: list[torch.Tensor], returns: list[torch.Tensor],
               values: list[torch.Tensor], *, stacked: bool) -> list[dict]:
    """Every learner's value regression on its own flat data (``Learner.fit_value``), in learner order.

    With ``stacked`` the regressions run as one ``trpo_core.fit_stacked`` computation. That call is the one place
    where the training loop, not an agent, touches all agents' value networks at once, so it runs outside
    ``acting_as``; its per-member independence is proved by trpo_core's tests (changing one member's data leaves the
    others' results bit-for-bit unchanged). Without it, each fit runs as its own agent, under the privacy guard.
    """
    if stacked and len(learners) > 1 and all(l.fits_value for l in learners):
        infos = fit_stacked([l.private.fitter for l in learners], obs, returns)
        return [value_metrics(r, v, info) for r, v, info in zip(returns, values, infos)]

    out = []
    for learner, o, r, v in zip(learners, obs, returns, values):
        with acting_as(learner.owner):
            out.append(learner.fit_value(o, r, v))
    return out


def value_fit_executor(concurrent: bool) -> ThreadPoolExecutor | None:
    """The worker thread for :class:`ValueFits` when ``concurrent`` (``LearnerSettings.concurrent_value_fit``)."""
    return ThreadPoolExecutor(max_workers=1) if concurrent else None


class ValueFits:
    """:func:`fit_values` started now and collected with :meth:`result`: in ``executor``'s worker thread, or at once.

    The value regression reads the rollout's observations and returns and writes only the value networks; the policy
    step reads neither, so the two can run at the same time (on the second core while one policy step runs, or in
    the gaps the two endpoint threads leave). The result is the same as running them one after the other.
    """

    def __init__(self, executor, learners, obs, returns, values, *, stacked: bool):
        def run() -> tuple[list[dict], float]:
            start = time.perf_counter()
            out = fit_values(learners, obs, returns, values, stacked=stacked)
            return out, time.perf_counter() - start

        self._future = executor.submit(run) if executor is not None else None
        self._done = run() if executor is None else None

    def result(self) -> tuple[list[dict], float]:
        """(per-learner value metrics, seconds the fits took)."""
        return self._done if self._future is None else self._future.result()
