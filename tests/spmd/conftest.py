"""Fixtures for tests that run inside an MPI world; helpers are in mpihelpers.py."""

import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mpihelpers import rank, world


@pytest.fixture
def shared_tmp():
    """A directory every rank sees (rank 0 makes it, everyone learns its name)."""
    path = tempfile.mkdtemp(prefix="cml-spmd-") if rank() == 0 else None
    path = world().bcast(path, root=0)
    yield path
    world().Barrier()
    if rank() == 0:
        shutil.rmtree(path, ignore_errors=True)


# Each rank's outcome, for tests/helpers.py:run_spmd_pytest (ranks' terminal output interleaves).
_counts = {"passed": 0, "failed": 0, "skipped": 0}


def pytest_runtest_logreport(report):
    if report.skipped:
        _counts["skipped"] += 1
    elif report.failed:
        _counts["failed"] += 1
    elif report.when == "call" and report.passed:
        _counts["passed"] += 1


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("CLUSTERML_MPI_RESULTS")
    if out:
        import json

        from mpi4py import MPI

        with open(os.path.join(out, f"rank-{MPI.COMM_WORLD.Get_rank()}.json"), "w") as fh:
            json.dump(dict(_counts, exitstatus=int(exitstatus)), fh)
