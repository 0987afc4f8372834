"""Experiments as files: ``python -m marl sweep FILE`` runs every cell x seed of a TOML experiment.

Experiment file
---------------
A train config (the same top-level keys and ``[env]``/``[trpo]``/``[admm]`` sections as ``python -m marl train
--config``) plus three tables of its own::

    algo = "matrpo"                      # base configuration: any train-config key (top-level keys come first)

    [experiment]
    name = "fig5"                        # optional; default: the file's stem
    description = "..."                  # optional, copied into the report
    seeds = [0, 1, 2, 3, 4]              # one run per cell and seed
    steps = 5_000_000                    # environment steps per run (--steps overrides)
    tensorboard = true                   # also write TensorBoard files in every run directory

    [grid]                               # key -> values; the cells are the Cartesian product of the axes
    "admm.penalty" = [1, 3, 5, 7, 9]
    "env.name,env.n_agents" = [["cooperative_navigation", 3], ["treasure_collection", 8]]   # varied together

    [report]                             # what ``python -m marl report`` draws (see marl.report.ReportSpec)
    panels = ["env.name,env.n_agents"]

Several grids are written as ``[[grid]]`` tables; the experiment is the union of their products (Fig. 5 varies one
setting at a time). Cells that resolve to the same configuration (Table III defaults filled in) share one run.
``seed``, ``total_steps`` and ``torch_threads`` belong to the sweep and are rejected in the file; runs checkpoint
every iteration unless the file sets ``checkpoint_every``. Every cell's
configuration is built and checked (unknown keys, ranges, value types) before any run starts; errors name the key.

Experiment directory (``--out``, default ``runs/<name>``)::

    experiment.json            the plan: cells (grid values, run directory), seeds, steps, report settings
    runs/<cell>/seed_<s>/      one marl.train run directory per cell and seed, plus done.json once finished
    runs/<cell>/seed_<s>/worker.log    the worker's output (local backend)
    report/                    summary.md, summary.csv and figures (marl.report), written when the sweep ends

Restarts
--------
A run is *done* when its ``done.json`` records at least the planned steps; *started* when it holds a checkpoint
(resumed with ``marl.train``'s resume, which reproduces the uninterrupted run's rows exactly); otherwise it starts from
scratch (files of a run killed before its first checkpoint are removed first). A worker holds an exclusive lock on its
run directory (``.sweep.lock``, released by the kernel when the process dies), so two sweeps never write one run: a
sweep that finds a run locked reports it as *busy* and leaves it to the process that holds it (so two sweep commands,
on one machine or on machines sharing the filesystem, can split one experiment directory between them). Local
workers are killed with the sweep process (Linux ``PR_SET_PDEATHSIG``), so ``kill -9`` of the sweep leaves no orphans.
A worker killed by a signal while the sweep lives is resumed (``retries``, 2 by default); a worker that raises is
reported as failed and the other runs go on. Restarting with a larger ``--steps`` extends finished runs; a smaller one than the
directory was planned with is refused. A run whose saved configuration differs from the plan (an edited experiment
file) is refused before anything runs.

Backends
--------
``local``: ``--jobs K`` worker processes on this machine (``python -m marl.sweep``), each with ``cpus // K`` torch
threads. ``ray``: every run is a Ray task (``num_cpus`` = its torch threads, default 1) on the cluster at
``--address`` (or a local instance). Ray tasks write their run directories in place: the experiment directory must be
on a filesystem that every node mounts at the same path (NFS, Lustre, ...). Results do not travel back through the
object store, because a run's value is in its checkpoints: a task or a driver killed mid-run would lose everything an
object-store copy had not yet returned, while checkpoints written in place let any node resume the run. The driver
checks that each finished run's ``done.json`` is visible to it and stops with an error naming the missing directory
when it is not (a cluster without a shared filesystem).
"""

from __future__ import annotations

import argparse
import collections
import copy
import dataclasses
import fcntl
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .checkpoint import CHECKPOINT_NAME, atomic_write_bytes
from .config import TrainConfig, check_types, config_from_dict, current_key, sections
from .sweepdir import DONE_NAME, MANIFEST_NAME, read_done

