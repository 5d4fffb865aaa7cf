"""A plain SPMD script across two nodes: ``srun -N2 -n4 --mpi=pmi2`` and the
``slurm/spmd.sbatch.example`` batch path, submitted from the login host.

Every rank builds the same data from a seed and takes its block (rank 3 none);
the distributed results must be identical on every rank and equal NumPy's on
the whole data.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT

pytestmark = pytest.mark.timeout(300)

JOB = """\
import json, os, socket, sys
import numpy as np
import clusterml as cml

cml.init()
r, p = cml.my_procid(), cml.num_procs()
X = np.random.default_rng(7).normal(size=(41, 3)) * [1.0, 10.0, 100.0] + 5.0
cuts = [0, 10, 25, 41, 41] if p == 4 else np.linspace(0, 41, p + 1).astype(int).tolist()
Xr = X[cuts[r]:cuts[r + 1]]                     # rank 3 of 4 holds no rows
cov = cml.covariance(distributed=True).compute(Xr)
mom = cml.low_order_moments(distributed=True).compute(Xr)
out = sys.argv[1] if len(sys.argv) > 1 else "results"
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, f"{r}.json"), "w") as f:
    json.dump(dict(rank=r, size=p, rows=len(Xr), host=socket.gethostname(),
                   procid=os.environ.get("SLURM_PROCID"), cwd=os.getcwd(),
                   covariance=cov.covariance.tolist(), mean=mom.mean.tolist(),
                   variance=mom.variance.tolist(), minimum=mom.minimum.tolist()), f)
cml.fini()
"""

X = np.random.default_rng(7).normal(size=(41, 3)) * [1.0, 10.0, 100.0] + 5.0


def check_world(folder: Path, cwd: Path):
    rows = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    assert len(rows) == 4, rows
    assert sorted(r["rank"] for r in rows) == [0, 1, 2, 3] and {r["size"] for r in rows} == {4}
    assert all(str(r["rank"]) == r["procid"] for r in rows)
    hosts = {r["host"] for r in rows}
    assert hosts == {"node1", "node2"}, f"ranks not on both nodes: {[(r['rank'], r['host']) for r in rows]}"
    assert [r["rows"] for r in sorted(rows, key=lambda r: r["rank"])] == [10, 15, 16, 0]
    assert {r["cwd"] for r in rows} == {str(cwd)}  # tasks start in the submitting folder
    # the same bits on every rank, equal to one process on all rows
    for key in ("covariance", "mean", "variance", "minimum"):
        assert all(r[key] == rows[0][key] for r in rows), key
    np.testing.assert_allclose(rows[0]["covariance"], np.cov(X.T), rtol=1e-12)
    np.testing.assert_allclose(rows[0]["mean"], [X.mean(0)], rtol=1e-12)
    np.testing.assert_allclose(rows[0]["variance"], [X.var(0, ddof=1)], rtol=1e-12)
    np.testing.assert_array_equal(rows[0]["minimum"], [X.min(0)])
    return hosts


def test_srun_two_nodes_one_world(multihost, tmp_path):
    (tmp_path / "job.py").write_text(JOB)
    t0 = time.monotonic()
    p = multihost.on("login", "srun", "-N2", "-n4", "--mpi=pmi2", "python", "job.py", "out",
                     cwd=tmp_path, timeout=240, check=False)
    multihost.timings["srun -N2 -n4"] = time.monotonic() - t0
    assert p.returncode == 0, p.stdout + p.stderr
    check_world(tmp_path / "out", tmp_path)


def test_spmd_sbatch_example_runs_on_both_nodes(multihost, tmp_path):
    """The example as shipped (``--ntasks=4``, ``srun --mpi=pmi2 python job.py``): 2 CPUs a node."""
    shutil.copy(Path(ROOT) / "slurm" / "spmd.sbatch.example", tmp_path / "spmd.sbatch")
    (tmp_path / "job.py").write_text(JOB)
    t0 = time.monotonic()
    job = multihost.on("login", "sbatch", "--parsable", "--output", tmp_path / "job.out", "spmd.sbatch",
                       cwd=tmp_path).stdout.strip()
    # poll (sbatch --wait sleeps up to 32 s between its own polls)
    squeue = ("login", "squeue", "-h", "-t", "all", "-j", job, "-o", "%T")
    while (state := multihost.on(*squeue).stdout.strip()) in ("PENDING", "CONFIGURING", "RUNNING",
                                                               "COMPLETING", ""):
        assert time.monotonic() - t0 < 200, f"job {job} still {state or 'unlisted'}"
        time.sleep(0.5)
    multihost.timings["sbatch spmd.sbatch.example"] = time.monotonic() - t0
    out = (tmp_path / "job.out").read_text() if (tmp_path / "job.out").exists() else ""
    assert state == "COMPLETED", f"job {job} {state}:\n{out}"
    check_world(tmp_path / "results", tmp_path)
    assert multihost.wait_no_jobs() == []
