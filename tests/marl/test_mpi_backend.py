"""Oracle: ``mpiexec -n N+1 python -m marl train --backend mpi`` (a world process and one process per agent) logs the
same metrics as the in-process run of the same configuration and seed, for I-TRPO, MATRPO and FDMARL; ``--resume``
under mpiexec continues it exactly from the last complete checkpoint set (one part per agent process, committed by
the world's manifest) and ``eval`` assembles that set; kill -9 of an agent ends the job with an error naming it.

Equality needs ``stack_value_fits=false``: the stacked value fit is one computation over all agents and equals the
per-agent fits only up to float32 rounding. Skipped with a reason when mpi4py or mpiexec is missing.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from marl.checkpoint import load_checkpoint, save_state
from marl.train import train
from marl_tiny import tiny_config

pytest.importorskip("mpi4py", reason="the [mpi] extra (mpich, mpi4py) is not installed")
MPIEXEC = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))
if MPIEXEC is None:
    pytest.skip("mpiexec not found (pip install mpich)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
ORACLE_RTOL = 1e-9  # issue 14: returns and per-agent metrics equal within 1e-9 (in practice bit for bit)
TINY = ["total_steps=600", "steps_per_iter=200", "env.n_envs=4", "env.max_cycles=25", "hidden_sizes=16,16",
        "admm.iterations=6", "vf_epochs=1", "checkpoint_every=1", "stack_value_fits=false"]


def _sets(extra):
    return [a for kv in [*TINY, *extra] for a in ("--set", kv)]


def _mpi_train(n_procs, *cli):
    """``mpiexec -n n_procs python -m marl train --backend mpi --no-progress *cli``; returns the process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    return subprocess.run([MPIEXEC, "-n", str(n_procs), sys.executable, "-m", "marl", "train", "--backend", "mpi",
                           "--no-progress", *cli], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)


def _ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in csv.DictReader(fh)]


