"""Per-environment random streams, drawn outside the Numba kernels.

Every environment ``b`` of a batch owns one ``numpy.random.Generator`` (PCG64) and a buffer of pre-drawn
uniform doubles in [0, 1). Kernels read the buffer at ``ptr[b]`` and advance the pointer; they never seed or
draw themselves (STYLE.md §2). Before each kernel call the driver tops up every buffer that could run dry within
one call. Refills keep the unread tail and append fresh draws, so the numbers environment ``b`` consumes are
exactly its generator's ``random()`` stream, whatever the batch size, the refill schedule or the other
environments do. This is what makes a batch of B environments equal B independent single environments.

Seeding convention (the same as Gymnasium's vector environments): ``reset(seed=s)`` seeds environment ``b``
with ``numpy.random.default_rng(s + b)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def fresh_base_seed() -> int:
    """Return a base seed drawn from OS entropy (used when a first reset is unseeded)."""
    return int(np.random.SeedSequence().generate_state(1, np.uint32)[0])


def base_seed_from(seed: int | np.random.Generator | None) -> int | None:
    """Convert a public ``seed`` argument once into a non-negative integer base seed (or ``None``).

    Raises
    ------
    TypeError
        If ``seed`` is neither ``None``, an integer nor a ``numpy.random.Generator``.
    ValueError
        If ``seed`` is a negative integer.
    """
    if seed is None:
        return None
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**31 - 1))
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, a numpy Generator or None, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(seed)


class UniformPool:
    """Buffers of pre-drawn U[0, 1) doubles, one row and one generator per environment.

    Parameters
    ----------
    n_envs : int
        Number of environments B.
    reserve : int
        Most numbers one kernel call can consume for one environment; ``ensure`` guarantees this many.
    capacity : int, optional
        Row length K of the buffer (at least ``2 * reserve``).

    Attributes
    ----------
    buf : ndarray, float64, shape (B, K)
        The buffered numbers; row ``b`` is read from column ``ptr[b]`` on.
    ptr : ndarray, int64, shape (B,)
        Read position per environment.
    """

    def __init__(self, n_envs: int, reserve: int, capacity: int | None = None) -> None:
        self.n_envs = int(n_envs)
        self.reserve = int(reserve)
        self.capacity = int(max(capacity or 0, 256, 8 * self.reserve))
        self.buf = np.zeros((self.n_envs, self.capacity), dtype=np.float64)
        self.ptr = np.full(self.n_envs, self.capacity, dtype=np.int64)
        self._threshold = self.capacity - self.reserve
        self.generators: list[np.random.Generator] | None = None

    @property
    def seeded(self) -> bool:
        """Whether the generators exist (after the first reset)."""
        return self.generators is not None

    def seed(self, base_seed: int) -> None:
        """Seed environment ``b`` with ``default_rng(base_seed + b)`` and discard buffered numbers."""
        self.generators = [np.random.default_rng(base_seed + b) for b in range(self.n_envs)]
        self.ptr[:] = self.capacity
        self.ensure()

    def ensure(self) -> None:
        """Top up every row that holds fewer than ``reserve`` unread numbers."""
        if self.n_envs == 1:
            if self.ptr[0] > self._threshold:
                self._refill(0)
            return
        low = np.flatnonzero(self.ptr > self._threshold)
        for b in low:
            self._refill(int(b))

    def _refill(self, b: int) -> None:
        assert self.generators is not None
        p = int(self.ptr[b])
        rest = self.capacity - p
        row = self.buf[b]
        if rest:
            row[:rest] = row[p:].copy()
        row[rest:] = self.generators[b].random(self.capacity - rest)
        self.ptr[b] = 0

    def state_dict(self) -> dict[str, Any]:
        """Return the generators' states and the buffers (copies)."""
        return {
            "capacity": self.capacity,
            "reserve": self.reserve,
            "buf": self.buf.copy(),
            "ptr": self.ptr.copy(),
            "generators": None
            if self.generators is None
            else [g.bit_generator.state for g in self.generators],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict``; raises ``ValueError`` on a shape mismatch."""
        buf = np.asarray(state["buf"], dtype=np.float64)
        if buf.shape != self.buf.shape:
            raise ValueError(f"rng buffer shape {buf.shape} does not match {self.buf.shape}")
        self.buf[:] = buf
        self.ptr[:] = np.asarray(state["ptr"], dtype=np.int64)
        gens = state["generators"]
        if gens is None:
            self.generators = None
        else:
            if len(gens) != self.n_envs:
                raise ValueError(f"state holds {len(gens)} generators, expected {self.n_envs}")
            self.generators = []
            for s in gens:
                g = np.random.Generator(np.random.PCG64())
                g.bit_generator.state = s
                self.generators.append(g)
