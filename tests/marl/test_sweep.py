"""Experiments as files: bad files are refused before any run, a sweep killed mid-way (the sweep process and one
worker, kill -9) and restarted ends with exactly the runs and rows of an uninterrupted sweep, the report's numbers
match a hand computation from metrics.csv, the shipped experiment files expand as documented, and the Ray backend
gives the local backend's rows on a local Ray instance."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marl.__main__ import main
from marl.report import final_performance, summarize_sweep
from marl.sweep import load_experiment, parse_seeds, sweep

ROOT = Path(__file__).resolve().parents[2]

# The settings of marl_tiny.tiny_config as an experiment file: 2 cells x 2 seeds, 10 iterations of 200 steps.
TINY = """\
steps_per_iter = 200
hidden_sizes = [16, 16]
vf_epochs = 1
checkpoint_every = 1
{top}
[experiment]
seeds = [0, 1]
steps = 2000
tensorboard = false
{experiment}
[grid]
algo = ["matrpo", "itrpo"]
{grid}
[env]
n_envs = 4
max_cycles = 25

[admm]
iterations = 6
{admm}
{tail}"""


def tiny_file(tmp_path: Path, name: str = "tiny", **parts: str) -> Path:
    text = TINY.format(**{k: parts.get(k, "") for k in ("top", "experiment", "grid", "admm", "tail")})
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def read_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def comparable(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def run_dirs(exp_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(exp_dir)) for p in (exp_dir / "runs").glob("*/*"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted sweep of the tiny experiment (its file, its directory)."""
    tmp = tmp_path_factory.mktemp("reference")
    path = tiny_file(tmp, tail="[report]\nfinal_episodes = 60  # 7.5 iterations of 8 episodes")
    result = sweep(path, out=tmp / "exp", jobs=2, progress=False)
    assert result.failed == () and len(result.done) == 4
    return path, tmp / "exp"


# -- validation -------------------------------------------------------------------------------------------------------
BAD = [
    ({"admm": "foo = 1"}, "foo"),
    ({"top": "learning_rate = 0.1"}, "learning_rate"),
    ({"top": "seed = 3"}, "'seed'"),
    ({"experiment": "budget = 5"}, "budget"),
    ({"grid": '"admm.penalti" = [1, 2]'}, "admm.penalti"),
    ({"grid": "env = [1, 2]"}, "'env'"),
    ({"grid": '"admm.penalty" = []'}, "'admm.penalty'"),
    ({"grid": '"admm.iterations" = [4, 2.5]'}, "admm.iterations"),
    ({"grid": '"admm.penalty" = ["high"]'}, "admm.penalty"),
    ({"grid": '"admm.drop_prob" = [0.0, 1.5]'}, "admm.drop_prob"),
    ({"grid": '"env.name,env.n_agents" = [["treasure_collection"]]'}, "env.name,env.n_agents"),
    ({"grid": '"admm.graph" = ["ring", "ring"]'}, "admm.graph"),
    ({"admm": 'penalty = "strong"'}, "admm.penalty"),
    ({"admm": "edge_order = 3"}, "admm.edge_order"),
    ({"experiment": "name = 7"}, "name"),
    ({"tail": "[report]\ncurvs = true"}, "curvs"),
    ({"tail": '[report]\npanels = ["env.name"]'}, "env.name"),
]


@pytest.mark.parametrize(("parts", "key"), BAD, ids=[k for _, k in BAD])
def test_bad_experiment_files_are_refused_before_any_run_naming_the_key(tmp_path, parts, key):
    path = tiny_file(tmp_path, **parts)
    with pytest.raises(ValueError, match=re.escape(key)):
        sweep(path, out=tmp_path / "exp", progress=False)
    assert not (tmp_path / "exp").exists()


def test_empty_grid_and_bad_budget_are_refused(tmp_path):
    text = TINY.format(top="", experiment="", grid="", admm="", tail="").replace('algo = ["matrpo", "itrpo"]', "")
    (tmp_path / "empty.toml").write_text(text)
    with pytest.raises(ValueError, match=r"\[grid\] is empty"):
        load_experiment(tmp_path / "empty.toml")
    (tmp_path / "steps.toml").write_text(TINY.format(top="", experiment="", grid="", admm="", tail="")
                                         .replace("steps = 2000", 'steps = "5M"'))
    with pytest.raises(ValueError, match="steps must be an int"):
        load_experiment(tmp_path / "steps.toml")
    with pytest.raises(ValueError, match="seeds"):
        load_experiment(tiny_file(tmp_path), seeds=[])


