"""Talking to Slurm: submit (sbatch), ask (squeue, scontrol, sacct), cancel (scancel).

Every command runs with a timeout and its output captured; a command that is
missing or does not answer raises :class:`SlurmError` with Slurm's own words.
A job's state comes from squeue while it is queued or running, then from
scontrol (for ``MinJobAge`` seconds after it ended), then from sacct where the
site keeps accounting. What a state or a pending reason means for a starting
cluster (cause and fix) is :mod:`clusterml.launch.diagnose`'s; rendering the
scripts is :mod:`clusterml.launch.slurm`'s.

This module imports neither mpi4py nor ipyparallel.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ENDED_STATES",
    "SlurmError",
    "SubmittedJob",
    "JobInfo",
    "job_ended",
    "run",
    "parse_sbatch_output",
    "sbatch",
    "sbatch_test_only",
    "job_info",
    "describe_job",
    "list_jobs",
    "scancel",
    "wait_for_job_end",
]

#: Job states after which a job never runs again (``GONE``: Slurm forgot the job).
ENDED_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
    "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "GONE",
})


class SlurmError(RuntimeError):
    """A Slurm command failed; the message carries Slurm's own words."""


@dataclass(frozen=True)
class SubmittedJob:
    """What ``sbatch`` answered.

    Attributes
    ----------
    job_id : str
    returncode : int
        sbatch's exit code; with ``wait=True`` it is the job's exit code.
    output : str
        sbatch's stdout and stderr.
    """

    job_id: str
    returncode: int
    output: str


@dataclass(frozen=True)
class JobInfo:
    """A job's state and Slurm's reason for it (e.g. ``PENDING``, ``Resources``)."""

    job_id: str
    state: str
    reason: str
    name: str = ""

    def __str__(self) -> str:
        reason = "" if self.reason in ("", "None", "(null)") else f" ({self.reason})"
        return f"Slurm job {self.job_id} is {self.state}{reason}"


def job_ended(info: JobInfo | None) -> bool:
    """True when a job will never run again (or Slurm no longer knows it).

    Parameters
    ----------
    info : JobInfo or None
        From :func:`job_info`; None (a job Slurm forgot) counts as ended.

    Returns
    -------
    bool
    """
    return info is None or info.state.split()[0] in ENDED_STATES


_SUBMITTED = re.compile(r"Submitted batch job (\d+)")
_PARSABLE = re.compile(r"^(\d+)(?:;\S*)?$", re.M)


def parse_sbatch_output(output: str) -> str:
    """Return the job id from sbatch's answer (plain or ``--parsable``).

    Raises
    ------
    SlurmError
        If no job id is found; the message quotes the output.
    """
    m = _SUBMITTED.search(output) or _PARSABLE.search(output.strip())
    if m is None:
        raise SlurmError(f"no job id in sbatch output: {output.strip()!r}")
    return m.group(1)