def _assert_same_rows(got, want):
    """Every in-process value, equal; the MPI run adds only its byte counts (comm/bytes_*)."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert set(w) <= set(g) and all(k.startswith("comm/bytes_") for k in set(g) - set(w))
        for key in w:
            if w[key] == "" or g[key] == "":  # a metric logged only in some rows (eval/*)
                assert g[key] == w[key], key
                continue
            assert float(g[key]) == pytest.approx(float(w[key]), rel=ORACLE_RTOL, abs=1e-12), key


EVAL = ["eval_every=2", "eval_episodes=2"]  # greedy evaluations (eval/*) after iteration 2: the agents' modes
CASES = {
    "itrpo_n3": ("itrpo", EVAL),
    "matrpo_n3_ring_cyclic": ("matrpo", EVAL),
    # 2 critic steps per iteration (200 samples in minibatches of 128), each followed by 2 diffusion rounds
    "fdmarl_n3_ring": ("fdmarl", ["fdmarl.critic_minibatch_size=128", "fdmarl.critic_epochs=1",
                                  "fdmarl.diffusion_rounds=2", *EVAL]),
    "matrpo_n3_continuous": ("matrpo", ["env.continuous_actions=true", *EVAL]),  # Gaussian heads, [B, N, 5] actions
}
SLOW_CASES = {
    "matrpo_n4_complete_random_drops": ("matrpo", ["env.n_agents=4", "admm.graph=complete", "admm.edge_order=random",
                                                   "admm.drop_prob=0.2", "admm.dual_init=1.0", "admm.iterations=8"]),
    "fdmarl_n4_complete_q_shared_noise": ("fdmarl", ["env.n_agents=4", "admm.graph=complete", "fdmarl.critic=q",
                                                     "fdmarl.critic_minibatch_size=64", "sampling_noise=shared"]),
}


def _n_procs(extra):
    n = next((int(kv.split("=")[1]) for kv in extra if kv.startswith("env.n_agents=")), 3)
    return n + 1


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs(name) -> (in-process run dir, MPI run dir) of a case, each pair trained once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            algo, extra = {**CASES, **SLOW_CASES}[name]
            d = tmp_path_factory.mktemp(name)
            train(tiny_config(algo, *TINY, *extra), d / "inprocess", progress=False, tensorboard=False)
            _ok(_mpi_train(_n_procs(extra), "--algo", algo, "--out", str(d / "mpi"), *_sets(extra)))
            cache[name] = (d / "inprocess", d / "mpi")
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(CASES))
def test_mpi_backend_equals_in_process(runs, name):
    want, got = runs(name)
    _assert_same_rows(_rows(got), _rows(want))
    # the evaluation's greedy episodes (each agent process takes its own mode) are the in-process ones
    assert [r["eval/return"] != "" for r in _rows(got)] == [False, True, False]


def test_mpi_bytes_sent_match_the_in_process_float_counts(runs):
    """MATRPO: the bytes each agent process sent to its neighbours are 8 x the floats the in-process run counts."""
    want, got = runs("matrpo_n3_ring_cyclic")
    for g, w in zip(_rows(got), _rows(want)):
        for q in range(3):
            assert float(g[f"comm/bytes_sent_agent_{q}"]) == 8 * float(w[f"comm/floats_sent_agent_{q}"]) > 0
            assert float(g[f"comm/bytes_adv_norm_agent_{q}"]) > 0


def test_fdmarl_bytes_sent_are_the_diffused_parameters(runs):
    """FDMARL: each agent process sent its consensus parameters (float32) to each neighbour at every diffusion: 4 x the
    in-process float count, and that count is degree x parameters x critic steps x rounds (2 x 2 on the ring)."""
    from marl.algos.fdmarl import FDMARLAgent
    from marl.env_factory import make_env_for
    from marl.rundir import load_run_config
    from trpo_core import GAESettings, flat_params

    want, got = runs("fdmarl_n3_ring")
    config = load_run_config(got)
    env = make_env_for(config)
    agent = FDMARLAgent(0, env.obs_dims, env.n_actions, config.fdmarl, gae=GAESettings(), gae_boundaries="correct",
                        hidden_sizes=config.hidden_sizes, activation=config.activation,
                        seed=np.random.SeedSequence(0))
    n_params = sum(flat_params(getattr(agent.private, k)).numel() for k in agent.consensus_names)
    for g, w in zip(_rows(got), _rows(want)):
        for q in range(3):
            assert float(w[f"comm/floats_sent_agent_{q}"]) == 2 * n_params * 2 * 2
            assert float(g[f"comm/bytes_sent_agent_{q}"]) == 4 * float(w[f"comm/floats_sent_agent_{q}"])
        # monitoring (the disagreement, on agent 0): every other agent's parameters once, apart from the edges
        assert [float(g[f"comm/bytes_monitoring_agent_{q}"]) for q in range(3)] == [0, 4 * n_params, 4 * n_params]


def test_mpi_world_agent_bytes_carry_each_observation_twice_and_each_action_once(runs):
    """World <-> agent bytes per iteration against the payloads: every step one observation [B, obs_dim] float32 to
    the agent and one action [B, 1] int64 back (each a pickled message of known size), then the update's rollout
    slice (the observations again, plus rewards, flags and the joint action) and the agent's diagnostics."""
    import pickle

    import numpy as np

    from marl.env_factory import make_env_for
    from marl.rundir import load_run_config

    _, got = runs("matrpo_n3_ring_cyclic")
    config = load_run_config(got)
    t, b = config.steps_per_env, config.env.n_envs
    for row in _rows(got):
        for q, d in enumerate(make_env_for(config).obs_dims):
            act_in = len(pickle.dumps(("act", np.zeros((b, d), np.float32)), protocol=pickle.HIGHEST_PROTOCOL))
            act_out = len(pickle.dumps(np.zeros((b, 1), np.int64), protocol=pickle.HIGHEST_PROTOCOL))
            update_in = float(row[f"comm/bytes_world_to_agent_{q}"]) - t * act_in
            update_out = float(row[f"comm/bytes_agent_to_world_{q}"]) - t * act_out
            rollout = 4 * t * b * (d + 1) + 8 * t * b * 3  # observations + rewards (float32), joint action (int64)
            # the rest: last/final observations, done flags and indices, and the pickled tensors' headers
            assert rollout < update_in < rollout + 8192, q
            assert 0 < update_out < 4096, q  # the agent's diagnostics dict


def _part(run_dir, agent, iteration):
    return run_dir / "agents" / f"agent_{agent}" / f"checkpoint_{iteration:08d}.pt"