def test_cli_reports_a_bad_file_with_the_key_and_exit_status_2(tmp_path, capsys):
    path = tiny_file(tmp_path, grid='"admm.iterations" = [2.5]')
    assert main(["sweep", str(path), "--out", str(tmp_path / "exp"), "--no-progress"]) == 2
    assert "admm.iterations" in capsys.readouterr().err


def test_parse_seeds():
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]
    assert parse_seeds("3") == [3]
    with pytest.raises(ValueError, match="--seeds"):
        parse_seeds("a,b")


# -- expansion --------------------------------------------------------------------------------------------------------
# Fig. 5's shape on two tasks: one setting varied per [[grid]], the task as a zipped axis.
FIG5_LIKE = """
[experiment]
seeds = [0, 1]
steps = 30000
[[grid]]
"env.name,env.n_agents" = [["cooperative_navigation", 3], ["treasure_collection", 8]]
"admm.penalty" = [1, 5]
[[grid]]
"env.name,env.n_agents" = [["cooperative_navigation", 3], ["treasure_collection", 8]]
"admm.iterations" = [100, 200]
"""


def test_grids_zip_union_and_shared_runs(tmp_path):
    """[[grid]] tables are a union; a zipped axis varies keys together; cells that resolve to the same configuration
    (here Table III's defaults, once per task) share one run directory."""
    path = tmp_path / "f5.toml"
    path.write_text(FIG5_LIKE)
    exp = load_experiment(path, steps=500, seeds=[4])
    assert exp.steps == 500 and exp.seeds == (4,)
    assert len(exp.cells) == 8
    # Table III: navigation N=3 uses beta 1 and 100 ADMM iterations, treasure N=8 beta 5 and 200.
    assert len({c.name for c in exp.cells}) == 6 and len(exp.runs) == 6
    nav = [c for c in exp.cells if c.config.env.name == "cooperative_navigation"]
    assert {c.config.env.n_agents for c in nav} == {3}
    assert nav[0].name == nav[2].name  # penalty=1 and iterations=100 are the same run


