"""The k-means SPMD tests at 7 ranks (on top of test_mpi_worlds.py's 1 to 4).

Seven ranks, one of them empty and several holding a handful of rows, is the
layout most likely to expose a draw that depends on how rows are split: the
init tests there compare every method, bit for bit, with one process.
"""

import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT, mpiexec_path, subprocess_env

TIMEOUT = int(os.environ.get("CLUSTERML_MPI_SUITE_TIMEOUT", "900"))


@pytest.mark.timeout(TIMEOUT + 60)
def test_kmeans_at_7_ranks(tmp_path):
    files = [os.path.join(ROOT, "tests", "spmd", f) for f in ("test_kmeans_init.py", "test_kmeans.py")]
    cmd = [mpiexec_path(), "-n", "7", sys.executable, "-m", "pytest", *files, "-q",
           "-p", "no:cacheprovider", "--timeout=400", "-rfEs", "-x"]
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, env=subprocess_env(CLUSTERML_MPI_TEST=1),
                              capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"mpiexec -n 7 hung for {TIMEOUT}s:\n{out[-20000:]}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mpiexec -n 7 failed (rc={proc.returncode}):\n{out[-30000:]}"
    summaries = re.findall(r"^(\d+) passed.*$", out, flags=re.M)
    assert len(summaries) == 7, f"expected a pytest summary from each of 7 ranks:\n{out[-5000:]}"
    assert not re.search(r"\d+ skipped", out), f"SPMD tests skipped:\n{out[-5000:]}"