def test_a_committed_set_with_a_missing_part_is_an_error_naming_it(runs, tmp_path):
    """The MPI run leaves one complete set (the manifest's iteration, one part per agent); with agent 1's part gone,
    --resume refuses, naming the part, instead of training on a mixed state."""
    _, got = runs("matrpo_n3_ring_cyclic")
    manifest = load_checkpoint(got)["algo"]
    assert manifest["iteration"] == 3 and manifest["n_agents"] == 3
    assert sorted(p.relative_to(got) for p in got.glob("agents/*/*")) == [_part(Path(), i, 3) for i in range(3)]
    run = tmp_path / "run"
    shutil.copytree(got, run)
    _part(run, 1, 3).unlink()
    proc = _mpi_train(4, "--resume", str(run), "--steps", "800")
    assert proc.returncode != 0
    assert "incomplete: agent 1's part" in proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SLOW_CASES))
def test_mpi_backend_equals_in_process_slow(runs, name):
    want, got = runs(name)
    _assert_same_rows(_rows(got), _rows(want))


@pytest.mark.slow
@pytest.mark.parametrize(("algo", "policy"), [("matrpo", "policy"), ("fdmarl", "actor")])
def test_mpi_resume_uses_the_last_complete_set_and_eval_assembles_it(tmp_path, algo, policy):
    """Two MPI iterations, then a newer set that never completed (agents 0 and 1 wrote garbage parts for iteration 3,
    agent 2 none, no manifest), then --resume under mpiexec to three: the rows of the uninterrupted in-process run,
    and only the new complete set is left."""
    want_dir = tmp_path / "inprocess"
    train(tiny_config(algo, *TINY), want_dir, progress=False, tensorboard=False)
    run = tmp_path / "mpi"
    _ok(_mpi_train(4, "--algo", algo, "--out", str(run), *_sets(["total_steps=400"])))
    assert len(_rows(run)) == 2 and load_checkpoint(run)["algo"]["iteration"] == 2
    for agent in (0, 1):
        part = torch.load(_part(run, agent, 2), weights_only=False)
        part["iteration"] = 3
        for key in part["learner"][policy]:
            part["learner"][policy][key].zero_()
        save_state(_part(run, agent, 3), part)
    _ok(_mpi_train(4, "--resume", str(run), "--steps", "600"))
    _assert_same_rows(_rows(run), _rows(want_dir))
    assert sorted(p.relative_to(run) for p in run.glob("agents/*/*")) == [_part(Path(), i, 3) for i in range(3)]
    proc = subprocess.run([sys.executable, "-m", "marl", "eval", str(run), "--episodes", "2"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0 and "return" in proc.stdout, proc.stderr


def test_wrong_process_count_is_an_error_not_a_hang(tmp_path):
    proc = _mpi_train(3, "--algo", "itrpo", "--out", str(tmp_path / "run"), *_sets([]))
    assert proc.returncode != 0
    assert "needs N+1 = 4 processes" in proc.stdout + proc.stderr


def test_fdmarl_with_continuous_actions_is_refused_as_in_process(tmp_path):
    proc = _mpi_train(4, "--algo", "fdmarl", "--out", str(tmp_path / "run"), *_sets(["env.continuous_actions=true"]))
    assert proc.returncode != 0
    assert "algo 'fdmarl' supports discrete actions only" in proc.stdout + proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="the launcher's watch needs Linux pidfds")
def test_the_launchers_watch_names_the_process_that_ends_first(tmp_path):
    """Without MPI: three sleeping processes stand for a job's world and agents; the one killed is the one named."""
    import json
    import signal
    import socket
    import threading
    import time

    from marl.distributed import _watch_job, lost_process_message

    class Job:  # the running mpiexec, as the watch sees it
        def poll(self):
            return None

    started = time.time()
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(3)]
    try:
        host = socket.gethostname()
        entries = [{"rank": r, "host": host, "pid": p.pid} for r, p in enumerate(procs)]
        (tmp_path / "processes.json").write_text(json.dumps(
            {"world": entries[0], "agents": [dict(e, agent=r - 1) for r, e in enumerate(entries) if r]}))
        first = []
        watch = threading.Thread(target=_watch_job, args=(Job(), tmp_path, started, first), daemon=True)
        watch.start()
        time.sleep(0.5)
        procs[2].send_signal(signal.SIGKILL)
        watch.join(timeout=30)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert [e["rank"] for e in first] == [2]
    message = lost_process_message(first[0], 9, tmp_path)
    assert message.startswith(f"error: agent 1 (rank 2, pid {procs[2].pid} on {host}) stopped first")
    assert "no checkpoint set was completed" in message


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the launcher watches the job through Linux pidfds")
def test_kill_9_of_an_agent_ends_the_job_naming_it_and_the_last_complete_set_resumes(tmp_path):
    """``python -m marl train --backend mpi`` (which starts mpiexec itself): kill -9 of agent 1 (rank 2) mid-run
    ends the whole job promptly with an error naming agent 1; the last complete set is whole, and --resume then
    reproduces the uninterrupted run."""
    import json
    import signal
    import time

    extra = ["total_steps=1600"]
    want = tmp_path / "inprocess"
    train(tiny_config("matrpo", *TINY, *extra), want, progress=False, tensorboard=False)
    out = tmp_path / "mpi"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    job = subprocess.Popen([sys.executable, "-m", "marl", "train", "--backend", "mpi", "--no-progress", "--algo",
                            "matrpo", "--out", str(out), *_sets(extra)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (out / "checkpoint.pt").exists():
            time.sleep(0.2)
        assert job.poll() is None, "the job ended before it could be killed"
        pid = json.loads((out / "processes.json").read_text())["agents"][1]["pid"]
        os.kill(pid, signal.SIGKILL)
        t_kill = time.monotonic()
        output, _ = job.communicate(timeout=120)
        assert time.monotonic() - t_kill < 60
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0, output
    assert f"error: agent 1 (rank 2, pid {pid} on" in output, output
    committed = load_checkpoint(out)["algo"]["iteration"]
    assert 1 <= committed < 8 and len(_rows(out)) < 8
    assert f"the last complete checkpoint set is iteration {committed}" in output
    assert all(_part(out, i, committed).exists() for i in range(3))
    resumed = subprocess.run([sys.executable, "-m", "marl", "train", "--backend", "mpi", "--no-progress",
                              "--resume", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    _ok(resumed)
    _assert_same_rows(_rows(out), _rows(want))


# -- faults under a bare ``mpiexec`` (no launcher of ours around it) -------------------------------------------------


def _start_bare_mpi(out, extra):
    """``mpiexec -n 4 python -m marl train --backend mpi`` in the background, once its first checkpoint set is
    committed: (job, {agent: pid})."""
    import json
    import time

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    job = subprocess.Popen([MPIEXEC, "-n", "4", sys.executable, "-m", "marl", "train", "--backend", "mpi",
                            "--no-progress", "--algo", "matrpo", "--out", str(out), *_sets(extra)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and job.poll() is None and not (out / "checkpoint.pt").exists():
        time.sleep(0.2)
    assert job.poll() is None, "the job ended before the fault: " + job.communicate()[0]
    agents = {e["agent"]: e["pid"] for e in json.loads((out / "processes.json").read_text())["agents"]}
    return job, agents


def _end_of(job, pids, t_fault):
    """The job's output once it ended (bounded: a hang fails here), and the seconds from the fault to its end."""
    import signal
    import time

    try:
        output, _ = job.communicate(timeout=120)
        return output, time.monotonic() - t_fault
    finally:
        if job.poll() is None:
            job.kill()
        # nothing of the job may outlive it (the stopped process included; its proxy may take a moment to reap)
        deadline = time.monotonic() + 10
        left = list(pids)
        while left and time.monotonic() < deadline:
            left = [pid for pid in left if _running(pid)]
            time.sleep(0.1)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"processes {left} of the job outlived it"


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="the watchdog watches the agents through Linux pidfds")
def test_kill_9_of_an_agent_under_bare_mpiexec_ends_the_job_naming_it(tmp_path):
    """MPICH's launcher kills every process of the job within a second of the kill and names a pid of its own
    choosing; the world's watchdog (outside the job's process groups) names agent 1 on mpiexec's stderr and in
    failure.json, and the committed set stays whole."""
    import json
    import signal
    import time

    out = tmp_path / "run"
    job, agents = _start_bare_mpi(out, ["total_steps=4000"])
    os.kill(agents[1], signal.SIGKILL)
    output, seconds = _end_of(job, agents.values(), time.monotonic())
    assert job.returncode != 0 and seconds < 30, output
    assert f"error: agent 1 (rank 2, pid {agents[1]} on" in output, output
    assert "ended while the job was running" in output and f"--resume {out}" in output
    assert json.loads((out / "failure.json").read_text())["agent"] == 1
    committed = load_checkpoint(out)["algo"]["iteration"]
    assert f"the last complete checkpoint set is iteration {committed};" in output
    assert 1 <= committed < 20 and all(_part(out, i, committed).exists() for i in range(3))


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="the test checks the job's processes through pidfds")
def test_a_stopped_agent_is_named_after_mpi_agent_timeout(tmp_path):
    """SIGSTOP of agent 2 (alive, silent): the world misses its heartbeats and ends the job after
    ``mpi_agent_timeout`` seconds, naming agent 2 and the setting; MPI_Abort takes the stopped process down too."""
    import json
    import signal
    import time

    out = tmp_path / "run"
    job, agents = _start_bare_mpi(out, ["total_steps=4000", "mpi_agent_timeout=3"])
    os.kill(agents[2], signal.SIGSTOP)
    output, seconds = _end_of(job, agents.values(), time.monotonic())
    assert job.returncode != 0 and 1.5 < seconds < 30, output  # at most 1 s of heartbeat before the stop
    assert f"error: agent 2 (rank 3, pid {agents[2]} on" in output, output
    assert "(mpi_agent_timeout = 3 s)" in output and "the last complete checkpoint set is iteration" in output
    assert json.loads((out / "failure.json").read_text())["agent"] == 2


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="the test checks the job's processes through pidfds")
def test_resume_after_a_stopped_agent_reproduces_the_uninterrupted_run(tmp_path):
    import signal
    import time

    extra = ["total_steps=1600", "mpi_agent_timeout=3"]
    want = tmp_path / "inprocess"
    train(tiny_config("matrpo", *TINY, *extra), want, progress=False, tensorboard=False)
    out = tmp_path / "mpi"
    job, agents = _start_bare_mpi(out, extra)
    os.kill(agents[0], signal.SIGSTOP)
    output, _ = _end_of(job, agents.values(), time.monotonic())
    assert "error: agent 0 (rank 1" in output and len(_rows(out)) < 8, output
    _ok(_mpi_train(4, "--resume", str(out)))
    _assert_same_rows(_rows(out), _rows(want))
    assert not (out / "failure.json").exists()  # a new job clears the old record


def test_the_watchdog_names_the_first_agent_that_ends_and_is_silent_at_a_normal_end(tmp_path):
    """marl/_watchdog.py without MPI: sleeping processes stand for the agents, a pipe for the world."""
    import json
    import signal
    import socket

    watchdog = ROOT / "marl" / "_watchdog.py"
    host = socket.gethostname()

    def start(procs, err):
        spec = {"run_dir": str(tmp_path), "world": {"rank": 0, "host": host, "pid": os.getpid()}, "stderr_fd": err,
                "launcher_pid": None, "remote_agents": [],
                "agents": [{"agent": i, "rank": i + 1, "host": host, "pid": p.pid} for i, p in enumerate(procs)]}
        return subprocess.Popen([sys.executable, "-I", "-S", str(watchdog), json.dumps(spec)], stdin=subprocess.PIPE,
                                pass_fds=(err,), start_new_session=True)

    read, write = os.pipe()
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(3)]
    try:
        dog = start(procs, write)
        dog.stdin.write(b"done\n")  # a normal end: the agents then exit, and nothing is reported
        dog.stdin.close()
        procs[0].kill()
        assert dog.wait(timeout=30) == 0 and not (tmp_path / "failure.json").exists()
        procs[0].wait()
        procs[0] = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        dog = start(procs, write)
        procs[2].send_signal(signal.SIGKILL)
        assert dog.wait(timeout=30) == 0
        dog.stdin.close()
    finally:
        for p in procs:
            p.kill()
            p.wait()
    os.close(write)
    with os.fdopen(read) as fh:
        said = fh.read()
    assert said.startswith(f"error: agent 2 (rank 3, pid {procs[2].pid} on {host}) ended while the job was running")
    assert json.loads((tmp_path / "failure.json").read_text())["agent"] == 2