def run(argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float | None = 30,
        cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run a Slurm command, stdout and stderr together as text.

    Parameters
    ----------
    argv : sequence of str
        The command, e.g. ``["scontrol", "show", "hostnames", "node[1-2]"]``.
    env : mapping, optional
        Its environment (default os.environ).
    timeout : float, optional
        Seconds to wait for it.
    cwd : str, optional
        Folder it runs in.

    Returns
    -------
    subprocess.CompletedProcess
        Whatever its exit code.

    Raises
    ------
    SlurmError
        The command is missing or did not answer within ``timeout``.
    """
    try:
        return subprocess.run(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=None if env is None else dict(env),
            timeout=timeout,
            cwd=cwd,
        )
    except FileNotFoundError as e:
        raise SlurmError(f"{argv[0]} not found: is Slurm installed and on PATH?") from e
    except subprocess.TimeoutExpired as e:
        raise SlurmError(f"{shlex.join(argv)} did not answer within {timeout} s") from e


def sbatch(
    script: str | os.PathLike,
    *,
    args: Sequence[str] = (),
    wait: bool = False,
    cwd: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 60,
) -> SubmittedJob:
    """Submit a batch script.

    Parameters
    ----------
    script : path
    args : sequence of str
        Extra sbatch options (they override the script's ``#SBATCH`` lines).
    wait : bool
        ``sbatch --wait``: return when the job ends; ``returncode`` is then the
        job's exit code.
    cwd : path, optional
        Directory sbatch runs in (the job's default working directory and
        where ``slurm-%j.out`` goes). Default: the script's folder.
    env : mapping, optional
        Environment for sbatch (e.g. with ``SLURM_CONF``); default os.environ.
    timeout : float, optional
        Seconds to wait for sbatch (with ``wait=True``, for the whole job).

    Returns
    -------
    SubmittedJob

    Raises
    ------
    SlurmError
        If Slurm refused the job (the message is Slurm's, e.g. "Requested node
        configuration is not available") or gave no job id.
    """
    script = Path(script).absolute()
    argv = ["sbatch", *(["--wait"] if wait else []), *args, str(script)]
    proc = run(argv, env, timeout, cwd=str(cwd) if cwd is not None else str(script.parent))
    m = _SUBMITTED.search(proc.stdout) or (
        _PARSABLE.search(proc.stdout.strip()) if proc.returncode == 0 else None
    )
    if m is None:
        raise SlurmError(f"sbatch refused {script.name}: {proc.stdout.strip()}")
    return SubmittedJob(job_id=m.group(1), returncode=proc.returncode, output=proc.stdout)


def sbatch_test_only(script: str | os.PathLike, *, env: Mapping[str, str] | None = None,
                     timeout: float = 60) -> str:
    """Slurm's verdict on a batch script without submitting it (``sbatch --test-only``).

    Parameters
    ----------
    script : path
        A written batch script; sbatch runs in its folder.
    env : mapping, optional
    timeout : float

    Returns
    -------
    str
        sbatch's words, e.g. why it refuses the request; a sentence in parentheses
        when there is no script or sbatch did not answer.
    """
    if not script or not os.path.isfile(script):
        return "(no batch script to test)"
    try:
        proc = run(["sbatch", "--test-only", str(script)], env, timeout,
                   cwd=os.path.dirname(os.path.abspath(script)))
    except SlurmError as e:
        return f"(sbatch --test-only failed: {e})"
    return proc.stdout.strip()


def job_info(
    job_id: str | int, *, env: Mapping[str, str] | None = None, timeout: float = 30
) -> JobInfo | None:
    """Return the state and reason of a job (squeue, then scontrol, then sacct), or None.

    Parameters
    ----------
    job_id : str or int
    env : mapping, optional
    timeout : float

    Returns
    -------
    JobInfo or None
    """
    proc = run(["squeue", "-h", "-j", str(job_id), "-o", "%i|%T|%r|%j"], env, timeout)
    if proc.returncode == 0:
        for line in proc.stdout.splitlines():
            parts = line.strip().split("|", 3)
            if len(parts) == 4 and parts[0] == str(job_id):
                return JobInfo(*parts)
    # squeue drops finished jobs; scontrol keeps them for MinJobAge seconds
    proc = run(["scontrol", "-o", "show", "job", str(job_id)], env, timeout)
    fields = dict(
        kv.split("=", 1) for kv in proc.stdout.split() if "=" in kv
    ) if proc.returncode == 0 else {}
    if "JobState" in fields:
        return JobInfo(str(job_id), fields["JobState"], fields.get("Reason", ""), fields.get("JobName", ""))
    return _sacct_info(job_id, env, timeout)


def _sacct_info(job_id, env, timeout) -> JobInfo | None:
    """A finished job from the accounting database (when the site keeps one), else None."""
    try:
        proc = run(["sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "JobID,State,JobName"],
                    env, timeout)
    except SlurmError:
        return None
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0] == str(job_id):
            return JobInfo(parts[0], parts[1].split()[0], "", parts[2])
    return None


def describe_job(job_id: str | int, *, env: Mapping[str, str] | None = None) -> str:
    """One line for error messages: ``"Slurm job 812 is PENDING (Resources)"``."""
    try:
        info = job_info(job_id, env=env)
    except SlurmError as e:
        return f"Slurm job {job_id}: state unknown ({e})"
    return str(info) if info is not None else f"Slurm job {job_id} is no longer known to Slurm"


def list_jobs(
    *, name: str | None = None, env: Mapping[str, str] | None = None, timeout: float = 30
) -> list[JobInfo]:
    """Jobs squeue lists (pending, running, completing), optionally by job name.

    Raises
    ------
    SlurmError
        If squeue fails (e.g. slurmctld unreachable).
    """
    argv = ["squeue", "-h", "-o", "%i|%T|%r|%j"]
    if name is not None:
        argv += ["-n", name]
    proc = run(argv, env, timeout)
    if proc.returncode != 0:
        raise SlurmError(f"squeue failed: {proc.stdout.strip()}")
    jobs = []
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) == 4:
            jobs.append(JobInfo(*parts))
    return jobs


def scancel(
    job_id: str | int,
    *,
    signal: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> None:
    """Cancel (or signal) a job.

    Raises
    ------
    SlurmError
        If scancel fails for another reason than the job being already gone.
    """
    argv = ["scancel", *(["--signal", signal] if signal else []), str(job_id)]
    proc = run(argv, env, timeout)
    if proc.returncode != 0 and "Invalid job id" not in proc.stdout:
        raise SlurmError(f"scancel {job_id} failed: {proc.stdout.strip()}")


def wait_for_job_end(
    job_id: str | int,
    timeout: float,
    *,
    env: Mapping[str, str] | None = None,
    poll: float = 0.2,
) -> JobInfo | None:
    """Poll until the job has left squeue (ended and no longer completing).

    Returns
    -------
    JobInfo or None
        The final state if Slurm still remembers it.

    Raises
    ------
    TimeoutError
        Saying what the job was doing when the time ran out.
    """
    deadline = _time.monotonic() + timeout
    while True:
        info = job_info(job_id, env=env)
        if job_ended(info):
            return info
        if _time.monotonic() >= deadline:
            raise TimeoutError(f"after {timeout} s: {info}")
        _time.sleep(poll)