LOCK_NAME = ".sweep.lock"  # not train()'s own ".lock": the worker holds both
WORKER_LOG = "worker.log"
BUSY_EXIT = 3  # worker exit status: the run directory is locked by another process
RESERVED_KEYS = {
    "seed": "list the seeds in [experiment] seeds",
    "total_steps": "give the budget in [experiment] steps",
    "torch_threads": "the sweep gives each run its fair share of threads (--threads)",
}
_EXPERIMENT_KEYS = ("name", "description", "seeds", "steps", "tensorboard")


@dataclass(frozen=True)
class ReportSpec:
    """What ``python -m marl report`` writes for an experiment ([report] table of the experiment file)."""

    metric: str = "env/return"  # the performance column of metrics.csv (team return per episode; or eval/return)
    final_episodes: int = 100  # final performance = mean of the last episodes (paper Fig. 5: 100)
    curves: bool = True  # learning curves, mean and ±1 std over seeds (paper Figs. 3, 4)
    sensitivity: bool = True  # final performance against each grid axis (paper Fig. 5)
    communication: bool = True  # final performance against floats sent per agent (comm/ metrics)
    panels: tuple[str, ...] = ()  # grid axes drawn as separate panels (e.g. the task), not as series
    smooth: int = 1  # moving-average window of the curves, in iterations

    def __post_init__(self) -> None:
        check_types(self, "report.")
        if not self.metric:
            raise ValueError("report.metric must be a metrics.csv column, got ''")
        if self.final_episodes < 1:
            raise ValueError(f"report.final_episodes must be >= 1, got {self.final_episodes}")
        if self.smooth < 1:
            raise ValueError(f"report.smooth must be >= 1, got {self.smooth}")


@dataclass(frozen=True)
class Cell:
    """One point of the grid: its axis values and the configuration every seed of it trains."""

    name: str  # directory name under runs/ (shared by cells that resolve to the same configuration)
    params: tuple[tuple[str, Any], ...]  # (axis, value) pairs; a zipped axis "a,b" has a tuple value
    config: TrainConfig  # seed 0, total_steps = the experiment's steps, torch_threads None

    def run_config(self, seed: int) -> TrainConfig:
        return dataclasses.replace(self.config, seed=seed)


@dataclass(frozen=True)
class Experiment:
    """A parsed and validated experiment file."""

    name: str
    path: Path
    description: str
    seeds: tuple[int, ...]  # paper: 5 seeds
    steps: int  # environment steps per run; paper: 5M
    cells: tuple[Cell, ...]
    axes: tuple[str, ...]  # every grid axis, in file order
    report: ReportSpec = field(default_factory=ReportSpec)
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError(f"{self.path}: [experiment] seeds must be a non-empty list of ints")
        if len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise ValueError(f"{self.path}: [experiment] seeds must be distinct ints >= 0, got {list(self.seeds)}")
        if self.steps < 1:
            raise ValueError(f"{self.path}: [experiment] steps must be >= 1, got {self.steps}")

    @property
    def runs(self) -> list[tuple[Cell, int]]:
        """Distinct (cell, seed) pairs to train (cells sharing a run directory counted once)."""
        seen, out = set(), []
        for cell in self.cells:
            if cell.name not in seen:
                seen.add(cell.name)
                out.extend((cell, s) for s in self.seeds)
        return out


# -- parsing and validation -------------------------------------------------------------------------------------------
def _axis_keys(axis: str) -> list[str]:
    return [k.strip() for k in axis.split(",")]


def _check_key(key: str, where: str) -> None:
    parts = (current_key(key) or key).split(".")  # an old spelling is read (with a FutureWarning) as its new key
    top = {f.name for f in fields(TrainConfig)}
    if len(parts) == 1 and parts[0] in top and parts[0] not in sections():
        ok = True
    elif len(parts) == 2 and parts[0] in sections():
        ok = parts[1] in {f.name for f in fields(sections()[parts[0]])}
    else:
        ok = False
    if not ok:
        raise ValueError(f"{where}: unknown key {key!r}; use a train-config key (e.g. 'algo', 'admm.penalty')")
    if parts[-1] in RESERVED_KEYS and len(parts) == 1:
        raise ValueError(f"{where}: key {key!r} is set by the sweep: {RESERVED_KEYS[parts[-1]]}")


