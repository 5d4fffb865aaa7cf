"""``cml.Cluster(n=4, profile="clusterml-slurm")`` and ``clusterml start`` / ``Cluster.connect`` /
``status`` / ``stop`` from the login host, engines on node1 and node2 (the product path: the
profile comes from ``clusterml profile install``, the engines from Slurm, MPI from srun).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from .mhhelp import profile_files

pytestmark = pytest.mark.timeout(600)

X = np.random.default_rng(5).normal(size=(50, 4)) * [1.0, 2.0, 3.0, 4.0]

COMMON = """
import json, os, time
import numpy as np
import clusterml as cml

def where():
    import os, socket
    from mpi4py import MPI
    w = MPI.COMM_WORLD
    return dict(rank=w.Get_rank(), size=w.Get_size(), host=socket.gethostname(), pid=os.getpid())

X = np.random.default_rng(5).normal(size=(50, 4)) * [1.0, 2.0, 3.0, 4.0]
out = {}
"""

NOTEBOOK = COMMON + """
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()       # as in a notebook: %px targets the cluster's engines

t0 = time.monotonic()
c = cml.Cluster(n=4, profile="clusterml-slurm")
out["start_s"] = time.monotonic() - t0
import atexit; atexit.register(c.stop)     # a failing line below still stops the cluster
out["repr"] = repr(c)
out["engines"] = [{k: e[k] for k in ("rank", "host", "pid")} for e in c.engines]
out["status_hosts"] = c.status()["hosts"]
out["ids"] = sorted(c.client.ids)
out["where"] = c.apply(where)
out["cov"] = c.covariance().compute(c.scatter(X)).covariance.tolist()
out["moments_mean"] = c.low_order_moments().compute(c.scatter(X)).mean.tolist()

shell.run_cell("%px import socket")
r = shell.run_cell("%px here = (cml.my_procid(), cml.num_procs(), socket.gethostname())")
out["px_ok"] = r.success
out["px"] = c.view.pull("here", block=True)

t0 = time.monotonic()
c.restart()
out["restart_s"] = time.monotonic() - t0
out["where2"] = c.apply(where)
out["cov2"] = c.covariance().compute(c.scatter(X)).covariance.tolist()
t0 = time.monotonic()
c.stop()
out["stop_s"] = time.monotonic() - t0
out["running_after_stop"] = c.running
print(json.dumps(out))
"""

CONNECT = COMMON + """
c = cml.Cluster.connect(profile="clusterml-slurm", cluster_id="mh", n=4)
import atexit; atexit.register(c.stop)
out["ids"] = sorted(c.client.ids)
out["where"] = c.apply(where)
out["cov"] = c.covariance().compute(c.scatter(X)).covariance.tolist()
c.stop()                                   # attached: disconnects, the cluster keeps running
print(json.dumps(out))
"""


def check_world(where: list[dict]):
    assert [w["rank"] for w in where] == [0, 1, 2, 3] and {w["size"] for w in where} == {4}, where
    assert {w["host"] for w in where} == {"node1", "node2"}, where


def check_nothing_left(multihost, ipython_dir):
    assert multihost.wait_no_jobs() == []
    assert multihost.wait_no_processes() == []
    assert profile_files(ipython_dir) == []


def test_notebook_cluster_on_two_nodes(multihost, slurm_profile):
    out, p = multihost.python(NOTEBOOK, ipython_dir=slurm_profile, timeout=500)
    multihost.timings.update({"Cluster(n=4) start": out["start_s"], "restart()": out["restart_s"],
                              "stop()": out["stop_s"]})
    print(f"\nCluster(n=4, profile='clusterml-slurm'): start {out['start_s']:.1f} s, "
          f"restart {out['restart_s']:.1f} s, stop {out['stop_s']:.1f} s; {out['repr']}")
    # engines on both nodes, engine id == MPI rank, hosts shown
    check_world(out["where"])
    assert out["ids"] == [0, 1, 2, 3]
    assert [(e["rank"], e["host"], e["pid"]) for e in out["engines"]] == [
        (w["rank"], w["host"], w["pid"]) for w in out["where"]]
    assert out["status_hosts"] == ["node1", "node2"]
    # calls correct against NumPy on all rows
    np.testing.assert_allclose(out["cov"], np.cov(X.T), rtol=1e-12)
    np.testing.assert_allclose(out["moments_mean"], [X.mean(0)], rtol=1e-12)
    # %px on the same engines
    assert out["px_ok"], p.stdout + p.stderr
    assert [tuple(x) for x in out["px"]] == [(w["rank"], 4, w["host"]) for w in out["where"]]
    # restart() re-forms one world on both nodes with new processes
    check_world(out["where2"])
    assert not {w["pid"] for w in out["where"]} & {w["pid"] for w in out["where2"]}
    np.testing.assert_allclose(out["cov2"], np.cov(X.T), rtol=1e-12)
    # stop() leaves no job, process or file
    assert out["running_after_stop"] is False
    check_nothing_left(multihost, slurm_profile)


def test_cli_start_connect_status_stop(multihost, slurm_profile):
    t0 = time.monotonic()
    p = multihost.clusterml("start", "--profile", "clusterml-slurm", "-n", "4", "--cluster-id", "mh",
                            ipython_dir=slurm_profile, timeout=400, check=False)
    multihost.timings["clusterml start -n 4"] = time.monotonic() - t0
    try:
        assert p.returncode == 0, p.stdout + p.stderr
        assert "4 engines registered" in p.stdout and "Slurm job" in p.stdout, p.stdout
        job = p.stdout.split("Slurm job ", 1)[1].split(")")[0].strip()

        st = multihost.clusterml("status", "--profile", "clusterml-slurm", ipython_dir=slurm_profile)
        assert "cluster 'mh'" in st.stdout and "engines registered: 4" in st.stdout, st.stdout
        assert f"Slurm job {job} RUNNING" in st.stdout, st.stdout

        out, _ = multihost.python(CONNECT, ipython_dir=slurm_profile, timeout=300)
        check_world(out["where"])
        assert out["ids"] == [0, 1, 2, 3]
        np.testing.assert_allclose(out["cov"], np.cov(X.T), rtol=1e-12)
        # disconnecting leaves the cluster running
        assert any(line.startswith(job) for line in multihost.squeue())
    finally:
        stop = multihost.clusterml("stop", "--profile", "clusterml-slurm", "--cluster-id", "mh",
                                   ipython_dir=slurm_profile, timeout=200, check=False)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert f"cancelled Slurm job {job}" in stop.stdout, stop.stdout
    st = multihost.clusterml("status", "--profile", "clusterml-slurm", ipython_dir=slurm_profile)
    assert "no clusters recorded" in st.stdout, st.stdout
    check_nothing_left(multihost, slurm_profile)
