"""The training stack end to end on tiny budgets: every algorithm trains and logs; determinism; kill-and-resume
gives the rows of an uninterrupted run; decentralization is enforced; communication is counted; CLI works."""

from __future__ import annotations

import copy
import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from marl.algos import MATRPO, PrivacyViolation, learner_settings, make_algorithm, matrpo_settings, trpo_settings
from marl.algos.matrpo import MATRPOAgent
from marl.config import apply_overrides
from marl.env_factory import make_env_for
from marl.train import train
from marl_tiny import tiny_config

ALGOS = ["matrpo", "itrpo", "ctrpo"]


def read_rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def comparable(rows):
    """Every logged value except wall-clock timings."""
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


@pytest.mark.parametrize("algo", ALGOS)
def test_algorithm_trains_logs_and_checkpoints(tmp_path, algo):
    result = train(tiny_config(algo), tmp_path / "run", progress=False, tensorboard=False)
    rows = read_rows(tmp_path / "run")
    assert result.iterations == 3 and len(rows) == 3
    for key in ("env/return", "env/coverage_distance_last_step", "env/collisions_last_step", "trpo/kl", "value/loss",
                "time/rollout", "env/coverage_distance_episode_sum", "env/collisions_episode_sum"):
        assert key in rows[-1], key
    if algo == "matrpo":
        for key in ("admm/consensus_error", "admm/primal_residual", "admm/dual_residual", "trpo/accepted_fraction",
                    "trpo/surrogate_improvement", "value/explained_variance", "comm/floats_sent_total"):
            assert key in rows[-1], key
    assert all(float(r["trpo/kl"]) <= 1.5 * 0.003 + 1e-9 for r in rows)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["trpo"]["max_kl"] == 0.003 and saved["admm"]["iterations"] == 6  # resolved values saved
    assert (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("algo", [*ALGOS, "mappo", "fdmarl"])
def test_kill_and_resume_reproduces_uninterrupted_run(tmp_path, algo):
    cfg = tiny_config(algo, "total_steps=800", "checkpoint_every=2")
    train(cfg, tmp_path / "full", progress=False, tensorboard=False)
    # "Killed" after 3 iterations: the last checkpoint is at iteration 2, row 2 was logged after it.
    train(cfg, tmp_path / "killed", progress=False, tensorboard=False, stop_after=3)
    assert len(read_rows(tmp_path / "killed")) == 3
    train(cfg, tmp_path / "killed", resume=True, progress=False, tensorboard=False)
    assert comparable(read_rows(tmp_path / "killed")) == comparable(read_rows(tmp_path / "full"))


def test_same_seed_same_run_different_seed_different_run(tmp_path):
    cfg = tiny_config("matrpo", "total_steps=400")
    train(cfg, tmp_path / "a", progress=False, tensorboard=False)
    train(cfg, tmp_path / "b", progress=False, tensorboard=False)
    train(apply_overrides(cfg, ["seed=1"]), tmp_path / "c", progress=False, tensorboard=False)
    a, b, c = (comparable(read_rows(tmp_path / d)) for d in "abc")
    assert a == b
    assert a != c


def test_refuses_to_overwrite_a_run(tmp_path):
    cfg = tiny_config("itrpo", "total_steps=200")
    train(cfg, tmp_path / "r", progress=False, tensorboard=False)
    with pytest.raises(FileExistsError, match="resume"):
        train(cfg, tmp_path / "r", progress=False, tensorboard=False)


def _one_rollout(cfg):
    from marl.rollout import collect_rollout

    venv = make_env_for(cfg)
    algo = make_algorithm(cfg.algo, venv.obs_dims, venv.n_actions or venv.action_dims, cfg)
    rollout, _ = collect_rollout(venv, algo.act, venv.reset(seed=cfg.seed), cfg.steps_per_env)
    return venv, algo, rollout


class LeakyAgent(MATRPOAgent):
    """A buggy local update that peeks at a neighbour's observations: the privacy guard must catch it."""

    team: list = []

    def local_update(self, terms):
        other = self.team[(self.owner + 1) % len(self.team)]
        _ = other.private.batch.obs
        return super().local_update(terms)


def test_decentralization_guard_catches_a_leaky_update():
    cfg = tiny_config("matrpo")
    venv, algo, rollout = _one_rollout(cfg)
    algo.update(rollout, 0)  # the real update reads only its own data (it runs under the same guard)
    for agent in algo.agents:
        agent.__class__ = LeakyAgent
    LeakyAgent.team = algo.agents
    with pytest.raises(PrivacyViolation, match="read private field"):
        algo.update(rollout, 1)


def test_agent_update_depends_only_on_its_own_data_and_messages():
    """Perturbing agent 1's private rewards and observations changes nothing about agent 0's first local update.

    (With ``adv_norm="pooled"`` agent 0 would also see two network-averaged numbers, the pooled mean and mean square
    of the advantages; ``per_agent`` makes its first update a function of its own data alone.)
    """
    cfg = tiny_config("matrpo", "admm.edge_order=cyclic", "admm.adv_norm=per_agent")
    venv, algo, rollout = _one_rollout(cfg)
    captured = []
    original = MATRPOAgent.local_update

    def spy(self, terms):
        x, info = original(self, terms)
        captured.append((self.owner, x))
        return x, info

    def first_update_of(owner):
        return next(x for q, x in captured if q == owner)

    state = copy.deepcopy(algo.state_dict())
    MATRPOAgent.local_update = spy
    try:
        algo.update(rollout, 0)
        first, first_other = first_update_of(0), first_update_of(1)
        captured.clear()
        algo.load_state_dict(copy.deepcopy(state))
        rollout.rewards[..., 1] += torch.randn_like(rollout.rewards[..., 1])
        rollout.obs[1].mul_(-3.0)
        algo.update(rollout, 0)
        second, second_other = first_update_of(0), first_update_of(1)
    finally:
        MATRPOAgent.local_update = original
    np.testing.assert_array_equal(first, second)
    # The perturbation is real: agent 1's own first update changed.
    assert not np.array_equal(first_other, second_other)


def test_communication_is_counted():
    cfg = tiny_config("matrpo")
    venv, algo, rollout = _one_rollout(cfg)
    metrics = algo.update(rollout, 0)
    m = rollout.n_steps * rollout.n_envs
    n = algo.n_agents
    # 6 edge activations, 2 messages each (one per endpoint), each carrying the N*M log-ratio vector
    # (duals start balanced, lambda_{e,i} + lambda_{e,j} = 0, so they need not be sent).
    assert metrics["comm/messages_total"] == 2 * 6
    assert metrics["comm/floats_sent_total"] == 2 * 6 * n * m
    assert sum(metrics[f"comm/floats_sent_agent_{q}"] for q in range(n)) == metrics["comm/floats_sent_total"]


def test_baseline_shapes():
    cfg = tiny_config("ctrpo")
    venv = make_env_for(cfg)
    ctrpo = make_algorithm("ctrpo", venv.obs_dims, venv.n_actions, cfg)
    assert ctrpo.learner.private.policy.obs_dim == sum(venv.obs_dims)
    assert ctrpo.learner.private.policy.n_heads == venv.n_agents
    itrpo = make_algorithm("itrpo", venv.obs_dims, venv.n_actions, cfg)
    assert all(a.private.policy.n_heads == 1 for a in itrpo.agents)
    matrpo = make_algorithm("matrpo", venv.obs_dims, venv.n_actions, cfg)
    assert isinstance(matrpo, MATRPO) and all(a.private.policy.n_heads == venv.n_agents for a in matrpo.agents)


@pytest.mark.parametrize("algo", ALGOS)
def test_treasure_collection_heterogeneous_agents(tmp_path, algo):
    cfg = tiny_config(algo, "env.name=treasure_collection", "env.n_agents=4", "total_steps=200")
    train(cfg, tmp_path / "t", progress=False, tensorboard=False)
    assert len(read_rows(tmp_path / "t")) == 1


def test_cli_train_eval_plot(tmp_path):
    run = tmp_path / "cli_run"
    base = [sys.executable, "-m", "marl"]
    overrides = ["--set", "steps_per_iter=200", "--set", "env.n_envs=4", "--set", "env.max_cycles=25",
                 "--set", "hidden_sizes=16,16", "--set", "admm.iterations=4", "--set", "vf_epochs=1"]
    out = subprocess.run(base + ["train", "--steps", "400", "--out", str(run), "--no-progress", *overrides],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["iterations"] == 2
    assert (run / "tb").is_dir() and any((run / "tb").iterdir())
    out = subprocess.run(base + ["eval", str(run), "--episodes", "3", "--gif", str(tmp_path / "ep.gif")],
                         capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert report["episodes"] == 3 and "coverage_distance_last_step_mean" in report
    assert (tmp_path / "ep.gif").stat().st_size > 0
    out = subprocess.run(base + ["plot", str(run), "-o", str(tmp_path / "c.png")], capture_output=True, text=True,
                         check=True)
    assert (tmp_path / "c.png").stat().st_size > 0
    out = subprocess.run(base + ["table", str(run), "--at", "400"], capture_output=True, text=True, check=True)
    table = json.loads(out.stdout)
    assert table["matrpo"]["runs"] == 1 and "env/coverage_distance_per_step" in table["matrpo"]
    bad = subprocess.run(base + ["train", "--set", "admm.rho=2", "--out", str(tmp_path / "x")], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "unknown" in bad.stderr


@pytest.mark.parametrize("graph_name", ["ring", "complete", "star", "path", "erdos_renyi"])
def test_matrpo_runs_on_any_graph_with_drops(graph_name):
    cfg = tiny_config("matrpo", f"admm.graph={graph_name}", "admm.drop_prob=0.3", "env.n_agents=4")
    venv, algo, rollout = _one_rollout(cfg)
    metrics = algo.update(rollout, 0)
    assert np.isfinite(metrics["admm/consensus_error"]) and metrics["admm/edge_activations"] == 6
    assert metrics["comm/messages_total"] == 2 * 6  # dropped messages were still sent


def test_matrpo_accepts_a_networkx_graph_object():
    import networkx as nx

    cfg = tiny_config("matrpo", "env.n_agents=4")
    venv = make_env_for(cfg)
    wheel = nx.wheel_graph(4)
    settings = (matrpo_settings(cfg), trpo_settings(cfg), learner_settings(cfg))
    algo = MATRPO(venv.obs_dims, venv.n_actions, *settings, seed=cfg.seed, graph=wheel)
    assert sorted(algo.graph.edges) == sorted(tuple(sorted(e)) for e in wheel.edges)
    with pytest.raises(ValueError, match="agent indices"):
        MATRPO(venv.obs_dims, venv.n_actions, *settings, seed=cfg.seed, graph=nx.relabel_nodes(wheel, {0: "a"}))


def _first_update_with_flag(algo: str, flag: str):
    """(algorithm, metrics of its first update) with the boolean config ``flag`` on, then off."""
    for value in ("true", "false"):
        venv, algo_obj, rollout = _one_rollout(tiny_config(algo, f"{flag}={value}"))
        yield algo_obj, algo_obj.update(rollout, 0)


@pytest.mark.parametrize("algo", ["matrpo", "itrpo"])
def test_stacked_value_fits_match_per_agent_fits(algo):
    """``stack_value_fits`` changes how the agents' value regressions run, not what they compute."""
    results = []
    for algo_obj, metrics in _first_update_with_flag(algo, "stack_value_fits"):
        values = [torch.cat([p.detach().reshape(-1) for p in a.private.value.parameters()]) for a in algo_obj.agents]
        results.append((metrics, values))
    (m1, v1), (m2, v2) = results
    for a, b in zip(v1, v2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for i in range(len(v1)):
        key = f"value/loss_agent_{i}"
        assert m1[key] == pytest.approx(m2[key], rel=1e-5)


@pytest.mark.parametrize("algo", ["matrpo", "itrpo", "ctrpo"])
def test_concurrent_value_fit_gives_identical_results(algo):
    """Fitting V in a worker thread during the policy step changes the wall-clock time only: bit-identical state."""
    states = [(algo_obj.state_dict(), {k: v for k, v in metrics.items() if not k.startswith("time/")})
              for algo_obj, metrics in _first_update_with_flag(algo, "concurrent_value_fit")]
    (s1, m1), (s2, m2) = states
    assert m1 == m2

    def tensors(state):
        if isinstance(state, dict):
            return [t for k in sorted(state) for t in tensors(state[k])]
        if isinstance(state, (list, tuple)):
            return [t for x in state for t in tensors(x)]
        return [state] if isinstance(state, torch.Tensor) else []

    a, b = tensors(s1), tensors(s2)
    assert len(a) == len(b) > 0
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_a_run_directory_saved_with_old_key_spellings_resumes_and_evaluates(tmp_path, capsys):
    """config.json of a run made before the [trpo] keys took trpo_core's spellings and log_every went: --resume and
    eval read it."""
    from marl.__main__ import main
    from marl.config import RENAMED_KEYS

    run = tmp_path / "run"
    train(tiny_config("matrpo", "total_steps=400"), run, progress=False, tensorboard=False)
    saved = json.loads((run / "config.json").read_text())
    for old, new in RENAMED_KEYS.items():
        section, old_name = old.split(".")
        saved[section][old_name] = saved[section].pop(new.split(".")[1])
    saved["log_every"] = 1  # a field that was never read, since removed
    (run / "config.json").write_text(json.dumps(saved))
    assert main(["train", "--resume", str(run), "--steps", "600", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warning: config key 'trpo.cg_iters' is deprecated; use 'trpo.cg_max_iter'" in err
    assert "warning: config key 'log_every' is ignored" in err
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 1 + 3
    assert main(["eval", str(run), "--episodes", "1"]) == 0


@pytest.mark.parametrize("algo", ["matrpo", "itrpo", "ctrpo"])
def test_continuous_actions_train_from_the_cli(tmp_path, capsys, algo):
    """--set env.continuous_actions=true: Gaussian heads act on the environments' [0, 1]^5 action boxes."""
    from marl.__main__ import main

    run = tmp_path / algo
    argv = ["train", "--algo", algo, "--out", str(run), "--steps", "400", "--no-progress", "--set", "env.n_envs=4",
            "--set", "steps_per_iter=200", "--set", "env.max_cycles=25", "--set", "hidden_sizes=16,16",
            "--set", "admm.iterations=4", "--set", "vf_epochs=1", "--set", "env.continuous_actions=true"]
    assert main(argv) == 0, capsys.readouterr().err
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) == 2 and all(np.isfinite(float(r["trpo/kl"])) for r in rows)
    assert float(rows[-1]["trpo/accepted_fraction"]) > 0
    cfg = tiny_config(algo, "env.continuous_actions=true")
    venv, algorithm, rollout = _one_rollout(cfg)
    assert venv.n_actions is None and rollout.actions.dtype == torch.float32
    assert rollout.actions.shape == (cfg.steps_per_env, cfg.env.n_envs, cfg.env.n_agents, venv.action_dims[0])
    assert main(["eval", str(run), "--episodes", "1"]) == 0


@pytest.mark.parametrize("algo", ["mappo", "fdmarl"])
def test_continuous_actions_are_refused_where_unsupported(tmp_path, capsys, algo):
    from marl.__main__ import main

    assert main(["train", "--algo", algo, "--out", str(tmp_path / "run"), "--steps", "200", "--no-progress",
                 "--set", "steps_per_iter=200", "--set", "env.continuous_actions=true"]) == 2
    assert "supports discrete actions only" in capsys.readouterr().err
