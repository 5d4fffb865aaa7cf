"""Helpers shared by test modules (a uniquely named module: several conftest.py files exist)."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


def run_spmd_pytest(nprocs: int, paths, workdir, timeout: int, per_test_timeout: int = 240):
    """Run pytest on ``paths`` under ``mpiexec -n nprocs`` and check every rank's outcome.

    Each rank writes its own counts (passed / failed / skipped) to a file in
    ``workdir`` (see ``tests/spmd/conftest.py``), so the check never parses
    the ranks' interleaved terminal output.  Fails on a hang (the whole run
    is bounded by ``timeout``), a non-zero exit, a missing rank, any failure
    or skip, or ranks that ran different numbers of tests.
    """
    import json
    import subprocess

    import pytest

    results = os.path.join(str(workdir), "rank-results")
    os.makedirs(results, exist_ok=True)
    cmd = [mpiexec_path(), "-n", str(nprocs), sys.executable, "-m", "pytest", *map(str, paths), "-q",
           "-p", "no:cacheprovider", f"--timeout={per_test_timeout}", "-rfEs", "-x"]
    env = subprocess_env(CLUSTERML_MPI_TEST=1, CLUSTERML_MPI_RESULTS=results)
    try:
        proc = subprocess.run(cmd, cwd=str(workdir), env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"mpiexec -n {nprocs} hung for {timeout}s:\n{out[-20000:]}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mpiexec -n {nprocs} failed (rc={proc.returncode}):\n{out[-30000:]}"
    counts = {}
    for name in sorted(os.listdir(results)):
        with open(os.path.join(results, name)) as fh:
            counts[name] = json.load(fh)
    assert len(counts) == nprocs, f"results from {len(counts)} of {nprocs} ranks: {counts}\n{out[-5000:]}"
    for rank, c in counts.items():
        assert c["failed"] == 0 and c["passed"] > 0, f"{rank}: {c}\n{out[-20000:]}"
        assert c["skipped"] == 0, f"{rank}: SPMD tests skipped: {c}"
    assert len({c["passed"] for c in counts.values()}) == 1, f"ranks ran different tests: {counts}"
    return counts
