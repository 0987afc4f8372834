"""Episode metrics say what they hold (``<m>_last_step``, ``<m>_episode_sum``), and ``table``/``plot``/``report``
read run directories logged under the old names (``env/<m>``, ``env/episode_<m>``) as well as new ones."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from marl.envs import make_vector_env
from marl.plotting import metric_column, plot_learning_curves, read_metrics, summarize_runs
from marl.report import run_summary
from marl.rollout import collect_rollout, episode_metric_names


def test_episode_metric_names():
    names = episode_metric_names(["coverage_distance", "collisions", "episode_coverage_distance",
                                  "episode_collisions", "episode_only"])
    assert names == {
        "coverage_distance": "coverage_distance_last_step",
        "collisions": "collisions_last_step",
        "episode_coverage_distance": "coverage_distance_episode_sum",
        "episode_collisions": "collisions_episode_sum",
        "episode_only": "episode_only_last_step",  # no per-step partner: a value at the last step
    }


@pytest.mark.parametrize(("name", "n_agents"), [("cooperative_navigation", 3), ("treasure_collection", 5)])
def test_recorded_episode_metrics_are_the_last_step_and_the_episode_sum(name, n_agents):
    """Against a hand-stepped twin of the environment: the rollout's records equal the sum over each episode's
    steps and the value of its last step."""
    horizon, n_envs = 6, 2
    venv = make_vector_env(name, n_envs=n_envs, n_agents=n_agents, seed=3, max_cycles=horizon)
    twin = make_vector_env(name, n_envs=n_envs, n_agents=n_agents, seed=3, max_cycles=horizon)
    rng = np.random.default_rng(0)
    actions = [twin.sample_actions(rng) for _ in range(2 * horizon)]
    it = iter(actions)
    rollout, _ = collect_rollout(venv, lambda obs: torch.as_tensor(next(it)), venv.reset(), 2 * horizon)
    twin.reset()
    per_step = [twin.step(a)[4] for a in actions]
    metrics = list(twin.metric_names)
    assert len(rollout.episodes) == 2 * n_envs
    for k, ep in enumerate(rollout.episodes):  # ordered by end step, then environment
        episode, b = divmod(k, n_envs)
        steps = per_step[episode * horizon:(episode + 1) * horizon]
        for m in metrics:
            assert ep[f"{m}_episode_sum"] == pytest.approx(sum(float(s[m][b]) for s in steps), abs=1e-9)
            assert ep[f"{m}_last_step"] == float(steps[-1][m][b])
        assert not any(key in ep for key in metrics)  # no bare, ambiguous name


ROWS = [  # (env/steps, return, coverage sum, collisions sum, coverage last step, collisions last step)
    (100, -50.0, 40.0, 3.0, 0.7, 0.0),
    (200, -40.0, 30.0, 2.0, 0.5, 1.0),
]


def _write_run(run_dir, columns, rows, algo="matrpo"):
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"algo": algo}))
    with open(run_dir / "metrics.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["iteration", *columns])
        for k, row in enumerate(rows):
            writer.writerow([k, *row])


OLD = ["env/steps", "env/return", "env/episode_coverage_distance", "env/episode_collisions", "env/coverage_distance",
       "env/collisions", "env/episode_length", "env/episodes"]
NEW = ["env/steps", "env/return", "env/coverage_distance_episode_sum", "env/collisions_episode_sum",
       "env/coverage_distance_last_step", "env/collisions_last_step", "env/episode_length", "env/episodes"]


@pytest.fixture
def old_and_new(tmp_path):
    rows = [(*r, 100.0, 10.0) for r in ROWS]
    _write_run(tmp_path / "old", OLD, rows)
    _write_run(tmp_path / "new", NEW, rows)
    return tmp_path / "old", tmp_path / "new"


def test_old_columns_are_read_under_the_new_names(old_and_new):
    old, new = old_and_new
    a, b = read_metrics(old), read_metrics(new)
    assert sorted(a) == sorted(b)
    for key in b:
        np.testing.assert_array_equal(a[key], b[key])
    assert "env/episode_length" in a  # the mean episode length is not a legacy metric pair


def test_table_is_the_same_on_old_and_new_run_directories(old_and_new):
    old, new = old_and_new
    t_old = summarize_runs([old], at_steps=200, window=2)["matrpo"]
    t_new = summarize_runs([new], at_steps=200, window=2)["matrpo"]
    assert t_old == t_new
    assert t_new["env/collisions_episode_sum"][0] == pytest.approx(2.5)
    assert t_new["env/coverage_distance_per_step"][0] == pytest.approx(0.35)  # (40 + 30) / 2 / 100


@pytest.mark.parametrize("metric", ["env/episode_collisions", "env/collisions_episode_sum", "env/collisions",
                                    "env/collisions_last_step"])
def test_plot_and_report_take_either_name_on_either_directory(old_and_new, tmp_path, metric):
    expected = {"episode": [3.0, 2.0], "last": [0.0, 1.0]}["episode" if "episode" in metric else "last"]
    for run in old_and_new:
        np.testing.assert_array_equal(metric_column(read_metrics(run), metric, "here"), expected)
        assert plot_learning_curves([run], tmp_path / f"{run.name}.png", metric=metric).stat().st_size > 0
        summary = run_summary(run, metric=metric, final_episodes=10, n_agents=3)
        assert summary["final"] == pytest.approx(expected[-1])
    with pytest.raises(ValueError, match="env/nothing"):
        metric_column(read_metrics(old_and_new[0]), "env/nothing", "here")


def test_a_run_resumed_across_the_renaming_has_one_column_per_metric(tmp_path):
    """Rows logged before the renaming (old names) and after it (new names) in one metrics.csv."""
    columns = OLD[:2] + ["env/episode_collisions", "env/collisions", "env/collisions_episode_sum",
                         "env/collisions_last_step"]
    rows = [(100, -50.0, 3.0, 0.0, "", ""), (200, -40.0, "", "", 2.0, 1.0)]
    _write_run(tmp_path / "run", columns, rows)
    cols = read_metrics(tmp_path / "run")
    assert "env/collisions" not in cols and "env/episode_collisions" not in cols
    np.testing.assert_array_equal(cols["env/collisions_episode_sum"], [3.0, 2.0])
    np.testing.assert_array_equal(cols["env/collisions_last_step"], [0.0, 1.0])


def test_table_groups_by_algorithm_or_by_run_name(tmp_path):
    """--by name: runs of one algorithm with other settings are separate rows; the seed suffix joins seeds."""
    rows = [[100, -10.0, 40.0, 3.0, 0.4, 0.0, 25, 4], [200, -6.0, 30.0, 2.0, 0.3, 1.0, 25, 4]]
    runs = []
    for name, shift in (("matrpo_a_s0", 0.0), ("matrpo_a_s1", 2.0), ("matrpo_beta5_s0", 10.0)):
        _write_run(tmp_path / name, NEW, [[r[0], r[1] + shift, *r[2:]] for r in rows])
        runs.append(tmp_path / name)
    by_algo = summarize_runs(runs, at_steps=200)
    assert list(by_algo) == ["matrpo"] and by_algo["matrpo"]["runs"] == 3
    by_name = summarize_runs(runs, at_steps=200, by="name")
    assert sorted(by_name) == ["matrpo_a", "matrpo_beta5"]
    assert by_name["matrpo_a"]["env/return"][2] == [-6.0, -4.0]
    assert by_name["matrpo_beta5"]["env/return"][0] == pytest.approx(4.0)
    assert plot_learning_curves(runs, tmp_path / "c.png", by="name").stat().st_size > 0
    with pytest.raises(ValueError, match=r"by \(--by\) must be one of"):
        summarize_runs(runs, at_steps=200, by="seed")
