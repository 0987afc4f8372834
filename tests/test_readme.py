"""The README's code blocks run as written.

* ```python blocks are executed, in order, each in a fresh namespace (the marl block needs the full install).
* ```bash blocks: every ``python -m marl ...`` command must parse with the CLI's own parser and its ``--set``
  overrides must apply to the default configuration (the commands themselves train for hours, so they are not run);
  every ``pip install -e ".[extras]"`` must name extras that pyproject.toml defines.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
COMMANDS = [part.split("#")[0].strip() for lang, code in BLOCKS if lang == "bash"
            for line in code.splitlines() for part in line.split("&&")]


def test_the_readme_has_code_blocks():
    assert len(PYTHON) >= 3 and any(c.startswith("python -m marl") for c in COMMANDS)


@pytest.mark.parametrize("code", PYTHON, ids=[f"python-block-{k}" for k in range(len(PYTHON))])
def test_python_block_runs(code):
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_block"})


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("python -m marl")])
def test_marl_command_parses(command):
    from marl.__main__ import build_parser
    from marl.config import TrainConfig, apply_overrides

    args = build_parser().parse_args(shlex.split(command)[3:])
    if args.command == "train" and args.set:
        apply_overrides(TrainConfig(), args.set)


@pytest.mark.parametrize("command", [c for c in COMMANDS if "pip install -e" in c])
def test_pip_extras_exist(command):
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for group in re.findall(r"\.\[([\w,]+)\]", command):
        assert set(group.split(",")) <= extras, f"{command!r} names extras missing from pyproject.toml"
