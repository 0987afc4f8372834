"""Nothing lost, nothing silent: kill -9 and resume keeps every TensorBoard row once; a non-finite loss stops the run
with a named error and a resumable checkpoint; one process per run directory; stale temporaries are removed;
a crafted checkpoint cannot execute code; the paper's linearized exchange runs in the endpoint threads."""

from __future__ import annotations

import csv
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from marl.__main__ import main
from marl.algos.baselines import ITRPO
from marl.algos.matrpo import MATRPO
from marl.checkpoint import CheckpointError, RunError, RunLock, load_checkpoint
from marl.divergence import TrainingDiverged
from marl.train import train
from marl_tiny import tiny_config

TINY = ["--set", "steps_per_iter=200", "--set", "env.n_envs=4", "--set", "env.max_cycles=25",
        "--set", "hidden_sizes=16,16", "--set", "admm.iterations=4", "--set", "vf_epochs=1",
        "--set", "torch_threads=1", "--no-progress"]


def read_rows(run_dir: Path) -> list[dict]:
    if not (run_dir / "metrics.csv").exists():
        return []
    with open(run_dir / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def comparable(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def cli(*argv) -> list[str]:
    return [sys.executable, "-m", "marl", *map(str, argv)]


# -- 1. kill -9, resume, TensorBoard keeps every row once ---------------------------------------------------------
def test_kill_resume_keeps_every_tensorboard_row_once(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    run = tmp_path / "run"
    args = ["train", "--algo", "itrpo", "--steps", "2400", "--out", run, "--set", "checkpoint_every=3", *TINY]
    proc = subprocess.Popen(cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        # Kill once a row exists past the last checkpoint (checkpoints at iterations 3, 6, 9, 12).
        while len(read_rows(run)) < 4 or len(read_rows(run)) % 3 == 0:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_rows = len(read_rows(run))
    assert killed_rows < 12 and load_checkpoint(run)["iteration"] < killed_rows
    subprocess.run(cli("train", "--resume", run, "--no-progress"), check=True, capture_output=True, cwd=tmp_path)
    rows = read_rows(run)
    expected_steps = [200 * (k + 1) for k in range(12)]
    assert [int(float(r["env/steps"])) for r in rows] == expected_steps

    acc = event_accumulator.EventAccumulator(str(run / "tb"), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    for tag in ("env/return", "trpo/kl", "value/loss"):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == expected_steps, tag
        assert [e.value for e in events] == pytest.approx([float(r[tag]) for r in rows], rel=1e-6), tag


# -- 2. non-finite training stops with a named error after checkpointing the last good state ---------------------
def test_cli_nan_from_a_setting_names_it(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--algo", "itrpo", "--steps", "600", "--out", str(run), *TINY, "--set", "vf_lr=1e6"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "training diverged at iteration 0" in err and "vf_lr=1000000.0" in err
    assert load_checkpoint(run)["iteration"] == 0
    assert read_rows(run) == []  # nothing non-finite was logged


@pytest.mark.parametrize(("algo_cls", "when", "named"), [
    (ITRPO, "after", "agents.0.value"),  # the update returns; the parameters are checked
    (MATRPO, "before", "agents.1.value"),  # NaN values -> NaN advantages -> the update itself fails
])
def test_injected_nan_stops_and_the_checkpoint_resumes_the_run(tmp_path, monkeypatch, algo_cls, when, named):
    """A NaN put into one value network at iteration 2 stops the run there, naming it and ``vf_lr``; the
    checkpoint is the state at the start of iteration 2 (checkpoint_every=10 would not have saved it), and resuming
    it without the fault reproduces the uninterrupted run exactly."""
    algo = algo_cls.name
    cfg = tiny_config(algo, "total_steps=800", "checkpoint_every=10")
    train(cfg, tmp_path / "clean", progress=False, tensorboard=False)
    real_update = algo_cls.update
    agent = int(named.split(".")[1])

    def poison(self):
        with torch.no_grad():
            next(self.agents[agent].private.value.parameters()).view(-1)[0] = math.nan

    def faulty_update(self, rollout, iteration):
        if iteration == 2 and when == "before":
            poison(self)
        metrics = real_update(self, rollout, iteration)
        if iteration == 2 and when == "after":
            poison(self)
        return metrics

    monkeypatch.setattr(algo_cls, "update", faulty_update)
    with pytest.raises(TrainingDiverged, match="iteration 2") as info:
        train(cfg, tmp_path / "run", progress=False, tensorboard=False)
    assert named in str(info.value) and "vf_lr=0.0003" in str(info.value)
    assert load_checkpoint(tmp_path / "run")["iteration"] == 2
    rows = read_rows(tmp_path / "run")
    assert len(rows) == 2 and all(math.isfinite(float(v)) for r in rows for v in r.values() if v not in ("",))
    monkeypatch.setattr(algo_cls, "update", real_update)
    train(cfg, tmp_path / "run", resume=True, progress=False, tensorboard=False)
    assert comparable(read_rows(tmp_path / "run")) == comparable(read_rows(tmp_path / "clean"))


def test_closed_form_with_huge_trust_region_names_max_kl(tmp_path):
    cfg = tiny_config("matrpo", "admm.theta_update=closed_form", "trpo.max_kl=1e6", "total_steps=2000")
    with pytest.raises(TrainingDiverged, match=r"trpo\.max_kl=1000000\.0"):
        train(cfg, tmp_path / "run", progress=False, tensorboard=False)
    assert all(math.isfinite(float(r["trpo/kl"])) for r in read_rows(tmp_path / "run"))


# -- 3. one process per run directory ----------------------------------------------------------------------------
def test_two_runs_into_one_directory_one_is_refused(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--algo", "itrpo", "--steps", "1200", "--out", run, *TINY]
    procs = [subprocess.Popen(cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for _ in range(2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "in use by another process" in refused or "already holds a run" in refused
    rows = read_rows(run)
    assert [int(float(r["env/steps"])) for r in rows] == [200 * (k + 1) for k in range(6)]


def test_locked_directory_is_refused_and_freed_on_release(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lock = RunLock(run)
    cfg = tiny_config("itrpo", "total_steps=200")
    with pytest.raises(RunError, match=f"in use by another process \\(pid {os.getpid()}\\)"):
        train(cfg, run, progress=False, tensorboard=False)
    lock.release()
    train(cfg, run, progress=False, tensorboard=False)
    assert len(read_rows(run)) == 1


def test_resume_honours_a_smaller_total(tmp_path):
    """A run planned for 5 iterations, stopped after 2, resumed with 600 total steps ends after 3: the rows and the
    final checkpoint are those of a 600-step run."""
    train(tiny_config("itrpo", "total_steps=1000"), tmp_path / "run", progress=False, tensorboard=False, stop_after=2)
    result = train(tiny_config("itrpo", "total_steps=600"), tmp_path / "run", resume=True, progress=False,
                   tensorboard=False)
    assert result.iterations == 3 and load_checkpoint(tmp_path / "run")["iteration"] == 3
    train(tiny_config("itrpo", "total_steps=600"), tmp_path / "short", progress=False, tensorboard=False)
    assert comparable(read_rows(tmp_path / "run")) == comparable(read_rows(tmp_path / "short"))
    assert '"total_steps": 600' in (tmp_path / "run" / "config.json").read_text()


def test_stale_temporaries_are_removed_on_resume(tmp_path):
    cfg = tiny_config("itrpo", "total_steps=400")
    train(cfg, tmp_path / "run", progress=False, tensorboard=False, stop_after=1)
    stale = [tmp_path / "run" / ".checkpoint.pt.k2j3.tmp", tmp_path / "run" / ".metrics.csv.x81.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    train(cfg, tmp_path / "run", resume=True, progress=False, tensorboard=False)
    assert not any(p.exists() for p in stale)
    assert len(read_rows(tmp_path / "run")) == 2


# -- 4. a crafted checkpoint cannot execute code -----------------------------------------------------------------
class _Payload:
    """Unpickling this would write ``marker``: the classic malicious pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_crafted_checkpoint_does_not_execute(tmp_path, capsys):
    cfg = tiny_config("itrpo", "total_steps=200")
    run = tmp_path / "run"
    train(cfg, run, progress=False, tensorboard=False)
    marker = tmp_path / "pwned"
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    state["algo"]["payload"] = _Payload(marker)
    torch.save(state, run / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(run)
    for argv in (["eval", run, "--episodes", "1"], ["train", "--resume", run, "--steps", "400", "--no-progress"]):
        assert main([str(a) for a in argv]) == 2
        assert "refusing to load" in capsys.readouterr().err
    assert not marker.exists()
    # A raw pickle in place of the torch archive is refused as well.
    (run / "checkpoint.pt").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError):
        load_checkpoint(run)
    assert not marker.exists()


# -- 5. the paper's linearized exchange in the endpoint threads --------------------------------------------------
def test_linearized_exchange_with_parallel_endpoints_matches_serial(tmp_path):
    """End to end with ``admm.parallel_endpoints`` on (the default): it runs, and equals the single-threaded run."""
    rows = {}
    for threads in ("true", "false"):
        cfg = tiny_config("matrpo", "admm.exchange=linearized", f"admm.parallel_endpoints={threads}",
                          "admm.iterations=12", "total_steps=600")
        train(cfg, tmp_path / threads, progress=False, tensorboard=False)
        rows[threads] = comparable(read_rows(tmp_path / threads))
    assert len(rows["true"]) == 3 and rows["true"] == rows["false"]
    assert float(rows["true"][-1]["trpo/accepted_fraction"]) > 0  # the linearized messages were sent
