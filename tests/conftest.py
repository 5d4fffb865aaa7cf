"""Test configuration shared by every level of the pyramid.

``tests/spmd`` holds tests that run *inside* MPI: they are collected only when
``CLUSTERML_MPI_TEST`` is set, which ``tests/test_mpi_worlds.py`` does when it
runs them under ``mpiexec -n 1..4``.
"""

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import ROOT, mpiexec_path, subprocess_env  # noqa: F401

# the tests import clusterml from this checkout even when pytest runs from elsewhere
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

collect_ignore = []
if not os.environ.get("CLUSTERML_MPI_TEST"):
    collect_ignore.append("spmd")


# ---------------------------------------------------------------------------
# CI rule: a skipped test is a failed run (install the component instead).

_skipped = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionstart(session):
    # artefacts written after this moment belong to this run (tests/notebooks/test_site.py)
    os.environ.setdefault("CLUSTERML_TEST_SESSION_START", str(time.time()))


def pytest_sessionfinish(session, exitstatus):
    if _skipped and os.environ.get("CLUSTERML_FAIL_ON_SKIP"):
        print(f"\nCLUSTERML_FAIL_ON_SKIP: {len(_skipped)} test(s) skipped: {', '.join(_skipped[:10])}")
        session.exitstatus = 1


# ----------------------------------------------------------------------------- live Slurm
# The session fixture ``live_slurm`` runs ``slurm/dev/start.sh`` in a fresh folder
# on ports of its own (``CLUSTERML_TEST_SLURMCTLD_PORT`` / ``..._SLURMD_PORT``,
# default 16817/16818, so that a dev Slurm on 6817/6818 is left alone), exports
# ``SLURM_CONF`` for the session, and runs ``slurm/dev/stop.sh`` at the end.
START = Path(ROOT) / "slurm" / "dev" / "start.sh"
STOP = Path(ROOT) / "slurm" / "dev" / "stop.sh"


@dataclass
class LiveSlurm:
    folder: Path
    conf: Path
    partition: str
    node: str
    start_seconds: float
    script_env: dict  # the environment start.sh / stop.sh ran with


@pytest.fixture(scope="session")
def live_slurm(tmp_path_factory):
    """A running single-node Slurm on loopback; stopped at the end of the session."""
    if os.geteuid() != 0:
        pytest.skip("the dev Slurm needs root (slurmd, munged)")
    if shutil.which("bash") is None:
        pytest.skip("bash missing")
    folder = tmp_path_factory.mktemp("slurm")
    env = dict(os.environ)
    env.update(
        CLUSTERML_SLURM_DIR=str(folder),
        CLUSTERML_SLURMCTLD_PORT=os.environ.get("CLUSTERML_TEST_SLURMCTLD_PORT", "16817"),
        CLUSTERML_SLURMD_PORT=os.environ.get("CLUSTERML_TEST_SLURMD_PORT", "16818"),
        CLUSTERML_SLURM_TIMEOUT="60",
        # job ids of their own: concurrent test Slurms on this machine must not both
        # run a job "1.0" at once (MPICH names shared memory after it)
        CLUSTERML_SLURM_FIRST_JOB_ID=str(1000 + 1000 * (os.getpid() % 60000)),
    )
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            ["bash", str(START)], env=env, capture_output=True, text=True, timeout=600
        )
    except subprocess.TimeoutExpired as e:
        subprocess.run(["bash", str(STOP)], env=env, timeout=120)
        pytest.fail(f"slurm/dev/start.sh did not finish in 600 s: {e}")
    took = time.monotonic() - t0
    if proc.returncode != 0:
        subprocess.run(["bash", str(STOP)], env=env, timeout=120)
        pytest.fail(f"slurm/dev/start.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("export SLURM_CONF="), proc.stdout
    conf = Path(last.split("=", 1)[1])

    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PATH")}
    os.environ["SLURM_CONF"] = str(conf)
    # the job inherits this environment (--export=ALL): put the venv's bin first
    bindir = os.path.dirname(sys.executable)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    try:
        yield LiveSlurm(folder, conf, "debug", "clusterml-node", took, env)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stop = subprocess.run(
            ["bash", str(STOP)], env=env, capture_output=True, text=True, timeout=180
        )
        if stop.returncode != 0:
            print(f"slurm/dev/stop.sh failed:\n{stop.stderr}", file=sys.stderr)


@pytest.fixture
def ipython_dir(tmp_path, monkeypatch):
    """A private IPYTHONDIR so nothing is written to ~/.ipython."""
    d = tmp_path / "ipython"
    d.mkdir(mode=0o700)
    monkeypatch.setenv("IPYTHONDIR", str(d))
    return d
