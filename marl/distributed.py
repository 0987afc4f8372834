"""Training with one process per agent over MPI: ``mpiexec -n N+1 python -m marl train --backend mpi ...`` (or the
same command without ``mpiexec``, which then starts it; see Faults).

Rank 0 is the *world*: it owns the batched environment, runs :func:`marl.train.train` unchanged (rollout loop,
team metrics, ``metrics.csv``/TensorBoard, progress bar, atomic checkpoints, ``--resume``) with a stand-in
algorithm, :class:`RemoteAlgorithm`, whose ``act`` and ``update`` are messages to the agents. Ranks 1..N are the
agents: agent i = rank i + 1 holds its own learner (policy, value net, value optimiser, random streams), exactly as
the in-process algorithm builds it, and computes its own GAE, value fit and policy step.

What crosses which link
-----------------------
* world -> agent i, every environment step: o^i_t only ([B, obs_dim_i]); agent i -> world: its action [B, k].
* world -> agent i, once per iteration: its own rollout slice (o^i, last/final o^i, r^i) and the global pieces the
  paper allows (§IV-D): the joint action, termination/truncation flags and reset indices.
* agent <-> graph neighbour (MATRPO only), per edge activation: the log-ratio vector x^q (N*M floats) by
  point-to-point ``Sendrecv``; the pooled advantage normalisation runs :func:`consensus_admm.mpi.solve` (sync, on
  the agents' communicator); each agent keeps a replica of ``EdgeConsensus`` and updates only its incident edges.
  Activations of edges that share no agent run concurrently, in separate processes.
* agent <-> graph neighbour (FDMARL only), after every critic step (x ``diffusion_rounds``): the agent's consensus
  networks' parameters omega~^i (float32), to and from each neighbour (the diffusion (F4)); nothing else crosses an
  edge. Monitoring only: agent 0 gathers every agent's parameters once per iteration for
  ``diffusion/critic_disagreement`` (a global quantity), counted as ``comm/bytes_monitoring_agent_<q>``.
* agent i -> world, once per iteration: its private diagnostics (KL, value loss, accepted steps, its message and
  float counts, its local residual maxima), which the world merges into the same metric keys as in-process.

Every agent derives the edge schedule from the same seed as the in-process engine, so an MPI run equals the
in-process run of the same configuration and seed, for I-TRPO, MATRPO and FDMARL (tests/marl/test_mpi_backend.py,
with ``stack_value_fits=false`` because the stacked fit is one computation over all agents, and one torch thread per
process), MATRPO also with continuous actions (Gaussian heads; FDMARL is refused there, as in-process), and so do
the greedy ``eval/*`` evaluations (``eval_every``: each agent process takes its own policy's mode; the world <->
agent traffic of an evaluation is not counted in ``comm/bytes_world_*``).

Bytes actually sent, per agent and iteration (MPI runs only, besides the in-process float counts):
``comm/bytes_sent_agent_<q>`` (its consensus messages to neighbours: MATRPO's log-ratios, FDMARL's diffused
parameters), ``comm/bytes_adv_norm_agent_<q>`` (MATRPO's advantage normalisation's consensus),
``comm/bytes_monitoring_agent_<q>`` (FDMARL's disagreement gather), ``comm/bytes_world_to_agent_<q>`` and ``comm/bytes_agent_to_world_<q>`` (the
pickled world <-> agent messages of the iteration: observations and actions of every step, the update's rollout
slice and the agent's diagnostics; the checkpoint requests, a few hundred bytes, are not counted).

Checkpoints
-----------
A checkpoint is a *set*: at a checkpoint every agent process writes its own part, atomically, to
``agents/agent_<q>/checkpoint_<iteration>.pt`` (policy, value net, value optimiser, random streams, and the
iteration, agent index, N and algorithm it belongs to) and acknowledges it; once every agent has, the world writes
``checkpoint.pt`` (atomically, last): its own part (environments, observations, iteration) with, in place of the
algorithm's state, the set's manifest (iteration, N, the parts' paths). The manifest is the commit: a set is
complete only when it exists, and a job killed in between leaves the previous manifest and the previous set (each
agent keeps the committed part until a newer set commits, then deletes it; temporary files of interrupted writes
go too). ``--resume`` loads the set the manifest names, checks every part is that agent's part of that iteration
(missing or mismatched parts are an error naming them, never a mixed state), and deletes parts of newer sets that
never completed. ``eval`` assembles the parts into the in-process state. In-process runs keep their single
``checkpoint.pt``.

Faults
------
What MPICH's launcher (hydra, the ``mpich`` wheel's ``mpiexec``) does when a process of the job is lost (kill -9,
out of memory, ``MPI_Abort``), measured here: its proxy SIGKILLs every other process of the job, process group by
process group, 0.2-0.4 s after the loss, prints ``BAD TERMINATION ... PID p ... EXIT CODE: 9`` with a pid that need
not be the lost one, and exits with status 9. No process of the job survives to report anything, so the report
comes from outside it:

* **Lost agent (any launch).** At start the world writes ``processes.json`` (rank, host and pid of every process)
  and starts ``marl/_watchdog.py``: a standard-library script (no torch, no MPI) in a session of its own, which
  hydra's clean-up does not reach. It watches the agents on its host through Linux pidfds and the world through a
  pipe (the world writes ``done`` on a normal end, and before every checkpoint set the set it commits). The first
  agent to end while the job runs is named on ``mpiexec``'s stderr (reopened through ``/proc``; appended once
  mpiexec has ended when that is a regular file) and in ``failure.json``: ``error: agent 1 (rank 2, pid ... on
  host) ended while the job was running (killed, crashed or aborted ...); the MPI launcher ended the job; the last
  complete checkpoint set is iteration k; continue with: python -m marl train --backend mpi --resume DIR``, within a
  second of the kill (tested under a bare ``mpiexec``). An agent that raises prints its traceback and aborts the
  job (and is named too when the watchdog sees it end first).
* **Hung agent** (alive but silent: SIGSTOP, a deadlock, an unreachable host). Every agent process sends the world
  a heartbeat once a second from a thread of its own, whatever its update is doing; while the world waits for a
  reply it drains them, and an agent silent for ``mpi_agent_timeout`` seconds (config, default 60; a resumable
  change) ends the job: the world names it (``... sent no heartbeat for 60.2 s (mpi_agent_timeout = 60 s) ...``, on
  its stderr and in ``failure.json``) and calls ``MPI_Abort``, which takes every process down, the stopped one too
  (tested). A long update is not a hang: its heartbeats go on.
* ``python -m marl train --backend mpi ...`` run *outside* mpiexec starts ``mpiexec -n N+1`` itself (:func:`launch`)
  and, when neither the world nor the watchdog named anyone, names the process that ended first (pidfds).

The checkpoint set the message names is whole (the manifest commits a set only once every part is written), and
``--resume`` continues from it exactly (tested after a kill and after a hang). Limits: the watchdog sees only the
agents on the world's host; an agent lost on another host makes hydra end the job too, and the watchdog then names
the world as ended first, listing the agents it could not watch (a hang there is named by the heartbeats). C-TRPO
has no MPI backend (it is centralized).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import networkx as nx
import numpy as np
import torch

from consensus_admm import ADMMSettings, Averaging
from consensus_admm.graphs import metropolis_weights
from trpo_core import GAESettings

from .algos import check_action_space
from .algos.baselines import mean_over_agents, step_metrics, trpo_policy_update
from .algos.batch import samples, standardize
from .algos.fdmarl import FDMARLAgent, team_metrics
from .algos.from_config import learner_settings, matrpo_settings, trpo_settings
from .algos.learner import Learner
from .algos.matrpo import MATRPOAgent, communication_graph, edge_engine
from .algos.seeding import seed_sequence, shared_noise_generator
from .checkpoint import CHECKPOINT_NAME, atomic_write_bytes, load_checkpoint, load_state, save_state
from .config import TrainConfig
from .rollout import Rollout

__all__ = ["train_mpi", "launch", "under_mpi_launcher", "find_mpiexec", "lost_process_message", "RemoteAlgorithm",
           "MPI_ALGORITHMS", "is_manifest", "assemble_state", "committed_iteration", "part_path"]

MPI_ALGORITHMS = ("itrpo", "matrpo", "fdmarl")
MANIFEST_FORMAT = "marl.distributed/checkpoint-set-1"
PROCESSES_NAME = "processes.json"
FAILURE_NAME = "failure.json"  # the world's record of the agent process it named when it ended the job
_TAG = 31
_HEARTBEAT_TAG = 37
_CHECK_SECONDS = 0.05  # while waiting for a reply, heartbeats are drained and checked this often


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:  # pragma: no cover - only without the extra
        raise ImportError("--backend mpi needs mpi4py: pip install -e '.[mpi]'") from exc
    return MPI


def train_mpi(config: TrainConfig, out_dir, *, resume: bool = False, progress: bool = True,
              tensorboard: bool = True, stop_after: int | None = None):
    """Run :func:`marl.train.train` on rank 0 with the agents in ranks 1..N; returns its TrainResult on rank 0, None
    on the agents. Every rank must call it with the same arguments."""
    MPI = _mpi()
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    agents = comm.Split(color=0 if rank == 0 else 1, key=rank)
    try:
        if rank == 0:
            from .train import train

            remote = {}

            def factory(obs_dims, n_actions, cfg):
                remote["algo"] = RemoteAlgorithm(comm, obs_dims, n_actions, cfg, out_dir)
                return remote["algo"]

            try:
                return train(config, out_dir, resume=resume, progress=progress, tensorboard=tensorboard,
                             stop_after=stop_after, algorithm_factory=factory)
            finally:
                if "algo" in remote:
                    remote["algo"].close()
                else:
                    for r in range(1, comm.Get_size()):
                        _send_obj(comm, ("stop", None), r)
        try:
            _agent_loop(comm, agents)
        except BaseException:
            # An agent that fails must take the job down, never leave the world waiting for its reply.
            traceback.print_exc()
            comm.Abort(1)
        return None
    finally:
        agents.Free()


# ----------------------------------------------------------------------------------------------------------------
# Launcher: ``python -m marl train --backend mpi`` outside mpiexec starts the job and names a lost agent
# ----------------------------------------------------------------------------------------------------------------

_LAUNCHER_ENV = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def under_mpi_launcher() -> bool:
    """Whether this process was started by an MPI launcher (mpiexec, srun with PMI)."""
    return any(name in os.environ for name in _LAUNCHER_ENV)


def find_mpiexec() -> str | None:
    """``mpiexec`` on PATH or beside this Python (the ``mpich`` wheel installs it there)."""
    return shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))


def launch(argv: list[str], n_agents: int, run_dir, *, mpiexec: str | None = None) -> int:
    """Run ``mpiexec -n N+1 python -m marl <argv>`` (same stdout/stderr); returns its exit status.

    When a process of the job is lost (kill -9, out of memory), the MPI launcher kills every other process at once,
    so none of them can report it, and MPICH's report names one pid, which is not always the lost one (here it named
    the world's when an agent was killed). This parent therefore watches the job's processes on this host itself
    (``processes.json`` + Linux pidfds, which become readable the moment a process ends) and names the one that ended
    first, with the checkpoint set that ``--resume`` will use, unless the world or its watchdog has already named a
    process (``failure.json``, module docstring).
    """
    mpiexec = mpiexec or find_mpiexec()
    if mpiexec is None:
        raise FileNotFoundError("--backend mpi needs mpiexec: pip install -e '.[mpi]' (the mpich wheel brings it)")
    started = time.time()
    job = subprocess.Popen([mpiexec, "-n", str(n_agents + 1), sys.executable, "-m", "marl", *argv])
    first: list[dict] = []
    watcher = threading.Thread(target=_watch_job, args=(job, Path(run_dir), started, first), daemon=True)
    watcher.start()
    try:
        rc = job.wait()
    except KeyboardInterrupt:  # Ctrl-C reached mpiexec too (same process group); let it end the ranks
        rc = job.wait()
    watcher.join(timeout=1.0)
    failure = Path(run_dir) / FAILURE_NAME
    named = failure.exists() and failure.stat().st_mtime >= started - 1.0  # by the world or its watchdog
    # 1, 2: the job reported its own error (traceback, "error: ...")
    if rc not in (0, 1, 2) and len(first) == 1 and not named:
        print(lost_process_message(first[0], rc, run_dir), file=sys.stderr, flush=True)
    return rc


def _watch_job(job, run_dir: Path, started: float, first: list) -> None:
    """Append to ``first`` the entries of ``processes.json`` (this host's) that ended first (Linux pidfds)."""
    import select

    path = run_dir / PROCESSES_NAME
    while job.poll() is None and not (path.exists() and path.stat().st_mtime >= started - 1.0):
        time.sleep(0.1)
    if job.poll() is not None or not hasattr(os, "pidfd_open"):
        return
    processes = json.loads(path.read_text())
    here = socket.gethostname()
    fds = {}
    for e in [dict(processes["world"], agent=None), *processes["agents"]]:
        if e["host"] != here:
            continue
        try:
            fds[os.pidfd_open(e["pid"])] = e
        except ProcessLookupError:  # already gone
            first.append(e)
    try:
        if not first and fds:
            ready, _, _ = select.select(list(fds), [], [])
            first.extend(fds[fd] for fd in ready)
    finally:
        for fd in fds:
            os.close(fd)


def lost_process_message(entry: dict, status: int, run_dir) -> str:
    """The error naming the process of the job that ended first (an entry of ``processes.json``)."""
    who = "the world process" if entry.get("agent") is None else f"agent {entry['agent']}"
    return (f"error: {who} (rank {entry['rank']}, pid {entry['pid']} on {entry['host']}) stopped first and the MPI "
            f"launcher ended the job (exit status {status}); {_resume_hint(run_dir)}")


def _resume_hint(run_dir) -> str:
    committed = committed_iteration(run_dir)
    return ("no checkpoint set was completed" if committed is None else
            f"the last complete checkpoint set is iteration {committed}; continue with: "
            f"python -m marl train --backend mpi --resume {run_dir}")


def _start_watchdog(processes: dict, run_dir: Path):
    """Start ``marl/_watchdog.py`` (its docstring) for the agents on this host; None without Linux pidfds."""
    if not hasattr(os, "pidfd_open"):
        return None
    here = socket.gethostname()
    err, launcher = _launcher_stderr()
    spec = {"run_dir": str(run_dir), "world": processes["world"], "stderr_fd": err, "launcher_pid": launcher,
            "agents": [e for e in processes["agents"] if e["host"] == here],
            "remote_agents": [e["agent"] for e in processes["agents"] if e["host"] != here]}
    try:
        return subprocess.Popen([sys.executable, "-I", "-S", str(Path(__file__).with_name("_watchdog.py")),
                                 json.dumps(spec)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, pass_fds=(err,), start_new_session=True)
    finally:
        os.close(err)


def _launcher_stderr() -> tuple[int, int | None]:
    """(descriptor, pid): the stderr of ``mpiexec`` (this process's grandparent, through hydra's proxy, on the host
    it was started on), which outlives the job's processes; else a duplicate of this process's own, and None."""
    try:
        launcher = int(Path(f"/proc/{os.getppid()}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if Path(f"/proc/{launcher}/comm").read_text().startswith("mpiexec"):
            return os.open(f"/proc/{launcher}/fd/2", os.O_WRONLY | os.O_APPEND), launcher
    except (OSError, ValueError, IndexError):  # not Linux, another launcher, a stderr that cannot be reopened
        pass
    return os.dup(2), None


# ----------------------------------------------------------------------------------------------------------------
# World side
# ----------------------------------------------------------------------------------------------------------------


class RemoteAlgorithm:
    """The world's stand-in for an algorithm: ``act``/``update``/``state_dict`` are requests to the agent processes.

    ``state_dict`` has every agent write its own checkpoint part and returns the set's manifest (which
    :func:`marl.train.train` then writes, last, into ``checkpoint.pt``); ``load_state_dict`` has every agent read its
    part of the set a manifest names.
    """

    def __init__(self, comm, obs_dims, n_actions, config: TrainConfig, run_dir):
        if config.algo not in MPI_ALGORITHMS:
            raise ValueError(f"--backend mpi supports algo in {MPI_ALGORITHMS}, got {config.algo!r}")
        check_action_space(config)
        n = len(obs_dims)
        if comm.Get_size() != n + 1:
            raise ValueError(f"--backend mpi needs N+1 = {n + 1} processes (one world, one per agent), "
                             f"got {comm.Get_size()}: mpiexec -n {n + 1} python -m marl train --backend mpi ...")
        self.comm, self.config, self.n_agents, self.run_dir = comm, config, n, Path(run_dir)
        self.name = config.algo
        self.iteration = 0  # the iteration the agents' learners are at (updates done)
        self.bytes_to = np.zeros(n, dtype=np.int64)  # world -> agent i since the last update
        self.bytes_from = np.zeros(n, dtype=np.int64)  # agent i -> world since the last update
        (self.run_dir / FAILURE_NAME).unlink(missing_ok=True)  # a previous job's
        self.last_beat = np.full(n, time.monotonic())  # when the world last received each agent's heartbeat
        self.processes = {"world": {"rank": 0, "host": socket.gethostname(), "pid": os.getpid()},
                          "agents": [{"agent": i, "rank": i + 1, "host": "?", "pid": "?"} for i in range(n)]}
        where = self._request([("init", (config, i, list(obs_dims), list(n_actions), str(self.run_dir)))
                               for i in range(n)], count=False)
        self.processes["agents"] = [{"agent": i, "rank": i + 1, **w} for i, w in enumerate(where)]
        atomic_write_bytes(self.run_dir / PROCESSES_NAME, json.dumps(self.processes, indent=2).encode())
        self._watchdog = _start_watchdog(self.processes, self.run_dir)

    def _request(self, payloads, *, count: bool = True):
        """Send payload i to agent i, then gather the replies in agent order; ``count``: add to the byte counters."""
        for i, p in enumerate(payloads):
            sent = _send_obj(self.comm, p, i + 1)
            self.bytes_to[i] += sent if count else 0
        replies = []
        for i in range(self.n_agents):
            reply, received = self._await(i)
            self.bytes_from[i] += received if count else 0
            replies.append(reply)
        return replies

    def _await(self, i: int):
        """(reply, bytes) of agent i's next reply. While waiting, every agent's heartbeats are drained; one that
        sent none for ``mpi_agent_timeout`` seconds (it hangs, or its host is gone) ends the job, named."""
        MPI = _mpi()
        status = MPI.Status()
        next_check = 0.0
        while not self.comm.Iprobe(source=i + 1, tag=_TAG, status=status):
            now = time.monotonic()
            if now < next_check:
                continue
            next_check = now + _CHECK_SECONDS
            while self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=_HEARTBEAT_TAG, status=status):
                self.comm.Recv(bytearray(0), source=status.Get_source(), tag=_HEARTBEAT_TAG)
                self.last_beat[status.Get_source() - 1] = now
            silent = now - self.last_beat
            q = int(np.argmax(silent))
            if silent[q] > self.config.mpi_agent_timeout:
                self._end_job(q, f"sent no heartbeat for {silent[q]:.1f} s (mpi_agent_timeout = "
                                 f"{self.config.mpi_agent_timeout:g} s): it hangs (stopped, deadlocked) or its host "
                                 "is unreachable")
        buf = bytearray(status.Get_count(MPI.BYTE))
        self.comm.Recv(buf, source=i + 1, tag=_TAG)
        return MPI.pickle.loads(buf), len(buf)

    def _end_job(self, agent: int, what: str) -> None:
        """Name agent ``agent`` (stderr, and ``failure.json`` in the run directory, which outlives the job) and
        abort the MPI job."""
        entry = self.processes["agents"][agent]
        message = (f"error: agent {agent} (rank {entry['rank']}, pid {entry['pid']} on {entry['host']}) {what}; "
                   f"the job is ended; {_resume_hint(self.run_dir)}")
        atomic_write_bytes(self.run_dir / FAILURE_NAME, json.dumps(dict(entry, message=message)).encode())
        print(message, file=sys.stderr, flush=True)
        self.comm.Abort(3)

    def act(self, obs: list[torch.Tensor], *, greedy: bool = False) -> torch.Tensor:
        """Every agent process samples its column (``greedy``: takes its policy's mode, for the ``eval/*``
        evaluations, whose traffic is not counted in the iteration's ``comm/bytes_world_*``)."""
        cols = self._request([("act_greedy" if greedy else "act", o.numpy()) for o in obs], count=not greedy)
        return torch.cat([torch.from_numpy(c) for c in cols], dim=1)

    def update(self, rollout: Rollout, iteration: int) -> dict[str, float]:
        shared = dict(actions=rollout.actions, terminated=rollout.terminated, truncated=rollout.truncated,
                      done_index=rollout.done_index)
        payloads = [("update", (iteration, dict(shared, obs=rollout.obs[i], last_obs=rollout.last_obs[i],
                                                final_obs=rollout.final_obs[i], rewards=rollout.rewards[..., i])))
                    for i in range(self.n_agents)]
        parts = self._request(payloads)
        metrics = _MERGE[self.name](parts, self.config)
        # World <-> agent traffic of this iteration (every act request/reply and this update), pickled bytes.
        for i in range(self.n_agents):
            metrics[f"comm/bytes_world_to_agent_{i}"] = float(self.bytes_to[i])
            metrics[f"comm/bytes_agent_to_world_{i}"] = float(self.bytes_from[i])
        self.bytes_to[:] = 0
        self.bytes_from[:] = 0
        self.iteration = iteration + 1
        return metrics

    def state_dict(self) -> dict:
        """Every agent writes its part of the set for ``self.iteration``; returns the set's manifest."""
        it = self.iteration
        committed = committed_iteration(self.run_dir)
        self._tell_watchdog(f"set {committed} {it} {time.time_ns()}")  # what it names as the last complete set
        acks = self._request([("save", (it, committed))] * self.n_agents, count=False)
        parts = [str(part_path(".", i, it)) for i in range(self.n_agents)]
        if acks != parts:  # pragma: no cover - protocol error
            raise RuntimeError(f"agents acknowledged {acks}, expected {parts}")
        return {"format": MANIFEST_FORMAT, "algo": self.name, "n_agents": self.n_agents, "iteration": it,
                "parts": parts}

    def load_state_dict(self, state: dict) -> None:
        """Every agent loads its part of the set ``state`` (a manifest) names."""
        if not is_manifest(state) or state["n_agents"] != self.n_agents or state["algo"] != self.name:
            raise ValueError(f"{self.run_dir / CHECKPOINT_NAME} does not name a checkpoint set of {self.n_agents} "
                             f"{self.name} agents")
        errors = [e for e in self._request([("load", state["iteration"])] * self.n_agents, count=False) if e]
        if errors:
            raise FileNotFoundError(f"checkpoint set of iteration {state['iteration']} in {self.run_dir} is "
                                    "incomplete: " + "; ".join(errors))
        self.iteration = int(state["iteration"])

    def _tell_watchdog(self, line: str) -> bool:
        """Send the watchdog a line (marl/_watchdog.py); False when there is none (no pidfds, or it is gone)."""
        if self._watchdog is None:
            return False
        try:
            self._watchdog.stdin.write(line.encode() + b"\n")
            self._watchdog.stdin.flush()
        except BrokenPipeError:  # it failed: training goes on without it
            self._watchdog = None
        return self._watchdog is not None

    def close(self) -> None:
        if self._tell_watchdog("done"):  # a normal end: the agents about to exit are not lost
            self._watchdog.stdin.close()
            self._watchdog.wait(timeout=30)
        committed = committed_iteration(self.run_dir)
        for i in range(self.n_agents):
            _send_obj(self.comm, ("stop", committed), i + 1)
        # Every agent answers once its heartbeat thread has ended; the heartbeats sent before are received here, so
        # that no message is left in flight to a process that has finalized MPI.
        for i in range(self.n_agents):
            self._await(i)
        status = _mpi().Status()
        while self.comm.Iprobe(source=_mpi().ANY_SOURCE, tag=_HEARTBEAT_TAG, status=status):
            self.comm.Recv(bytearray(0), source=status.Get_source(), tag=_HEARTBEAT_TAG)


def _merge_itrpo(parts, config) -> dict[str, float]:
    """The metrics of ``ITRPO.update`` from the agents' own parts."""
    n = len(parts)
    metrics: dict[str, float] = {}
    for p in parts:
        metrics.update(p["metrics"])
    metrics["time/value_fit"] = max(p["value_fit_seconds"] for p in parts)
    mean_over_agents(metrics, ["trpo/kl", "trpo/accepted", "trpo/surrogate_improvement", "value/loss",
                                "value/explained_variance"], n)
    metrics["trpo/accepted_fraction"] = metrics.pop("trpo/accepted")
    return metrics


def _merge_matrpo(parts, config) -> dict[str, float]:
    """The metrics of ``MATRPO.update`` from the agents' own parts (residual maxima, counts, per-agent values)."""
    n = len(parts)
    metrics: dict[str, float] = {}
    dual = {}
    for p in parts:
        dual.update(p["dual_residuals"])
    dual = [dual[k] for k in sorted(dual)]
    tail = max(1, len(dual) // 10)
    accepted = np.array([p["accepted"] for p in parts])
    updates = np.array([p["updates"] for p in parts])
    lag_gain = np.array([p["lag_gain"] for p in parts])
    metrics["admm/consensus_error"] = max(p["consensus_error"] for p in parts)
    metrics["admm/primal_residual"] = max(p["primal_residual"] for p in parts)
    metrics["admm/dual_residual"] = float(np.mean(dual[-tail:]))
    metrics["admm/edge_activations"] = float(config.admm_iterations)
    metrics["trpo/accepted_fraction"] = float(accepted.sum() / max(updates.sum(), 1))
    metrics["trpo/lagrangian_improvement"] = float(lag_gain.sum() / max(updates.sum(), 1))
    metrics["admm/dropped_exchanges"] = float(sum(p["dropped"] for p in parts))
    metrics["comm/messages_total"] = float(sum(p["messages"] for p in parts))
    metrics["comm/floats_sent_total"] = float(sum(p["floats"] for p in parts))
    for q, p in enumerate(parts):
        metrics[f"comm/floats_sent_agent_{q}"] = float(p["floats"])
        # Bytes this agent's process actually sent to its neighbours: log-ratio messages of the consensus (8 per
        # float64; equal to 8 x the float count above while the edges' duals cancel), and the advantage
        # normalisation's consensus including its stopping floods.
        metrics[f"comm/bytes_sent_agent_{q}"] = float(p["bytes_sent"])
        metrics[f"comm/bytes_adv_norm_agent_{q}"] = float(p["adv_norm_bytes"])
    for p in parts:
        metrics.update(p["metrics"])
    metrics["comm/floats_adv_norm"] = float(sum(p["floats_adv_norm"] for p in parts))
    metrics["time/value_fit"] = max(p["value_fit_seconds"] for p in parts)
    for key in ("advantages", "prepare", "consensus"):
        metrics[f"time/{key}"] = max(p["seconds"][key] for p in parts)
    metrics["time/value_fit_wait"] = 0.0  # each agent fits before its consensus
    metrics["trpo/kl"] = float(np.mean([metrics[f"trpo/kl_agent_{i}"] for i in range(n)]))
    metrics["trpo/surrogate_improvement"] = float(
        np.sum([metrics[f"trpo/surrogate_improvement_agent_{i}"] for i in range(n)]))
    metrics["value/loss"] = float(np.mean([metrics[f"value/loss_agent_{i}"] for i in range(n)]))
    metrics["value/explained_variance"] = float(
        np.mean([metrics[f"value/explained_variance_agent_{i}"] for i in range(n)]))
    return metrics


def _merge_fdmarl(parts, config) -> dict[str, float]:
    """The metrics of ``FDMARL.update`` from the agents' own parts."""
    metrics: dict[str, float] = {}
    for p in parts:
        metrics.update(p["metrics"])
    team_metrics(metrics, np.array([p["critic_loss"] for p in parts]), np.array([p["actor_stats"] for p in parts]))
    metrics["diffusion/critic_disagreement"] = parts[0]["disagreement"]
    metrics["comm/messages_total"] = float(np.array([p["messages"] for p in parts], dtype=float).sum())
    metrics["comm/floats_sent_total"] = float(np.array([p["floats"] for p in parts], dtype=float).sum())
    return metrics


_MERGE = {"itrpo": _merge_itrpo, "matrpo": _merge_matrpo, "fdmarl": _merge_fdmarl}


# ----------------------------------------------------------------------------------------------------------------
# Agent side
# ----------------------------------------------------------------------------------------------------------------


def _agent_loop(comm, agents) -> None:
    """Serve the world's requests until "stop"; from "init" on, a thread sends the world a heartbeat every second."""
    worker = None
    stop = threading.Event()
    heartbeat = threading.Thread(target=_heartbeat, args=(comm, stop), name="heartbeat", daemon=True)
    try:
        while True:
            (cmd, payload), _ = _recv_obj(comm, 0)
            if cmd == "stop":
                if worker is not None and payload is not None:
                    _prune_parts(worker.run_dir, worker.i, keep={payload})
                if heartbeat.is_alive():  # the world waits for this answer once it has had "init"
                    stop.set()
                    heartbeat.join()
                    _send_obj(comm, "stopped", 0)
                return
            if cmd == "init":
                heartbeat.start()
                config, i, obs_dims, n_actions, run_dir = payload
                if config.torch_threads is not None:
                    torch.set_num_threads(config.torch_threads)
                worker = _AGENTS[config.algo](agents, config, i, obs_dims, n_actions)
                worker.run_dir, worker.n_agents = Path(run_dir), len(obs_dims)
                reply = {"host": socket.gethostname(), "pid": os.getpid()}
            elif cmd in ("act", "act_greedy"):
                with torch.no_grad():
                    reply = worker.act(torch.from_numpy(payload), greedy=cmd == "act_greedy").numpy()
            elif cmd == "update":
                reply = worker.update(*payload)
            elif cmd == "save":
                reply = _save_part(worker, *payload)
            elif cmd == "load":
                reply = _load_part(worker, payload)
            else:  # pragma: no cover - protocol error
                raise RuntimeError(f"unknown request {cmd!r}")
            _send_obj(comm, reply, 0)
    finally:
        stop.set()
        if heartbeat.is_alive():
            heartbeat.join()


def _heartbeat(comm, stop: threading.Event, interval: float = 1.0) -> None:
    """Tell the world this process is alive, every ``interval`` seconds until ``stop``: an empty message, sent
    however busy the main thread is (it waits in MPI or computes in torch, both with the GIL released)."""
    while not stop.wait(interval):
        comm.Send(bytearray(0), dest=0, tag=_HEARTBEAT_TAG)


def _send_obj(comm, obj, dest: int) -> int:
    """Pickle ``obj`` and send it to ``dest``; returns the bytes sent."""
    data = _mpi().pickle.dumps(obj)
    comm.Send(data, dest=dest, tag=_TAG)
    return len(data)


def _recv_obj(comm, source: int):
    """(object, bytes received) of the next message from ``source``."""
    MPI = _mpi()
    status = MPI.Status()
    comm.Probe(source=source, tag=_TAG, status=status)
    buf = bytearray(status.Get_count(MPI.BYTE))
    comm.Recv(buf, source=source, tag=_TAG)
    return MPI.pickle.loads(buf), len(buf)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint sets: one part per agent, committed by the world's checkpoint.pt (the manifest, written last)
# ----------------------------------------------------------------------------------------------------------------


def part_path(run_dir, agent: int, iteration: int) -> Path:
    """Where agent ``agent`` writes its part of the checkpoint set of ``iteration``."""
    return Path(run_dir) / "agents" / f"agent_{agent}" / f"checkpoint_{iteration:08d}.pt"


def is_manifest(state) -> bool:
    """Whether a checkpoint's ``"algo"`` entry is an MPI run's manifest (not an in-process algorithm state)."""
    return isinstance(state, dict) and state.get("format") == MANIFEST_FORMAT


def committed_iteration(run_dir) -> int | None:
    """The iteration of the checkpoint set ``run_dir/checkpoint.pt`` commits, None before the first."""
    if not (Path(run_dir) / CHECKPOINT_NAME).exists():
        return None
    algo = load_checkpoint(run_dir)["algo"]
    return int(algo["iteration"]) if is_manifest(algo) else None


def _read_part(run_dir, agent: int, n_agents: int, algo: str, iteration: int) -> dict:
    """Agent ``agent``'s part of the set of ``iteration``, checked to be that part; raises FileNotFoundError."""
    path = part_path(run_dir, agent, iteration)
    if not path.exists():
        raise FileNotFoundError(f"agent {agent}'s part {path} is missing")
    part = load_state(path)  # tensors and plain data only: a part from elsewhere runs no pickled code
    got = (part.get("iteration"), part.get("agent"), part.get("n_agents"), part.get("algo"))
    if got != (iteration, agent, n_agents, algo):
        raise FileNotFoundError(f"{path} holds (iteration, agent, n_agents, algo) = {got}, "
                                f"expected {(iteration, agent, n_agents, algo)}")
    return part


def assemble_state(run_dir, manifest: dict) -> dict:
    """The in-process algorithm state (``{"agents": [...]}``) of the checkpoint set a manifest names (for eval)."""
    return {"agents": [_read_part(run_dir, i, manifest["n_agents"], manifest["algo"], manifest["iteration"])["learner"]
                       for i in range(manifest["n_agents"])]}


def _save_part(worker, iteration: int, committed: int | None) -> str:
    """Write this agent's part for ``iteration`` atomically; keep only it and the committed set's part."""
    state = {"format": MANIFEST_FORMAT, "iteration": iteration, "agent": worker.i, "n_agents": worker.n_agents,
             "algo": worker.config.algo, "learner": worker.learner.state_dict()}
    save_state(part_path(worker.run_dir, worker.i, iteration), state)
    _prune_parts(worker.run_dir, worker.i, keep={iteration, committed})
    return str(part_path(".", worker.i, iteration))


def _load_part(worker, iteration: int) -> str | None:
    """Load this agent's part of the set of ``iteration``; returns an error message instead of raising."""
    try:
        part = _read_part(worker.run_dir, worker.i, worker.n_agents, worker.config.algo, iteration)
    except FileNotFoundError as exc:
        return str(exc)
    worker.learner.load_state_dict(part["learner"])
    _prune_parts(worker.run_dir, worker.i, keep={iteration})  # newer parts of a set that was never committed
    return None


def _prune_parts(run_dir, agent: int, keep: set) -> None:
    """Delete this agent's parts of iterations not in ``keep`` and temporary files of interrupted writes."""
    folder = part_path(run_dir, agent, 0).parent
    for path in folder.glob("checkpoint_*.pt"):
        if int(path.stem.split("_")[1]) not in keep:
            path.unlink(missing_ok=True)
    for path in folder.glob(".checkpoint_*.tmp"):
        path.unlink(missing_ok=True)


def _own_gae(learner: Learner, d: dict):
    """GAE on the agent's own slice: (advantages, returns, values) as flat samples (``samples`` order)."""
    adv, ret, val = learner.advantages(d["obs"], d["last_obs"], d["done_index"], d["final_obs"], d["rewards"],
                                       d["terminated"], d["truncated"])
    return samples(adv), samples(ret), samples(val)


def _timed_value_fit(learner: Learner, obs, ret, val):
    t = time.perf_counter()
    vf = learner.fit_value(obs, ret, val)
    return vf, time.perf_counter() - t


class _Worker:
    """An agent process's algorithm side: ``learner`` (what its checkpoint part holds), ``act`` and ``update``."""

    def act(self, obs: torch.Tensor, *, greedy: bool = False) -> torch.Tensor:
        """This agent's columns of the joint action, [B, heads] (``greedy``: the policy's mode)."""
        return self.learner.act(obs, greedy=greedy)


class _ITRPOAgent(_Worker):
    """Agent i of I-TRPO: ``ITRPO.update``'s work for its own learner."""

    def __init__(self, agents, config, i, obs_dims, n_actions):
        self.config, self.i = config, i
        self.trpo = trpo_settings(config)
        self.learner = Learner(i, obs_dims[i], 1, n_actions[i], [0], learner_settings(config),
                               seed_sequence(config.seed, 1, i), run_seed=config.seed)

    def update(self, iteration, d):
        i = self.i
        adv, ret, val = _own_gae(self.learner, d)
        obs = samples(d["obs"])
        vf, seconds = _timed_value_fit(self.learner, obs, ret, val)
        adv = standardize(adv, float(adv.mean()), float(adv.std()))
        info = trpo_policy_update(self.learner, obs, samples(d["actions"][:, :, i:i + 1]), adv, self.trpo)
        metrics = step_metrics(f"_agent_{i}", info)
        metrics[f"value/loss_agent_{i}"] = vf["value_loss"]
        metrics[f"value/explained_variance_agent_{i}"] = vf["explained_variance"]
        return {"metrics": metrics, "value_fit_seconds": seconds}


class _MATRPOAgent(_Worker):
    """Agent q of MATRPO: ``MATRPO.update``'s work for its own agent, the consensus with its graph neighbours."""

    def __init__(self, agents, config, i, obs_dims, n_actions):
        n = len(obs_dims)
        self.comm, self.config, self.i, self.n = agents, config, i, n
        self.settings = matrpo_settings(config)
        self.learner = MATRPOAgent(i, obs_dims[i], n, n_actions[i], self.settings, trpo_settings(config),
                                   learner_settings(config), seed_sequence(config.seed, 1, i), run_seed=config.seed)
        g = communication_graph(self.settings.graph, n, p=self.settings.graph_p, seed=config.seed)
        self.graph = nx.Graph()
        self.graph.add_nodes_from(range(n))
        self.graph.add_edges_from(g.edges)

    def update(self, iteration, d):
        i, agent = self.i, self.learner
        t0 = time.perf_counter()
        adv, ret, val = _own_gae(agent, d)
        obs = samples(d["obs"])
        t1 = time.perf_counter()
        vf, fit_seconds = _timed_value_fit(agent, obs, ret, val)
        self.adv_norm_bytes = 0
        adv, floats_norm = self._normalize(adv, iteration)
        agent.prepare(obs, samples(d["actions"]), adv)
        t2 = time.perf_counter()
        out = self._consensus(adv.numel(), iteration)
        t3 = time.perf_counter()
        kl, gain = agent.final_diagnostics()
        agent.release()
        out["metrics"] = {f"value/loss_agent_{i}": vf["value_loss"],
                          f"value/explained_variance_agent_{i}": vf["explained_variance"],
                          f"trpo/kl_agent_{i}": kl, f"trpo/surrogate_improvement_agent_{i}": gain}
        out.update(value_fit_seconds=fit_seconds, floats_adv_norm=floats_norm, adv_norm_bytes=self.adv_norm_bytes,
                   seconds={"advantages": t1 - t0, "prepare": t2 - t1, "consensus": t3 - t2})
        return out

    def _normalize(self, adv, iteration):
        """``MATRPO._normalize_advantages`` for this agent; "pooled" by ``consensus_admm.mpi.solve``."""
        from consensus_admm.mpi import solve

        mode = self.settings.adv_norm
        if mode == "none":
            return adv, 0.0
        if mode == "per_agent":
            return standardize(adv, float(adv.mean()), float(adv.std())), 0.0
        local = np.array([float(adv.mean()), float((adv.double() ** 2).mean())])
        res = solve(Averaging(local), self.graph, ADMMSettings(method="sync", eps_abs=1e-12, eps_rel=1e-10,
                                                               max_iter=5000),
                    seed=self.config.seed + iteration, comm=self.comm)
        mean, mean_sq = res.x
        n, m = self.n, len(adv)
        var = max(mean_sq - mean * mean, 0.0) * (n * m) / max(n * m - 1, 1)
        self.adv_norm_bytes = res.extra["bytes_sent"] + res.extra["control_bytes_sent"]
        return standardize(adv, mean, math.sqrt(var)), float(res.floats_per_node[0])

    def _consensus(self, m: int, iteration: int) -> dict:
        """``MATRPO._consensus`` for agent q: a replica of the engine, updated on its own edges only."""
        settings, q, n = self.settings, self.i, self.n
        engine = edge_engine(self.graph, n * m, settings, self.config.seed, iteration)
        accepted = updates = 0
        lag_gain = 0.0
        dual, dropped = {}, 0
        other = np.empty(n * m)
        sent = 0
        for k in range(settings.iterations):
            e = engine.next_edge()
            i, j = (int(v) for v in engine.edges[e])
            if q not in (i, j):
                if settings.drop_prob > 0:
                    engine._stream.drops(1)  # keep the shared loss stream aligned with the other agents
                continue
            x, info = self.learner.local_update(engine.endpoint_terms(q))
            accepted += info.accepted
            updates += 1
            lag_gain += info.lagrangian_before - info.lagrangian_after
            partner = j if q == i else i
            x = np.ascontiguousarray(x, dtype=np.float64)
            self.comm.Sendrecv(x, dest=partner, sendtag=_TAG, recvbuf=other, source=partner, recvtag=_TAG)
            sent += x.nbytes
            xi, xj = (x, other) if q == i else (other, x)
            ex = engine.exchange(e, xi, xj)
            if q == i:  # the lower endpoint reports the edge's outcome
                dual[k] = float(ex.dual_residual)
                dropped += not ex.delivered
        # Residuals over this agent's edges (the world takes the max): neighbours swap their final x (monitoring).
        x_now = np.ascontiguousarray(self.learner.current_x(), dtype=np.float64)
        cons, primal = 0.0, 0.0
        inc, sides = engine.incident_edges(q)
        for e, side in zip(inc, sides):
            partner = int(engine.edges[e, 1 - side])
            self.comm.Sendrecv(x_now, dest=partner, sendtag=_TAG + 1, recvbuf=other, source=partner,
                               recvtag=_TAG + 1)
            cons = max(cons, float(np.max(np.abs(x_now - other))))
            primal = max(primal, float(np.max(np.abs(x_now - engine.z[e]))))
        return dict(accepted=accepted, updates=updates, lag_gain=lag_gain, dual_residuals=dual, dropped=dropped,
                    consensus_error=cons, primal_residual=primal, messages=int(engine.messages_sent[q]),
                    floats=int(engine.floats_sent[q]), bytes_sent=sent)


def _own_rollout(d: dict, i: int, n: int) -> Rollout:
    """A :class:`Rollout` holding only agent i's slice of the world's (its observations and rewards, and the global
    pieces): the other agents' entries are absent (None, and nan rewards, so a read of them cannot pass unseen)."""
    def only_mine(x):
        out = [None] * n
        out[i] = x
        return out

    rewards = torch.full((*d["rewards"].shape, n), math.nan, dtype=d["rewards"].dtype)
    rewards[..., i] = d["rewards"]
    return Rollout(obs=only_mine(d["obs"]), last_obs=only_mine(d["last_obs"]), actions=d["actions"],
                   rewards=rewards, terminated=d["terminated"], truncated=d["truncated"], done_index=d["done_index"],
                   final_obs=only_mine(d["final_obs"]))


class _FDMARLAgent(_Worker):
    """Agent i of FDMARL: ``FDMARL.update``'s work for its own agent; the diffusion (F4) with its graph neighbours.

    Each diffusion sends this agent's consensus parameters omega~^i (float32) to every neighbour and receives
    theirs (non-blocking sends, then one receive per neighbour: no ordering between agents can deadlock), then mixes
    with its row of W in the in-process order (``graph.neighbors(i)``). Monitoring only: the critic disagreement
    (a global quantity) is computed on agent 0 from every agent's parameters, gathered once per iteration after the
    critic phase and counted apart (``comm/bytes_monitoring_agent_<q>``).
    """

    def __init__(self, agents, config, i, obs_dims, n_actions):
        n = len(obs_dims)
        self.comm, self.config, self.i, self.n = agents, config, i, n
        g = communication_graph(config.admm.graph, n, p=config.admm.graph_p, seed=config.seed)
        graph = nx.Graph()
        graph.add_nodes_from(range(n))  # as FDMARL.__init__: row k of W is agent k, neighbours in its order
        graph.add_edges_from(g.edges)
        weights = metropolis_weights(graph)
        self.neighbours = list(graph.neighbors(i))
        self.self_weight = float(weights[i, i])
        self.weights = {j: float(weights[i, j]) for j in self.neighbours}
        self.learner = FDMARLAgent(
            i, obs_dims, n_actions, config.fdmarl, gae=GAESettings(config.gamma, config.gae_lambda),
            gae_boundaries=config.gae_boundaries, hidden_sizes=config.hidden_sizes, activation=config.activation,
            seed=seed_sequence(config.seed, 4, i),
            shared_noise=shared_noise_generator(config.seed) if config.sampling_noise == "shared" else None)

    def act(self, obs, *, greedy=False):
        return self.learner.act(obs, greedy=greedy)[:, None]

    def update(self, iteration, d):
        agent, i = self.learner, self.i
        rollout = _own_rollout(d, i, self.n)
        self.floats = self.bytes_sent = self.messages = 0
        explained = agent.prepare(rollout)["explained_variance"]  # (F1)
        schedule = agent.critic_schedule()
        critic_loss = np.float64(0.0)
        for idx in schedule:  # (F3), each step followed by (F4)
            critic_loss += agent.critic_step(idx)
            for _ in range(self.config.fdmarl.diffusion_rounds):
                self._diffuse()
        critic_loss /= len(schedule)
        agent.set_advantages(rollout)  # (F2)
        with torch.no_grad():
            old_logits = agent.private.actor(agent.private.batch.obs)[:, 0]
        actor_schedule = agent.actor_schedule()
        actor_stats = np.zeros(2)
        for idx in actor_schedule:  # (F5)
            actor_stats += agent.actor_step(idx)
        actor_stats /= len(actor_schedule)
        kl = agent.policy_kl(old_logits)
        agent.release()
        disagreement, monitoring = self._disagreement()
        return {"metrics": {f"value/explained_variance_agent_{i}": explained, f"policy/kl_agent_{i}": kl,
                            f"value/loss_agent_{i}": float(critic_loss),
                            f"comm/floats_sent_agent_{i}": float(self.floats),
                            f"comm/bytes_sent_agent_{i}": float(self.bytes_sent),
                            f"comm/bytes_monitoring_agent_{i}": float(monitoring)},
                "critic_loss": critic_loss, "actor_stats": actor_stats, "messages": self.messages,
                "floats": self.floats, "disagreement": disagreement}

    def _diffuse(self) -> None:
        """(F4) at this agent: omega~ to and from every neighbour, then omega^i = sum_j W_ij omega~^j."""
        MPI = _mpi()
        own = np.ascontiguousarray(self.learner.message().numpy())
        sends = [self.comm.Isend(own, dest=j, tag=_TAG + 2) for j in self.neighbours]
        received = {}
        for j in self.neighbours:
            received[j] = np.empty_like(own)
            self.comm.Recv(received[j], source=j, tag=_TAG + 2)
        MPI.Request.Waitall(sends)
        self.messages += len(self.neighbours)
        self.floats += len(self.neighbours) * own.size
        self.bytes_sent += len(self.neighbours) * own.nbytes
        self.learner.mix(self.self_weight, {j: torch.from_numpy(m) for j, m in received.items()}, self.weights)

    def _disagreement(self):
        """(``FDMARL.critic_disagreement`` on agent 0, None elsewhere; bytes this agent sent for it). Monitoring."""
        own = self.learner.message()
        flats = self.comm.gather(own, root=0)
        if self.i != 0:
            return None, own.numpy().nbytes
        flats = torch.stack(flats)
        mean = flats.mean(0)
        return float((flats - mean).norm(dim=1).max() / mean.norm().clamp_min(1e-12)), 0


_AGENTS = {"itrpo": _ITRPOAgent, "matrpo": _MATRPOAgent, "fdmarl": _FDMARLAgent}
