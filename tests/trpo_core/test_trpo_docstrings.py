"""The runnable examples in trpo_core's docstrings (STYLE.md §5) pass."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import trpo_core

MODULES = sorted(m.name for m in pkgutil.walk_packages(trpo_core.__path__, "trpo_core."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    torch = importlib.import_module("torch")
    result = doctest.testmod(module, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_every_public_name_has_a_docstring():
    for name in trpo_core.__all__:
        assert getattr(trpo_core, name).__doc__, name
