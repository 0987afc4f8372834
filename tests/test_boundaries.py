"""Package boundaries (STYLE.md §1): each package is imported in a fresh interpreter and the
forbidden top-level modules must be absent from ``sys.modules`` afterwards."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = {
    "consensus_admm": ["torch", "trpo_core", "marl", "pettingzoo", "gymnasium"],
    "trpo_core": ["marl", "consensus_admm", "networkx", "numba", "pettingzoo"],
}


def _loaded_modules_after_import(package: str, *, walk_submodules: bool = True) -> set[str]:
    code = (
        "import importlib, json, sys, pkgutil\n"
        f"pkg = importlib.import_module({package!r})\n"
        f"if {walk_submodules!r}:\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "print(json.dumps(sorted({k.split('.')[0] for k in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_forbidden_modules(package):
    loaded = _loaded_modules_after_import(package)
    leaked = sorted(set(FORBIDDEN[package]) & loaded)
    assert not leaked, f"{package} (or one of its submodules) imports {leaked}"


def test_boundary_check_detects_a_leak():
    # The check itself must be able to fail: importing marl's dependency torch is visible.
    assert "torch" in _loaded_modules_after_import("torch", walk_submodules=False)
