"""Fixtures for tests that run inside an MPI world; helpers are in mpihelpers.py."""

import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mpihelpers import rank, world  # noqa: E402


@pytest.fixture
def shared_tmp():
    """A directory every rank sees (rank 0 makes it, everyone learns its name)."""
    path = tempfile.mkdtemp(prefix="cml-spmd-") if rank() == 0 else None
    path = world().bcast(path, root=0)
    yield path
    world().Barrier()
    if rank() == 0:
        shutil.rmtree(path, ignore_errors=True)
