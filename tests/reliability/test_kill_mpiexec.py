"""A rank SIGKILLed inside a call under plain mpiexec: the whole job ends, no process remains.

MPI offers no recovery from a lost rank; what clusterml owes the user is that nothing hangs:
MPICH's mpiexec notices the dead rank and tears the world down.  One mpiexec job per
algorithm (each job costs ~5 s of interpreter start-up on 2 cores); the killed rank rotates
over rank 0, the last rank and every rank, so each target is hit by 4-5 algorithms.
"""

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
from faultcases import cases, landed_algorithms
from helpers import mpiexec_path, subprocess_env
from relhelp import ERROR_WITHIN, HERE, Tally, wait_gone

NRANKS = 3
TARGETS = ["rank 0", "last rank", "every rank"]
ALGORITHMS = landed_algorithms()
TALLY = Tally(f"SIGKILL under mpiexec -n {NRANKS}")
TAG = "CLUSTERML_RELTEST_TAG"


def _where(target):
    return {"rank 0": "0", "last rank": str(NRANKS - 1), "every rank": "*"}[target]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", ALGORITHMS)
def test_killed_rank_ends_the_job(name, tmp_path):
    target = TARGETS[ALGORITHMS.index(name) % len(TARGETS)]
    step = cases_steps()[name]
    tag = uuid.uuid4().hex
    env = subprocess_env(CLUSTERML_INJECT_FAULT=f"{step}@{_where(target)}:kill", **{TAG: tag})
    cmd = [mpiexec_path(), "-n", str(NRANKS), sys.executable, os.path.join(HERE, "faultjob.py"), name]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=tmp_path)
    lines, started = [], []

    def reader():
        for line in proc.stdout:
            lines.append(line)
            # ranks' lines may interleave ("START 2START 1")
            started.extend([time.monotonic()] * line.count("START"))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    hang = False
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        hang = True
        proc.kill()
        proc.wait()
    t.join(10)
    ended = time.monotonic()
    took = ended - max(started) if started else float("inf")
    out = "".join(lines)
    left = wait_gone(TAG, tag)
    ok = (not hang and proc.returncode != 0 and len(started) == NRANKS and "DONE" not in out
          and took < ERROR_WITHIN and not left)
    TALLY.record(f"{name}/{target}", ok, took, hang)
    assert not hang, f"{name}: mpiexec still running 120 s after a rank was killed:\n{out[-3000:]}"
    assert len(started) == NRANKS, f"{name}: not every rank reached the call:\n{out[-3000:]}"
    assert proc.returncode != 0 and "DONE" not in out, f"{name}: the kill did not fire:\n{out[-3000:]}"
    assert took < ERROR_WITHIN, f"{name}: the job took {took:.1f} s to end after the kill"
    assert not left, f"{name}: processes left after the job: {left}"


def cases_steps():
    # the step names only (the models of cases() are computed once here, in one process)
    if not hasattr(cases_steps, "cache"):
        from faultcases import build

        cases_steps.cache = {n: c[4] for n, c in cases(build(NRANKS)).items()}
    return cases_steps.cache


def test_kill_summary(capsys):
    with capsys.disabled():
        print("\n" + TALLY.line() + "; " + ", ".join(f"{c} {s:.1f}s" for c, _, s in TALLY.rows))
    assert TALLY.tried == len(ALGORITHMS) and TALLY.passed == TALLY.tried and TALLY.hangs == 0
