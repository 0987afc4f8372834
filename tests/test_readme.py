"""The README's code blocks run as written.

* ```python blocks are executed, in order, each in a fresh namespace (the marl block needs the full install); a
  block headed ``# mpiexec -n K python ...`` runs under ``mpiexec -n K`` (skipped without the ``[mpi]`` extra) and
  every rank must report the same status, SOLVED.
* ```bash blocks: every ``python -m marl ...`` command must parse with the CLI's own parser and its ``--set``
  overrides must apply to the default configuration (the commands themselves train for hours, so they are not run);
  every ``pip install -e ".[extras]"`` must name extras that pyproject.toml defines.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
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


MPI_HEADER = re.compile(r"# mpiexec -n (\d+) python")


@pytest.mark.parametrize("code", PYTHON, ids=[f"python-block-{k}" for k in range(len(PYTHON))])
def test_python_block_runs(code, tmp_path):
    header = MPI_HEADER.match(code)
    if header is None:
        exec(compile(code, "README.md", "exec"), {"__name__": "readme_block"})
        return
    pytest.importorskip("mpi4py", reason="the [mpi] extra (mpich, mpi4py) is not installed")
    mpiexec = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    if mpiexec is None:
        pytest.skip("mpiexec not found (pip install mpich)")
    script = tmp_path / "block.py"
    report = "\nimport pathlib\npathlib.Path(OUT, f'status_{MPI.COMM_WORLD.Get_rank()}').write_text(res.status.name)\n"
    script.write_text(code + report.replace("OUT", repr(str(tmp_path))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    proc = subprocess.run([mpiexec, "-n", header.group(1), sys.executable, str(script)], capture_output=True,
                          text=True, timeout=240, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    statuses = [(tmp_path / f"status_{r}").read_text() for r in range(int(header.group(1)))]
    assert statuses == ["SOLVED"] * len(statuses), proc.stdout


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("python -m marl")])
def test_marl_command_parses(command):
    from marl.__main__ import build_parser
    from marl.config import TrainConfig, apply_overrides

    args = build_parser().parse_args(shlex.split(command)[3:])
    if args.command == "train" and args.set:
        config = TrainConfig()
        if args.env:  # the overrides apply to the environment --env names (env.kwargs differ per environment)
            config = dataclasses.replace(config, env=dataclasses.replace(config.env, name=args.env))
        apply_overrides(config, args.set)


@pytest.mark.parametrize("command", [c for c in COMMANDS if "pip install -e" in c])
def test_pip_extras_exist(command):
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for group in re.findall(r"\.\[([\w,]+)\]", command):
        assert set(group.split(",")) <= extras, f"{command!r} names extras missing from pyproject.toml"
