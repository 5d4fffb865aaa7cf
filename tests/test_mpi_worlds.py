"""Run the SPMD test suite (``tests/spmd``) under real ``mpiexec`` at world sizes 1 to 4.

Each world size is one ``mpiexec -n N python -m pytest tests/spmd`` run under
a hard timeout: a hang anywhere (a rank left in a collective) fails the test
instead of stalling CI.  Assertions inside are collective, so every rank
passes or fails each test together; each rank reports its own counts.
"""

import os

import pytest
from helpers import ROOT, run_spmd_pytest

WORLD_TIMEOUT = int(os.environ.get("CLUSTERML_MPI_SUITE_TIMEOUT", "900"))


@pytest.mark.timeout(WORLD_TIMEOUT + 60)
@pytest.mark.parametrize("nprocs", [1, 2, 3, 4])
def test_spmd_suite(nprocs, tmp_path):
    run_spmd_pytest(nprocs, [os.path.join(ROOT, "tests", "spmd")], tmp_path, WORLD_TIMEOUT)