def _set_key(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    if len(parts) == 1:
        data[key] = value
    else:
        data.setdefault(parts[0], {})[parts[1]] = value


def _parse_grids(raw: Any, where: str) -> list[dict[str, list]]:
    """``[grid]`` or ``[[grid]]`` -> list of {axis: values}, every axis and value list checked for shape."""
    if raw is None:
        return [{}]
    grids = raw if isinstance(raw, list) else [raw]
    if not grids:
        raise ValueError(f"{where}: [[grid]] is empty; give at least one table of key = [values]")
    out = []
    for g, grid in enumerate(grids):
        label = "[grid]" if isinstance(raw, dict) else f"[[grid]] #{g + 1}"
        if not isinstance(grid, dict):
            raise ValueError(f"{where}: {label} must be a table of key = [values]")
        if not grid:
            raise ValueError(f"{where}: {label} is empty; give at least one key = [values]")
        for axis, values in grid.items():
            keys = _axis_keys(axis)
            for key in keys:
                _check_key(key, f"{where}: {label}")
            if not isinstance(values, list) or not values:
                raise ValueError(f"{where}: {label} key {axis!r} must be a non-empty list of values, got {values!r}")
            if len(keys) > 1:
                for v in values:
                    if not isinstance(v, list) or len(v) != len(keys):
                        raise ValueError(f"{where}: {label} key {axis!r} varies {len(keys)} keys together; each "
                                         f"value must be a list of {len(keys)} values, got {v!r}")
            if len({json.dumps(v) for v in values}) != len(values):
                raise ValueError(f"{where}: {label} key {axis!r} lists a value twice: {values!r}")
        out.append(grid)
    return out


def _build(base: dict, params: dict[str, Any], steps: int) -> TrainConfig:
    data = copy.deepcopy(base)
    for axis, value in params.items():
        keys = _axis_keys(axis)
        for key, v in zip(keys, value if len(keys) > 1 else [value]):
            _set_key(data, key, v)
    data["total_steps"] = steps
    data["torch_threads"] = None
    return config_from_dict(data)  # every field type- and range-checked by the config dataclasses


def _format(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_format(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def cell_name(params: dict[str, Any]) -> str:
    """Directory name of a cell: ``axis=value`` pairs joined by ``__`` (``base`` without a grid)."""
    if not params:
        return "base"
    name = "__".join(f"{axis.replace(',', '+')}={_format(v)}" for axis, v in params.items())
    return re.sub(r"[^A-Za-z0-9._=+,-]", "_", name)[:200]


def _identity(config: TrainConfig) -> str:
    """What makes two runs the same run: the resolved configuration apart from budget, seed and threads."""
    d = config.resolved().to_dict()
    for key in ("total_steps", "seed", "torch_threads"):
        d.pop(key)
    return json.dumps(d, sort_keys=True)


def load_experiment(path: str | Path, *, steps: int | None = None, seeds: list[int] | None = None) -> Experiment:
    """Parse, validate and expand an experiment file; every cell's configuration is built here.

    Parameters
    ----------
    path : the TOML experiment file
    steps, seeds : override the file's ``[experiment] steps`` and ``seeds`` (a smaller budget than the paper's)

    Raises
    ------
    ValueError naming the offending key: unknown keys anywhere, an empty grid, a value of the wrong type or range.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    where = str(path)
    exp = data.pop("experiment", None)
    if not isinstance(exp, dict):
        raise ValueError(f"{where}: missing [experiment] table with seeds = [...] and steps = N")
    unknown = set(exp) - set(_EXPERIMENT_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)} in [experiment]; "
                         f"allowed: {list(_EXPERIMENT_KEYS)}")
    for key in ("seeds", "steps"):
        if key not in exp:
            raise ValueError(f"{where}: [experiment] needs {key!r}")
    file_seeds, file_steps = exp["seeds"], exp["steps"]
    if not isinstance(file_seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in file_seeds):
        raise ValueError(f"{where}: [experiment] seeds must be a list of ints, got {file_seeds!r}")
    if not isinstance(file_steps, int) or isinstance(file_steps, bool):
        raise ValueError(f"{where}: [experiment] steps must be an int, got {file_steps!r}")
    for key, kind in (("name", str), ("description", str), ("tensorboard", bool)):
        if key in exp and not isinstance(exp[key], kind):
            raise ValueError(f"{where}: [experiment] {key} must be of type {kind.__name__}, got {exp[key]!r}")

    report_raw = data.pop("report", {})
    allowed = {f.name for f in fields(ReportSpec)}
    if not isinstance(report_raw, dict) or set(report_raw) - allowed:
        bad = sorted(set(report_raw) - allowed) if isinstance(report_raw, dict) else report_raw
        raise ValueError(f"{where}: unknown key(s) {bad} in [report]; allowed: {sorted(allowed)}")
    try:
        report = ReportSpec(**report_raw)
    except ValueError as exc:
        raise ValueError(f"{where}: [report] {exc}") from exc

    grids = _parse_grids(data.pop("grid", None), where)
    base = data
    base.setdefault("checkpoint_every", 1)  # a stopped sweep loses at most one iteration per run
    for key in RESERVED_KEYS:
        if key in base:
            raise ValueError(f"{where}: key {key!r} is set by the sweep: {RESERVED_KEYS[key]}")
    budget = file_steps if steps is None else steps
    if budget < 1:
        raise ValueError(f"{where}: steps must be >= 1, got {budget}")
    try:
        config_from_dict({**base, "total_steps": budget})
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {_base_culprit(base, budget)}: {exc}") from exc

    axes = list(dict.fromkeys(a for g in grids for a in g))
    for panel in report.panels:
        if panel not in axes:
            raise ValueError(f"{where}: [report] panels names {panel!r}, which is not a grid key; grid keys: {axes}")
    cells: list[Cell] = []
    by_identity: dict[str, str] = {}
    for grid in grids:
        for combo in itertools.product(*grid.values()):
            params = {a: tuple(v) if isinstance(v, list) else v for a, v in zip(grid, combo)}
            try:
                config = _build(base, params, budget)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{where}: {_culprit(base, params, budget)}: {exc}") from exc
            name = by_identity.setdefault(_identity(config), cell_name(params))
            cells.append(Cell(name, tuple(params.items()), config))
    names = [c.name for c in cells]
    for c in cells:  # distinct configurations whose names collide (e.g. truncated): keep them apart
        if names.count(c.name) > 1 and len({_identity(d.config) for d in cells if d.name == c.name}) > 1:
            raise ValueError(f"{where}: two different cells map to the directory name {c.name!r}")
    return Experiment(
        name=exp.get("name", path.stem), path=path, description=exp.get("description", ""),
        seeds=tuple(file_seeds if seeds is None else seeds), steps=budget, cells=tuple(cells), axes=tuple(axes),
        report=report, tensorboard=exp.get("tensorboard", True),
    )


def _base_culprit(base: dict, steps: int) -> str:
    """Name the base key whose value breaks the base configuration (tried alone), else the base as a whole."""
    for key, value in base.items():
        for sub, v in (value.items() if isinstance(value, dict) else [(None, value)]):
            name = key if sub is None else f"{key}.{sub}"
            try:
                _build({}, {name: v}, steps)
            except (ValueError, TypeError, AttributeError):
                return f"base key {name!r} = {v!r}"
    return "base configuration"


def _culprit(base: dict, params: dict[str, Any], steps: int) -> str:
    """Name the grid key whose value breaks a cell (tried alone on the base), else the whole combination."""
    for axis, value in params.items():
        try:
            _build(base, {axis: value}, steps)
        except (ValueError, TypeError):
            return f"[grid] key {axis!r} = {_format(value)!r}"
    return f"grid cell {cell_name(params)!r}"


# -- run directories --------------------------------------------------------------------------------------------------
def run_dir_of(exp_dir: Path, cell: Cell, seed: int) -> Path:
    return exp_dir / "runs" / cell.name / f"seed_{seed}"


def run_state(run_dir: Path, steps: int) -> str:
    """``"done"`` (done.json with at least ``steps``), ``"started"`` (has a checkpoint) or ``"new"``."""
    done = read_done(run_dir)
    if done is not None and done["env_steps"] >= steps:
        return "done"
    return "started" if (run_dir / CHECKPOINT_NAME).exists() else "new"


def logged_steps(run_dir: Path, steps_per_iter: int) -> int:
    """Environment steps logged in ``metrics.csv`` (rows after the last checkpoint included)."""
    try:
        data = (run_dir / "metrics.csv").read_bytes()
    except FileNotFoundError:
        return 0
    return max(data.count(b"\n") - 1, 0) * steps_per_iter


class RunBusy(RuntimeError):
    """Another process holds the run directory's lock."""


class _RunLock:
    """Exclusive ``flock`` on ``run_dir/.sweep.lock`` holding the owner's pid; released by the kernel when it dies."""

    def __init__(self, run_dir: Path, wait_s: float = 10.0):
        self.path, self.wait_s, self.fd = run_dir / LOCK_NAME, wait_s, -1

    def __enter__(self) -> "_RunLock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:  # a dying worker of a killed sweep releases it within moments
                    os.close(self.fd)
                    raise RunBusy(f"{self.path.parent} is being written by another process (pid in {self.path})")
                time.sleep(0.1)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, str(os.getpid()).encode())
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def run_one(run_dir: str | Path, config: dict, *, threads: int = 1, tensorboard: bool = True) -> dict:
    """Train one run of a sweep to ``config['total_steps']``: skip it if done, resume it if started, else start it.

    Returns the run's ``done.json`` record (iterations, env_steps, seconds of this call, final metrics).
    """
    import torch

    from .train import train

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with _RunLock(run_dir):
        cfg = config_from_dict(config)
        if run_state(run_dir, cfg.total_steps) == "done":
            return read_done(run_dir)
        torch.set_num_threads(threads)
        resume = (run_dir / CHECKPOINT_NAME).exists()
        if not resume:  # leftovers of a run killed before its first checkpoint
            for name in ("metrics.csv", "config.json", DONE_NAME):
                (run_dir / name).unlink(missing_ok=True)
            shutil.rmtree(run_dir / "tb", ignore_errors=True)
        result = train(cfg, run_dir, resume=resume, progress=False, tensorboard=tensorboard)
        record = {"iterations": result.iterations, "env_steps": result.env_steps, "seconds": result.seconds,
                  "threads": threads, "final_metrics": result.final_metrics}
        atomic_write_bytes(run_dir / DONE_NAME, json.dumps(record, indent=2).encode())
        return record


# -- planning ---------------------------------------------------------------------------------------------------------
def _manifest(experiment: Experiment) -> dict:
    return {
        "name": experiment.name, "file": str(experiment.path), "description": experiment.description,
        "steps": experiment.steps, "seeds": list(experiment.seeds), "axes": list(experiment.axes),
        "report": dataclasses.asdict(experiment.report),
        "cells": [{"name": c.name, "params": {a: list(v) if isinstance(v, tuple) else v for a, v in c.params},
                   "resolved": {a: _resolved_value(c.config, a) for a in experiment.axes},
                   "n_agents": c.config.env.n_agents, "algo": c.config.algo,
                   "steps_per_iter": c.config.steps_per_iter} for c in experiment.cells],
    }


def _resolved_value(config: TrainConfig, axis: str) -> Any:
    """The value a run of ``config`` uses for a grid axis (Table III defaults filled in; a list for a zipped axis)."""
    data = config.resolved().to_dict()
    values = []
    for key in _axis_keys(axis):
        node = data
        for part in key.split("."):
            node = node[part]
        values.append(list(node) if isinstance(node, tuple) else node)
    return values if len(values) > 1 else values[0]


def _check_against_disk(experiment: Experiment, exp_dir: Path) -> None:
    """Refuse a restart that would mix budgets or configurations in one experiment directory."""
    old_path = exp_dir / MANIFEST_NAME
    if old_path.exists():
        old = json.loads(old_path.read_text())
        if experiment.steps < old["steps"]:
            raise ValueError(f"{exp_dir} holds a sweep planned at {old['steps']} steps per run; --steps "
                             f"{experiment.steps} is smaller: give another --out, or at least {old['steps']} steps")
    for cell, seed in experiment.runs:
        saved = run_dir_of(exp_dir, cell, seed) / "config.json"
        if not saved.exists():
            continue
        on_disk = config_from_dict(json.loads(saved.read_text()))
        if _identity(on_disk) != _identity(cell.run_config(seed)):
            a, b = on_disk.resolved().to_dict(), cell.run_config(seed).resolved().to_dict()
            diff = sorted(_flat_diff(a, b))
            raise ValueError(f"{saved.parent} was run with a different configuration than the experiment file now "
                             f"gives (keys {diff}); give another --out")


def _flat_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in a:
        if isinstance(a[key], dict):
            out.extend(_flat_diff(a[key], b[key], f"{key}."))
        elif a[key] != b[key] and key not in ("total_steps", "seed", "torch_threads"):
            out.append(prefix + key)
    return out


# -- the sweep --------------------------------------------------------------------------------------------------------
@dataclass
class _Task:
    cell: Cell
    seed: int
    run_dir: Path
    tries: int = 0


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did: runs finished (now or before), failed (with their log), busy (another process was writing
    them and finishes them), and the report's files."""

    exp_dir: Path
    done: tuple[str, ...]
    failed: tuple[str, ...]
    report: tuple[Path, ...] = ()
    busy: tuple[str, ...] = ()


def format_duration(seconds: float) -> str:
    """``95`` -> ``"1m35s"``, ``7384`` -> ``"2h03m"``, ``200000`` -> ``"2d07h"``; ``"?"`` when unknown."""
    if not seconds < float("inf") or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _count(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else f"{n:.0f}"


class _Progress:
    """Whole-sweep progress line: runs done / running / left, environment steps per second in this session, ETA.

    On a terminal one line is redrawn every second; otherwise (a log file) a line is printed every 30 seconds.
    """

    def __init__(self, name: str, tasks: list[_Task], steps: int, n_done: int, n_total: int, enabled: bool,
                 stream=None):
        self.name, self.steps, self.enabled = name, steps, enabled
        self.n_total, self.done = n_total, n_done
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 1.0 if self.tty else 30.0
        self.logged = {id(t): self._steps_of(t) for t in tasks}  # re-read only for running runs
        self.start_steps, self.t0, self.last, self.drawn = self._total(), time.monotonic(), time.monotonic(), False

    def _steps_of(self, task: _Task) -> int:
        return min(logged_steps(task.run_dir, task.cell.config.steps_per_iter), self.steps)

    def _total(self) -> int:
        return self.done * self.steps + sum(self.logged.values())

    def line(self, running: int, left: int) -> str:
        now = self._total()
        rate = max(now - self.start_steps, 0) / max(time.monotonic() - self.t0, 1e-9)
        left_steps = max(self.n_total * self.steps - now, 0)
        eta = left_steps / rate if rate > 0 else (0.0 if not left_steps else float("inf"))
        return (f"[{self.name}] runs done {self.done}/{self.n_total}, running {running}, left {left} | "
                f"{_count(now)}/{_count(self.n_total * self.steps)} steps | {rate:,.0f} steps/s | "
                f"ETA {format_duration(eta)}")

    def update(self, running: list[_Task], left: int) -> None:
        if not self.enabled or time.monotonic() - self.last < self.interval:
            return
        self.last = time.monotonic()
        for task in running:
            self.logged[id(task)] = self._steps_of(task)
        text = self.line(len(running), left)
        self.stream.write(f"\r\033[K{text}" if self.tty else f"{text}\n")
        self.stream.flush()
        self.drawn = self.tty

    def finish(self, task: _Task) -> None:
        self.logged.pop(id(task), None)
        self.done += 1

    def write(self, text: str) -> None:
        """A message line (a run done, killed or failed); always shown."""
        self.stream.write(("\r\033[K" if self.drawn else "") + text + "\n")
        self.stream.flush()
        self.drawn = False

    def close(self, *, final: bool = True) -> None:
        """End the view: the last progress line when the sweep ended, only a line break when it was stopped."""
        if self.enabled and final:
            self.last = 0.0
            self.update([], 0)
        if self.drawn:
            self.stream.write("\n")


def _die_with_parent(parent: int):
    """preexec_fn of local workers: SIGKILL when the sweep process dies (Linux), so kill -9 leaves no orphans."""

    def setup() -> None:
        if sys.platform.startswith("linux"):
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:
                os._exit(1)

    return setup


def sweep(
    path: str | Path,
    *,
    out: str | Path | None = None,
    jobs: int | None = None,
    steps: int | None = None,
    seeds: list[int] | None = None,
    threads: int | None = None,
    backend: str = "local",
    address: str | None = None,
    retries: int = 2,
    progress: bool = True,
    report: bool = True,
) -> SweepResult:
    """Run every cell x seed of the experiment file ``path`` that is not done yet, then write its report.

    Parameters
    ----------
    path : the TOML experiment file (see the module docstring)
    out : experiment directory; default ``runs/<experiment name>``
    jobs : runs at once; local default: the CPUs this process may use; ray default: all runs queued at once
    steps, seeds : budget overrides (the files state the paper's 5M steps x 5 seeds)
    threads : torch threads per run; default: local ``cpus // jobs`` (at least 1), ray 1
    backend : ``"local"`` (worker processes) or ``"ray"`` (tasks on a Ray cluster; ``pip install ray``)
    address : the Ray cluster (``ray.init(address=...)``); default: a running ``ray.init`` or a local instance
    retries : times a run killed by a signal (not one that raised) is resumed in this call
    """
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    experiment = load_experiment(path, steps=steps, seeds=seeds)
    exp_dir = Path(out) if out is not None else Path("runs") / experiment.name
    _check_against_disk(experiment, exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(exp_dir / MANIFEST_NAME, json.dumps(_manifest(experiment), indent=2).encode())

    all_runs = [_Task(c, s, run_dir_of(exp_dir, c, s)) for c, s in experiment.runs]
    todo = [t for t in all_runs if run_state(t.run_dir, experiment.steps) != "done"]
    done = [f"{t.cell.name}/seed_{t.seed}" for t in all_runs if t not in todo]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if backend == "local":
        jobs = jobs or cpus
        threads = threads or max(1, cpus // jobs)
    else:
        jobs = jobs or max(len(todo), 1)
        threads = threads or 1
    view = _Progress(experiment.name, list(todo), experiment.steps, len(done), len(all_runs), progress)
    view.write(f"sweep {experiment.name}: {len(experiment.cells)} cells x {len(experiment.seeds)} seeds = "
               f"{len(all_runs)} runs of {experiment.steps} steps in {exp_dir}; {len(done)} done, "
               f"{sum(run_state(t.run_dir, experiment.steps) == 'started' for t in todo)} to resume; "
               f"{backend} backend, {jobs} at once, {threads} torch thread(s) each")
    runner = _run_local if backend == "local" else _run_ray
    try:
        finished, failed, busy = runner(experiment, todo, view, jobs=jobs, threads=threads, retries=retries,
                                        address=address)
    except BaseException:
        view.close(final=False)
        raise
    view.close()
    files: tuple[Path, ...] = ()
    if report and any(read_done(t.run_dir) for t in all_runs):
        from .report import write_report

        files = write_report(exp_dir)
    return SweepResult(exp_dir, tuple(done + finished), tuple(failed), files, tuple(busy))


def _label(task: _Task) -> str:
    return f"{task.cell.name}/seed_{task.seed}"


def _final(record: dict) -> str:
    value = record.get("final_metrics", {}).get("env/return")
    return f"return {value:.4g}, " if value is not None else ""


def _run_local(experiment: Experiment, todo: list[_Task], view: _Progress, *, jobs: int, threads: int, retries: int,
               address: str | None) -> tuple[list[str], list[str], list[str]]:
    if address is not None:
        raise ValueError("--address is for --backend ray")
    pending = collections.deque(todo)
    running: dict[subprocess.Popen, _Task] = {}
    finished, failed, busy = [], [], []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).resolve().parents[1]),
                                                                     os.environ.get("PYTHONPATH", "")] if p)}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                task = pending.popleft()
                task.tries += 1
                task.run_dir.mkdir(parents=True, exist_ok=True)
                config = json.dumps(task.cell.run_config(task.seed).to_dict())
                with open(task.run_dir / WORKER_LOG, "ab") as log:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "marl.sweep", str(task.run_dir), "--threads", str(threads),
                         "--tensorboard", str(int(experiment.tensorboard)), "--config", config],
                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                        preexec_fn=_die_with_parent(os.getpid()),
                    )
                running[proc] = task
            time.sleep(0.2)
            for proc in [p for p in running if p.poll() is not None]:
                task = running.pop(proc)
                record = read_done(task.run_dir)
                if proc.returncode == 0 and record is not None:
                    view.finish(task)
                    finished.append(_label(task))
                    view.write(f"done   {_label(task)}: {_final(record)}{record['seconds']:.0f} s")
                elif proc.returncode < 0 and task.tries <= retries:
                    view.write(f"killed {_label(task)} (signal {-proc.returncode}); resuming it")
                    pending.appendleft(task)
                elif proc.returncode == BUSY_EXIT:
                    busy.append(_label(task))
                    view.write(f"busy   {_label(task)}: another process is writing it (pid in "
                               f"{task.run_dir / LOCK_NAME}); left to it")
                else:
                    failed.append(_label(task))
                    view.write(f"failed {_label(task)} (exit {proc.returncode}); see {task.run_dir / WORKER_LOG}")
            view.update(list(running.values()), len(pending))
    except BaseException:
        for proc in running:
            proc.terminate()
        for proc in running:
            proc.wait()
        view.write("sweep stopped; run the same command again to continue (finished runs are kept, started ones "
                   "resume from their last checkpoint)")
        raise
    return finished, failed, busy


