"""Run the SPMD test suite (``tests/spmd``) under real ``mpiexec`` at world sizes 1 to 4.

Each world size is one ``mpiexec -n N python -m pytest tests/spmd`` run under
a hard timeout: a hang anywhere (a rank left in a collective) fails the test
instead of stalling CI.  Assertions inside are collective, so every rank
passes or fails each test together.
"""

import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT, mpiexec_path, subprocess_env

WORLD_TIMEOUT = int(os.environ.get("CLUSTERML_MPI_SUITE_TIMEOUT", "900"))


@pytest.mark.timeout(WORLD_TIMEOUT + 60)
@pytest.mark.parametrize("nprocs", [1, 2, 3, 4])
def test_spmd_suite(nprocs, tmp_path):
    cmd = [mpiexec_path(), "-n", str(nprocs), sys.executable, "-m", "pytest",
           os.path.join(ROOT, "tests", "spmd"), "-q", "-p", "no:cacheprovider",
           "--timeout=240", "-rfEs", "-x"]
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, env=subprocess_env(CLUSTERML_MPI_TEST=1),
                              capture_output=True, text=True, timeout=WORLD_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"mpiexec -n {nprocs} hung for {WORLD_TIMEOUT}s:\n{out[-20000:]}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mpiexec -n {nprocs} failed (rc={proc.returncode}):\n{out[-30000:]}"
    # ranks share one stdout, so a summary may follow another rank's "[100%]" on its line
    summaries = re.findall(r"(\d+) passed in [\d.]+s", out)
    assert len(summaries) == nprocs, f"expected a pytest summary from each of {nprocs} ranks:\n{out[-5000:]}"
    assert not re.search(r"\d+ skipped", out), f"SPMD tests skipped:\n{out[-5000:]}"
