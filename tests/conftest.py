"""Test configuration shared by every level of the pyramid.

``tests/spmd`` holds tests that run *inside* MPI: they are collected only when
``CLUSTERML_MPI_TEST`` is set, which ``tests/test_mpi_worlds.py`` does when it
runs them under ``mpiexec -n 1..4``.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

collect_ignore = []
if not os.environ.get("CLUSTERML_MPI_TEST"):
    collect_ignore.append("spmd")


def mpiexec_path() -> str:
    """The mpiexec that belongs to this interpreter's MPI (never a stray one on PATH)."""
    cand = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return cand if os.path.exists(cand) else "mpiexec"


def subprocess_env(**extra) -> dict:
    """Environment for a child Python that imports this checkout of clusterml."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


# ---------------------------------------------------------------------------
# CI rule: a skipped test is a failed run (install the component instead).

_skipped = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _skipped and os.environ.get("CLUSTERML_FAIL_ON_SKIP"):
        print(f"\nCLUSTERML_FAIL_ON_SKIP: {len(_skipped)} test(s) skipped: {', '.join(_skipped[:10])}")
        session.exitstatus = 1
