"""The README's main job (`clusterml demo`), `clusterml info`, and the benchmark harness run.

Benchmarks are not tests: here they run at ``--quick`` size only to prove the
harness works end to end; their timings are not looked at.
"""

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT, mpiexec_path, subprocess_env


def run(cmd, timeout, **env):
    proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(**env), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (f"{cmd} failed (rc={proc.returncode}):\n{proc.stdout[-5000:]}\n"
                                  f"{proc.stderr[-5000:]}")
    return proc.stdout


@pytest.mark.timeout(180)
def test_info_under_mpiexec_reports_one_world_and_blas_threads():
    env = {k: "" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    out = run([mpiexec_path(), "-n", "2", sys.executable, "-m", "clusterml", "info", "--json"], 120, **env)
    docs = json.loads(out)  # rank 0 prints one list, an entry per rank
    assert sorted(d["mpi"]["world_rank"] for d in docs) == [0, 1]
    assert all(d["mpi"]["world_size"] == 2 for d in docs)
    cores = len(os.sched_getaffinity(0))
    assert all(d["blas_threads_per_rank"] == max(1, cores // 2) for d in docs), docs


@pytest.mark.timeout(600)
def test_demo_as_a_plain_mpiexec_job(tmp_path):
    out = run([sys.executable, "-m", "clusterml", "demo", "--engines", "mpiexec", "-n", "3",
               "--rows", "3000", "--features", "6", "--workdir", str(tmp_path)], 540)
    assert "13 of 13 algorithms agree with the single-process reference." in out, out


@pytest.mark.timeout(600)
def test_demo_through_the_notebook_facade(tmp_path):
    out = run([sys.executable, "-m", "clusterml", "demo", "-n", "2", "--rows", "3000",
               "--features", "6", "--workdir", str(tmp_path / "data")], 540,
              IPYTHONDIR=str(tmp_path / "ipython"))
    assert "2 MPI ranks (ipyparallel engines)" in out, out
    assert "13 of 13 algorithms agree with the single-process reference." in out, out


@pytest.mark.timeout(900)
def test_benchmark_harness_quick(tmp_path):
    out_json = tmp_path / "bench.json"
    out = run([sys.executable, os.path.join(ROOT, "benchmarks", "bench.py"), "--quick",
               "--datadir", str(tmp_path / "data"), "--json", str(out_json)], 840)
    table = json.loads(out_json.read_text())["table"]
    names = [row["algorithm"] for row in table]
    assert {"moments", "covariance", "pca_svd", "svd_u", "linreg_qr", "naive_bayes", "lloyd10"} <= set(names)
    for row in table:
        assert row["clusterml"] and row["clusterml"] > 0, row
        assert row["bytes"] and row["bytes"] < 1_000_000, row  # summaries only, never rows
    assert "compute call only" in out


@pytest.mark.timeout(600)
def test_benchmark_float32_names_cpu_blas_and_read_ratio(tmp_path):
    out_json = tmp_path / "bench32.json"
    out = run([sys.executable, os.path.join(ROOT, "benchmarks", "bench.py"), "--quick", "--dtype", "float32",
               "--algorithms", "moments,linreg1,lloyd10", "--skip", "numpy,sklearn",
               "--datadir", str(tmp_path / "data"), "--json", str(out_json)], 540)
    doc = json.loads(out_json.read_text())
    rows = {r["algorithm"]: r for r in doc["table"]}
    assert rows["moments"]["read_seconds"] > 0 and rows["moments"]["over_read"] > 0
    assert rows["linreg1"]["over_read"] > 0 and rows["lloyd10"]["over_read"] is None  # not one-pass
    assert "20,000 x 8 float32" in out and "CPU: " in out and "BLAS clusterml: " in out, out
    assert doc["cpu"] and doc["blas"]["clusterml"]


@pytest.mark.timeout(600)
def test_benchmark_weak_scaling_quick(tmp_path):
    out_json = tmp_path / "weak.json"
    out = run([sys.executable, os.path.join(ROOT, "benchmarks", "bench.py"), "--quick", "--weak-scaling",
               "--rounds", "2", "--algorithms", "moments,covariance", "--datadir", str(tmp_path / "data"),
               "--json", str(out_json)], 540)
    rows = json.loads(out_json.read_text())["weak_scaling"]
    assert [r["algorithm"] for r in rows] == ["moments", "covariance"]
    for r in rows:
        assert r["one"] > 0 and r["many"] > 0 and r["efficiency"] == pytest.approx(r["one"] / r["many"])
    assert "10,000 x 8 rows per rank, 1 -> 2 ranks" in out, out


def test_benchmark_rounds_keep_each_implementations_best():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        from bench import merge_round
    finally:
        sys.path.pop(0)
    results = {}
    merge_round(results, {"clusterml": {"a": {"seconds": 2.0, "peak_over_block": 1.1, "bytes": 5},
                                        "b": {"seconds": None, "error": "x"}}})
    merge_round(results, {"clusterml": {"a": {"seconds": 1.0, "peak_over_block": 1.0, "bytes": 5},
                                        "b": {"seconds": 3.0, "peak_over_block": 1.2}},
                          "daal4py": {"a": {"seconds": 0.5, "peak_over_block": 1.3}}})
    merge_round(results, {"clusterml": {"a": {"seconds": 1.5, "peak_over_block": 1.4, "bytes": 5}}})
    assert results["clusterml"]["a"] == {"seconds": 1.0, "peak_over_block": 1.4, "bytes": 5}
    assert results["clusterml"]["b"]["seconds"] == 3.0
    assert results["daal4py"]["a"]["seconds"] == 0.5
