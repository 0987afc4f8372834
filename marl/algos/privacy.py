"""Decentralization as a checked property: agent-private data that only its owner may read.

Each learner keeps its observations, rewards, advantages and networks in a :class:`PrivateStore`. While the algorithm
runs agent ``q``'s local computation it enters ``acting_as(q)``; any read of another agent's store inside that block
raises :class:`PrivacyViolation`. Outside every ``acting_as`` block (the training loop moving data around, logging)
reads are allowed. Tests run whole MATRPO updates under this guard, and a deliberately leaky update proves the guard
can fail.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

_ACTING_AS: contextvars.ContextVar[int | None] = contextvars.ContextVar("acting_as", default=None)


class PrivacyViolation(RuntimeError):
    """Raised when agent i's local update reads agent j's private data."""


@contextlib.contextmanager
def acting_as(agent: int) -> Iterator[None]:
    """Run the enclosed block as agent ``agent``'s local computation."""
    token = _ACTING_AS.set(agent)
    try:
        yield
    finally:
        _ACTING_AS.reset(token)


class PrivateStore:
    """Attribute container readable only by its owner while some agent's computation is running."""

    __slots__ = ("_owner", "_data")

    def __init__(self, owner: int, **data: Any):
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_data", dict(data))

    def _check(self, name: str) -> None:
        current = _ACTING_AS.get()
        owner = object.__getattribute__(self, "_owner")
        if current is not None and current != owner:
            raise PrivacyViolation(f"agent {current} read private field {name!r} of agent {owner}")

    def __getattr__(self, name: str) -> Any:
        data = object.__getattribute__(self, "_data")
        if name not in data:
            raise AttributeError(name)
        self._check(name)
        return data[name]

    def __setattr__(self, name: str, value: Any) -> None:
        self._check(name)
        object.__getattribute__(self, "_data")[name] = value

    def __contains__(self, name: str) -> bool:
        return name in object.__getattribute__(self, "_data")
