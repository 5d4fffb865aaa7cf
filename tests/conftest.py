"""Test configuration shared by every level of the pyramid.

``tests/spmd`` holds tests that run *inside* MPI: they are collected only when
``CLUSTERML_MPI_TEST`` is set, which ``tests/test_mpi_worlds.py`` does when it
runs them under ``mpiexec -n 1..4``.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import ROOT, mpiexec_path, subprocess_env  # noqa: F401,E402

collect_ignore = []
if not os.environ.get("CLUSTERML_MPI_TEST"):
    collect_ignore.append("spmd")


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