SHIPPED = {  # file -> (cells, distinct runs per seed)
    "fig3a.toml": (5, 5), "fig3b.toml": (5, 5), "fig4a.toml": (5, 5), "fig4b.toml": (5, 5),
    "fig5.toml": (60, 53), "topologies.toml": (24, 24), "topologies_n3.toml": (5, 5), "fig5_n3.toml": (15, 13),
    "sampling_noise.toml": (12, 12),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_experiment_files_expand_with_the_paper_budget(name):
    exp = load_experiment(ROOT / "experiments" / name)
    assert exp.steps == 5_000_000 and exp.seeds == (0, 1, 2, 3, 4)  # the paper's budget
    assert (len(exp.cells), len({c.name for c in exp.cells})) == SHIPPED[name]
    assert all(c.config.steps_per_iter == 10_000 and c.config.env.n_envs == 10 for c in exp.cells)


# -- running, killing, restarting -------------------------------------------------------------------------------------
def _pid(run_dir: Path) -> int | None:
    try:
        return int((run_dir / ".lock").read_text())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait(condition, timeout: float = 120.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_sweep_killed_mid_way_and_restarted_equals_uninterrupted(tmp_path, reference):
    path, ref = reference
    exp = tmp_path / "exp"
    log = open(tmp_path / "sweep.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "marl", "sweep", str(path), "--out", str(exp), "--jobs", "2",
                             "--no-report"], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)

    def started_run():  # a run with a checkpoint and at most 6 of its 10 rows: kill its worker mid-run
        for d in exp.glob("runs/*/*"):
            if (d / "checkpoint.pt").exists() and not (d / "done.json").exists() and _pid(d):
                if len(read_rows(d)) <= 6:
                    return d
        return None

    victim = _wait(started_run, what="a run to checkpoint")
    first = _pid(victim)
    os.kill(first, signal.SIGKILL)
    # The sweep resumes the killed run in a new worker; then the sweep itself is killed.
    def resumed():
        pid = _pid(victim)
        return pid is not None and pid != first and _alive(pid)

    _wait(resumed, what="the killed run to resume")
    workers = [p for p in (_pid(d) for d in exp.glob("runs/*/*") if not (d / "done.json").exists()) if p]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _wait(lambda: not any(_alive(p) for p in workers), timeout=30, what="the workers to die with the sweep")
    log.close()
    assert "resuming it" in (tmp_path / "sweep.log").read_text()
    assert not (victim / "done.json").exists()  # the restart below has work to do

    result = sweep(path, out=exp, jobs=2, progress=False)
    assert result.failed == () and len(result.done) == 4
    assert run_dirs(exp) == run_dirs(ref)
    for d in run_dirs(ref):
        assert comparable(read_rows(exp / d)) == comparable(read_rows(ref / d)), d
        assert json.loads((exp / d / "done.json").read_text())["iterations"] == 10
    assert (exp / "report" / "summary.csv").read_text() == (ref / "report" / "summary.csv").read_text()


def test_a_finished_sweep_is_skipped_and_restarts_that_would_mix_runs_are_refused(tmp_path, reference):
    path, ref = reference
    stamps = {d: (ref / d / "metrics.csv").stat().st_mtime_ns for d in run_dirs(ref)}
    result = sweep(path, out=ref, jobs=2, progress=False, report=False)
    assert len(result.done) == 4 and result.failed == ()
    assert stamps == {d: (ref / d / "metrics.csv").stat().st_mtime_ns for d in run_dirs(ref)}
    with pytest.raises(ValueError, match="smaller"):
        sweep(path, out=ref, steps=1000, progress=False)
    edited = tiny_file(tmp_path, admm="penalty = 3.0")
    with pytest.raises(ValueError, match=r"admm\.penalty"):
        sweep(edited, out=ref, progress=False)


def start_local_ray(ray) -> None:
    """A small local Ray instance whose workers import this checkout."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 2**20,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}})


# -- report -----------------------------------------------------------------------------------------------------------
def test_final_performance_closed_forms():
    assert final_performance([1.0, 2.0, 3.0], [40, 40, 40])[0] == pytest.approx((40 * 3 + 40 * 2 + 20 * 1) / 100)
    value, used = final_performance([5.0, float("nan"), 7.0], [60, 0, 30], 100)
    assert value == pytest.approx((30 * 7 + 60 * 5) / 90) and used == [0, 2]  # fewer than 100 episodes: all
    assert final_performance([2.0, 4.0], [100, 100])[0] == 4.0  # paper settings: the last iteration exactly


@given(st.lists(st.tuples(st.integers(-1000, 1000), st.integers(0, 40)), min_size=1, max_size=30),
       st.integers(1, 150))
def test_final_performance_equals_the_mean_of_the_last_episodes(iterations, final_episodes):
    """Eq. (1) against expanding every iteration into its episodes and averaging the last ``final_episodes``."""
    values = [float(v) if n else float("nan") for v, n in iterations]
    episodes = [v for v, n in iterations for _ in range(n)]
    got, _ = final_performance(values, [n for _, n in iterations], final_episodes)
    if not episodes:
        assert math.isnan(got)
    else:
        last = episodes[-final_episodes:]
        assert got == pytest.approx(sum(last) / len(last), rel=1e-12, abs=1e-9)


def test_report_matches_a_hand_computation_from_metrics_csv(reference):
    _, ref = reference
    with open(ref / "report" / "summary.csv", newline="") as fh:
        table = {r["cell"]: r for r in csv.DictReader(fh)}
    for cell in ("algo=matrpo", "algo=itrpo"):
        finals, floats, cons = [], [], []
        for seed in (0, 1):
            rows = read_rows(ref / "runs" / cell / f"seed_{seed}")
            episodes = []  # every episode's return, oldest first (the iteration mean, n_k times)
            for r in rows:
                episodes += [float(r["env/return"])] * int(float(r["env/episodes"]))
            finals.append(sum(episodes[-60:]) / 60)
            if cell == "algo=matrpo":
                floats.append(sum(float(r["comm/floats_sent_total"]) + float(r["comm/floats_adv_norm"])
                                  for r in rows) / 3)
                # 8 episodes end per iteration (4 envs x 50 steps, 25-step episodes): 8 iterations hold the last 60
                assert all(float(r["env/episodes"]) == 8 for r in rows)
                cons.append(statistics.mean(float(r["admm/consensus_error"]) for r in rows[-8:]))
        row = table[cell]
        assert row["runs"] == "2"
        assert float(row["final_mean"]) == pytest.approx(statistics.mean(finals), rel=1e-12)
        assert float(row["final_std"]) == pytest.approx(statistics.pstdev(finals), rel=1e-9, abs=1e-12)
        if floats:
            assert float(row["floats_per_agent_mean"]) == pytest.approx(statistics.mean(floats), rel=1e-12)
            assert float(row["consensus_error_mean"]) == pytest.approx(statistics.mean(cons), rel=1e-12)
        else:
            assert row["floats_per_agent_mean"] == "nan"
    md = (ref / "report" / "summary.md").read_text()
    assert "| matrpo | 2/2 |" in md
    for name in ("curves.png", "final_vs_algo.png", "final_vs_floats.png"):
        assert (ref / "report" / name).stat().st_size > 1000, name


def test_report_counts_only_finished_runs_unless_partial(tmp_path, reference):
    path, ref = reference
    manifest = json.loads((ref / "experiment.json").read_text())
    manifest["steps"] = 4000  # as if the plan had grown: no run has finished it
    (tmp_path / "experiment.json").write_text(json.dumps(manifest))
    (tmp_path / "runs").symlink_to(ref / "runs")
    assert [r["runs"] for r in summarize_sweep(tmp_path)[1]] == [0, 0]
    assert [r["runs"] for r in summarize_sweep(tmp_path, partial=True)[1]] == [2, 2]


# -- Ray --------------------------------------------------------------------------------------------------------------
def test_ray_backend_on_a_local_instance_gives_the_local_rows(tmp_path, reference):
    ray = pytest.importorskip("ray", reason="the Ray backend is optional (pip install -e '.[ray]')")
    _, ref = reference
    path = tiny_file(tmp_path)  # one run: the itrpo cell, seed 1
    path.write_text(path.read_text().replace('algo = ["matrpo", "itrpo"]', 'algo = ["itrpo"]'))
    start_local_ray(ray)
    try:
        result = sweep(path, out=tmp_path / "exp", seeds=[1], backend="ray", progress=False, report=False)
    finally:
        ray.shutdown()
    assert result.failed == () and len(result.done) == 1
    d = "runs/algo=itrpo/seed_1"
    assert comparable(read_rows(tmp_path / "exp" / d)) == comparable(read_rows(ref / d))


# -- progress view ----------------------------------------------------------------------------------------------------
def test_progress_line_counts_runs_steps_and_eta(tmp_path):
    import io

    from marl.sweep import _Progress, _Task, format_duration

    assert [format_duration(s) for s in (5, 95, 7384, 200000, float("inf"))] == ["5s", "1m35s", "2h03m", "2d07h", "?"]
    exp = load_experiment(tiny_file(tmp_path))
    tasks = [_Task(c, s, tmp_path / f"run{k}") for k, (c, s) in enumerate(exp.runs[1:])]
    tasks[0].run_dir.mkdir()
    (tasks[0].run_dir / "metrics.csv").write_text("iteration,env/return\n0,1\n1,2\n2,3\n")  # 3 x 200 steps logged
    view = _Progress("tiny", tasks, exp.steps, 1, 4, True, stream=io.StringIO())
    view.t0 -= 10.0  # as if the view had been open 10 s: nothing new logged yet, so no rate and no ETA
    assert view.line(running=1, left=2) == ("[tiny] runs done 1/4, running 1, left 2 | 2.6k/8.0k steps | "
                                            "0 steps/s | ETA ?")
    (tasks[0].run_dir / "metrics.csv").write_text("iteration\n" + "".join(f"{i}\n" for i in range(8)))
    view.last = 0.0
    view.update([tasks[0]], left=2)  # 5 more iterations of 200 steps in ~10 s: ~100 steps/s, 4,400 steps left
    text = view.stream.getvalue()
    assert "runs done 1/4, running 1, left 2" in text
    rate = int(re.search(r"\| (\d+) steps/s", text).group(1))
    assert 90 <= rate <= 100
    assert re.search(r"ETA 4[4-9]s", text)


def test_report_of_a_panelled_union_of_grids_on_synthetic_runs(tmp_path):
    """Fig. 5's shape (a task axis as panels, one setting varied per grid, shared default runs) on hand-made runs:
    every number of the table follows from the rows written here."""
    from marl.sweep import _manifest, run_dir_of

    path = tmp_path / "f5.toml"
    path.write_text(FIG5_LIKE + '[report]\npanels = ["env.name,env.n_agents"]\n')
    exp = load_experiment(path)
    out = tmp_path / "exp"
    out.mkdir()
    (out / "experiment.json").write_text(json.dumps(_manifest(exp)))
    expected = {}
    for k, cell in enumerate(exp.cells):
        if cell.name in expected:  # a shared run is written once
            continue
        n = cell.config.env.n_agents
        for seed in exp.seeds:
            d = run_dir_of(out, cell, seed)
            d.mkdir(parents=True, exist_ok=True)
            returns = [-10.0 * (k + 1), -5.0 * (k + 1) + seed, -2.0 * (k + 1) + seed]  # 3 iterations
            lines = ["iteration,env/steps,env/return,env/episodes,admm/consensus_error,comm/floats_sent_total,"
                     "comm/floats_sent_agent_0,comm/floats_adv_norm"]
            lines += [f"{i},{(i + 1) * 10000},{r},50,{0.1 * (i + 1)},{600 * n},{600},{30 * n}"
                      for i, r in enumerate(returns)]
            (d / "metrics.csv").write_text("\n".join(lines) + "\n")
            (d / "done.json").write_text(json.dumps({"env_steps": 30000}))
            # last 100 episodes = the last two iterations (50 each); floats per agent = 3 x (600 + 30)
            expected.setdefault(cell.name, []).append(((returns[1] + returns[2]) / 2, 3 * 630.0, 0.25))
    files = {p.name for p in main_report(out)}
    assert {"summary.md", "summary.csv", "final_vs_admm.penalty.png", "final_vs_admm.iterations.png",
            "final_vs_floats.png", "curves_cooperative_navigation_3.png",
            "curves_treasure_collection_8.png"} <= files
    with open(out / "report" / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(exp.cells) == 8
    for row in rows:
        finals = [e[0] for e in expected[row["cell"]]]
        assert float(row["final_mean"]) == pytest.approx(statistics.mean(finals))
        assert float(row["final_std"]) == pytest.approx(statistics.pstdev(finals))
        assert float(row["floats_per_agent_mean"]) == pytest.approx(1890.0)
        assert float(row["consensus_error_mean"]) == pytest.approx(0.25)
    # the shared default run (navigation: beta 1 = 100 iterations) appears once per grid, with the same numbers
    nav = [r for r in rows if r["cell"] == "env.name+env.n_agents=cooperative_navigation,3__admm.penalty=1"]
    assert len(nav) == 2 and nav[0]["final_mean"] == nav[1]["final_mean"]


def main_report(exp_dir: Path) -> list[Path]:
    from marl.report import write_report

    return list(write_report(exp_dir))


def test_report_labels_name_only_the_axes_that_tell_cells_apart():
    """An axis with one value in every cell (the task of a one-task sweep) is left out of the figures' labels; an
    axis that only some cells set (one grid of a union) is kept, so no two cells' curves merge under one label."""
    from marl.report import _varying

    manifest = {"axes": ["env.name,env.n_agents", "admm.graph", "admm.penalty"], "cells": [
        {"params": {"env.name,env.n_agents": ["cooperative_navigation", 3], "admm.graph": "ring"}},
        {"params": {"env.name,env.n_agents": ["cooperative_navigation", 3], "admm.graph": "star"}},
        {"params": {"env.name,env.n_agents": ["cooperative_navigation", 3], "admm.penalty": 3.0}},
    ]}
    assert _varying(manifest) == ["admm.graph", "admm.penalty"]
    assert _varying(manifest, manifest["cells"][:2]) == ["admm.graph"]
    assert _varying(manifest, manifest["cells"][:1]) == []


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_run_another_process_is_writing_is_reported_busy_and_left_to_it(tmp_path, backend):
    """Two sweep commands may share one experiment directory: a run whose lock another process holds is neither
    written nor counted as failed; the next sweep, once the lock is free, runs it."""
    from marl.sweep import _RunLock, run_dir_of

    if backend == "ray":
        ray = pytest.importorskip("ray", reason="the Ray backend is optional (pip install -e '.[ray]')")
        start_local_ray(ray)
    path = tiny_file(tmp_path)
    path.write_text(path.read_text().replace('algo = ["matrpo", "itrpo"]', 'algo = ["itrpo"]'))
    exp = load_experiment(path)
    held = run_dir_of(tmp_path / "exp", exp.cells[0], 0)
    held.mkdir(parents=True)
    try:
        with _RunLock(held):
            result = sweep(path, out=tmp_path / "exp", jobs=2, backend=backend, progress=False, report=False)
        assert result.busy == ("algo=itrpo/seed_0",) and result.failed == ()
        assert result.done == ("algo=itrpo/seed_1",) and not (held / "metrics.csv").exists()
        again = sweep(path, out=tmp_path / "exp", jobs=2, backend=backend, progress=False, report=False)
        assert again.busy == () and again.failed == () and len(again.done) == 2
    finally:
        if backend == "ray":
            ray.shutdown()


def test_report_points_of_up_to_fifty_cells_have_distinct_styles():
    """The floats figure puts one point per cell on one axes; past matplotlib's 10 colours the marker changes."""
    from marl.report import _point_style

    assert len({_point_style(i) for i in range(50)}) == 50
    assert _point_style(0) == ("C0", "o") and _point_style(10) == ("C0", "s")
