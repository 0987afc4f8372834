"""Seeds and random streams: child seeds per purpose, torch generators, and the action-noise draw.

Every stream of a run is derived from (run seed, purpose words...) by :func:`seed_sequence`, so a resumed run
re-derives it; ``sampling_noise = "shared"`` gives every agent the same stream from a common seed.
"""

from __future__ import annotations

import numpy as np
import torch

from trpo_core import Categorical, DiagGaussian


def seed_sequence(seed: int, *words: int) -> np.random.SeedSequence:
    """A child seed for (run seed, purpose words...): independent streams that a resumed run re-derives."""
    return np.random.SeedSequence([seed, *words])


# Purpose word of the common seed behind ``sampling_noise = "shared"``: every agent derives the same stream from it.
SHARED_NOISE_WORD = 3


def shared_noise_generator(seed: int) -> torch.Generator:
    """The action-noise generator every agent derives from the run's seed when ``sampling_noise = "shared"``."""
    return torch_generator(seed_sequence(seed, SHARED_NOISE_WORD))


def sample_actions(dist: Categorical | DiagGaussian, generator: torch.Generator, shared: bool, *,
                   greedy: bool = False) -> torch.Tensor:
    """Independent noise: multinomial draws from ``generator``. Shared: Gumbel-max on uniforms of the logits' shape
    from the common generator, so agents drawing in step apply the same noise to their own logits. A Gaussian policy
    draws mean + std * normal noise from ``generator`` in both modes (the common one when shared). Greedy: the mode
    (argmax of the logits, or the Gaussian's mean), drawing nothing from ``generator`` (evaluation leaves the
    training streams untouched)."""
    if greedy:
        return dist.mode()
    if isinstance(dist, DiagGaussian):
        return dist.sample(generator)
    if shared:
        return dist.sample_gumbel(torch.rand(dist.logits.shape, generator=generator))
    return dist.sample(generator)


def torch_generator(seq: np.random.SeedSequence) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))
    return gen
