"""The k-means SPMD tests at 7 ranks (on top of test_mpi_worlds.py's 1 to 4).

Seven ranks, one of them empty and several holding a handful of rows, is the
layout most likely to expose a draw that depends on how rows are split: the
init tests there compare every method, bit for bit, with one process.
"""

import os

import pytest
from helpers import ROOT, run_spmd_pytest

TIMEOUT = int(os.environ.get("CLUSTERML_MPI_SUITE_TIMEOUT", "900"))


@pytest.mark.timeout(TIMEOUT + 60)
def test_kmeans_at_7_ranks(tmp_path):
    files = [os.path.join(ROOT, "tests", "spmd", f) for f in ("test_kmeans_init.py", "test_kmeans.py")]
    run_spmd_pytest(7, files, tmp_path, TIMEOUT, per_test_timeout=400)