def _ray_task(run_dir: str, config: dict, threads: int, tensorboard: bool) -> dict:
    return run_one(run_dir, config, threads=threads, tensorboard=tensorboard)


def _run_ray(experiment: Experiment, todo: list[_Task], view: _Progress, *, jobs: int, threads: int, retries: int,
             address: str | None) -> tuple[list[str], list[str], list[str]]:
    try:
        import ray
    except ImportError as exc:
        raise ValueError("--backend ray needs Ray: pip install -e '.[ray]'") from exc
    if not ray.is_initialized():  # connect to ``address`` (or RAY_ADDRESS), else start a local instance
        ray.init(address=address, log_to_driver=False, **({} if address else {"include_dashboard": False}))
    remote = ray.remote(num_cpus=threads, max_retries=retries)(_ray_task)
    pending = collections.deque(todo)
    running: dict[Any, _Task] = {}
    finished, failed, busy = [], [], []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                task = pending.popleft()
                ref = remote.remote(str(task.run_dir.resolve()), task.cell.run_config(task.seed).to_dict(), threads,
                                    experiment.tensorboard)
                running[ref] = task
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            for ref in ready:
                task = running.pop(ref)
                try:
                    record = ray.get(ref)
                except Exception as exc:  # the task raised (or died more than ``retries`` times)
                    if isinstance(exc, RunBusy) or isinstance(getattr(exc, "cause", None), RunBusy):
                        busy.append(_label(task))
                        view.write(f"busy   {_label(task)}: another process is writing it; left to it")
                        continue
                    failed.append(_label(task))
                    view.write(f"failed {_label(task)}: {type(exc).__name__}: {str(exc).splitlines()[-1]}")
                    continue
                if read_done(task.run_dir) is None:
                    raise RuntimeError(
                        f"Ray finished {_label(task)} but {task.run_dir / DONE_NAME} is not visible here: the "
                        f"experiment directory must be on a filesystem shared by every Ray node at the same path")
                view.finish(task)
                finished.append(_label(task))
                view.write(f"done   {_label(task)}: {_final(record)}{record['seconds']:.0f} s")
            view.update(list(running.values()), len(pending))
    except BaseException:
        for ref in running:
            ray.cancel(ref, force=True)
        raise
    return finished, failed, busy


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"``, ``"0-4"`` or a mix (``"0-2,7"``) -> list of seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-"))
                seeds.extend(range(lo, hi + 1))
            elif part:
                seeds.append(int(part))
        except ValueError:
            raise ValueError(f"--seeds must look like 0,1,2 or 0-4, got {text!r}") from None
    if not seeds:
        raise ValueError(f"--seeds must name at least one seed, got {text!r}")
    return seeds


def _worker_main(argv: list[str]) -> int:
    """``python -m marl.sweep RUN_DIR --threads T --tensorboard 0|1 --config JSON``: one local worker."""
    parser = argparse.ArgumentParser(prog="python -m marl.sweep", description="one run of a sweep (internal)")
    parser.add_argument("run_dir")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tensorboard", type=int, default=1)
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    try:
        run_one(args.run_dir, json.loads(args.config), threads=args.threads, tensorboard=bool(args.tensorboard))
    except RunBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BUSY_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
