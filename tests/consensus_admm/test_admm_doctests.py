"""The docstring examples of consensus_admm run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["consensus_admm.edge", "consensus_admm.graphs", "consensus_admm.objectives", "consensus_admm.settings",
           "consensus_admm.solver", "consensus_admm.precondition", "consensus_admm.testing"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
