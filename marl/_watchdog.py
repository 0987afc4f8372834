"""The MPI job's watchdog (``--backend mpi``): names the agent process that was lost, from outside the job.

When one process of an MPI job ends (kill -9, out of memory, MPI_Abort), MPICH's launcher (hydra) kills every other
process of the job, process group by process group, within a fraction of a second (0.3 s here), and prints a pid
that need not be the lost one; no process of the job can report anything. The world process therefore starts this
script, by path, with the standard library only (no torch, no MPI), in a session of its own, which hydra's clean-up
does not reach. It watches the agent processes on its host through Linux pidfds and the world through a pipe (EOF
when the world ends; the world writes ``done`` first when the job ends normally). The first agent to end while the
job runs is named on the stderr of ``mpiexec`` (the world passes that descriptor; otherwise its own) and in
``failure.json`` in the run directory, unless the world has already written one (a hang it detected itself).

Usage (by ``marl.distributed``): ``python -I -S _watchdog.py SPEC_JSON`` with the pipe on stdin and the stderr to
write to as descriptor ``SPEC["stderr_fd"]`` (that of ``mpiexec``, pid ``SPEC["launcher_pid"]``; when it is a
regular file, the message is appended once mpiexec has ended, as mpiexec does not append).
"""

from __future__ import annotations

import json
import os
import select
import stat
import sys
import time

FAILURE_NAME = "failure.json"  # as marl.distributed.FAILURE_NAME


def watch(spec: dict, world_pipe: int) -> dict | None:
    """Block until the world's pipe closes or a watched agent ends; return the failure record, or None when the
    job ended normally."""
    fds = {}
    lost = []
    for e in spec["agents"]:
        try:
            fds[os.pidfd_open(e["pid"])] = e
        except ProcessLookupError:  # ended before the watch began
            lost.append(e)
    said, world_ended, sets = b"", False, b""
    while not (lost or world_ended):
        ready, _, _ = select.select([*fds, world_pipe], [], [])
        if world_pipe in ready:  # read first: at a normal end the world says "done" before it stops the agents
            chunk = os.read(world_pipe, 4096)
            said += chunk
            lines = said.split(b"\n")
            if b"done" in lines:
                return None
            sets = next((ln for ln in reversed(lines[:-1]) if ln.startswith(b"set ")), sets)
            said = lines[-1]
            world_ended = not chunk  # it ended without saying it
        lost = [fds[fd] for fd in ready if fd in fds]
    for fd in fds:
        os.close(fd)
    if lost:
        e = min(lost, key=lambda e: e["agent"])
        what = (f"agent {e['agent']} (rank {e['rank']}, pid {e['pid']} on {e['host']}) ended while the job was "
                "running (killed, crashed or aborted: a traceback above is its own)")
    else:
        e = spec["world"]
        what = (f"the world process (rank 0, pid {e['pid']} on {e['host']}) ended while the job was running, and "
                "no agent on this host before it")
        if spec["remote_agents"]:
            what += f" (agents on other hosts, not watched from here: {spec['remote_agents']})"
    committed = _committed(spec["run_dir"], sets)
    resume = ("no checkpoint set was completed" if committed is None else
              f"the last complete checkpoint set is iteration {committed}; continue with: "
              f"python -m marl train --backend mpi --resume {spec['run_dir']}")
    return dict(e, message=f"error: {what}; the MPI launcher ended the job; {resume}", time=time.time())


def _committed(run_dir: str, note: bytes) -> int | None:
    """The committed set's iteration from the world's last note ``set <committed> <pending> <time_ns>``, sent as it
    had the agents write the parts of set <pending>: the world's checkpoint.pt, written since, commits <pending>
    (checkpoint.pt is the world's manifest, a torch file this script cannot read)."""
    if not note:
        return None
    committed, pending, sent_ns = note.split()[1:]
    try:
        if os.stat(os.path.join(run_dir, "checkpoint.pt")).st_mtime_ns >= int(sent_ns):
            return int(pending)
    except FileNotFoundError:
        return None
    return None if committed == b"None" else int(committed)


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    record = watch(spec, sys.stdin.fileno())
    path = os.path.join(spec["run_dir"], FAILURE_NAME)
    if record is None or os.path.exists(path):  # a normal end, or the world named the agent itself
        return 0
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(record, fh)
    os.replace(tmp, path)
    try:
        if stat.S_ISREG(os.fstat(spec["stderr_fd"]).st_mode) and spec["launcher_pid"]:
            # mpiexec writes a regular file at its own offset (not appending): once it has ended, append after it
            try:
                launcher = os.pidfd_open(spec["launcher_pid"])
                select.select([launcher], [], [], 30.0)
                os.close(launcher)
            except ProcessLookupError:
                pass
        os.write(spec["stderr_fd"], (record["message"] + "\n").encode())
    except OSError:  # the reader is gone; failure.json keeps the record
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
