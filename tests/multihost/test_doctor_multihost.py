"""``clusterml doctor`` from the login host: its Slurm probe spans both nodes, and it names the
multi-homed login trap (the hostname resolves to an address the nodes cannot reach) before any
start, with the address that works."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.timeout(600)


def doctor(multihost, ipython_dir):
    p = multihost.clusterml("doctor", "--json", "--timeout", "240", ipython_dir=ipython_dir,
                            timeout=500, check=False)
    try:
        checks = {c["name"]: c for c in json.loads(p.stdout)}
    except ValueError:
        pytest.fail(f"doctor printed no JSON ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p.returncode, checks


def test_doctor_probe_spans_both_nodes(multihost, slurm_profile):
    t0 = time.monotonic()
    rc, checks = doctor(multihost, slurm_profile)
    multihost.timings["doctor"] = time.monotonic() - t0
    bad = {k: v for k, v in checks.items() if v["status"] != "ok"}
    assert rc == 0 and not bad, bad
    world = checks["srun-world"]
    want = "srun --mpi=pmi2 gives one world of size 2 across 2 nodes (node1, node2)"
    assert want in world["summary"], world
    reach = checks["controller-address"]
    assert "compute tasks reach the controller address login" in reach["summary"], reach
    assert "['node1', 'node2']" in reach["details"], reach
    assert multihost.wait_no_jobs() == []


def test_doctor_names_the_multihomed_login_host(multihost, slurm_profile):
    multihost.script("trap", "on")
    try:
        rc, checks = doctor(multihost, slurm_profile)
    finally:
        multihost.script("trap", "off")
    assert rc == 1
    c = checks["controller-address"]
    assert c["status"] == "problem", c
    # the cause in words: which address, from which nodes; the fix names the address that works
    assert c["summary"].startswith("controller address 10.231.18.10:"), c
    assert c["summary"].endswith("is not reachable from node1, node2"), c
    assert "'login' (this host's name), which the nodes resolve to 10.231.18.10" in c["details"], c
    assert "This host's address 10.231.17.10 (eth0) is reachable from every node" in c["details"], c
    assert "controller_ip=10.231.17.10" in c["fix"] and "--controller-interface eth0" in c["fix"], c
    # MPI itself is fine: only the controller's address is wrong
    assert checks["srun-world"]["status"] == "ok", checks["srun-world"]
    assert multihost.wait_no_jobs() == []


def test_doctor_fix_for_the_multihomed_login_host_works(multihost, tmp_path):
    """The fix doctor gives (the controller on login's cluster interface) passes doctor and
    starts engines on both nodes while `login` still resolves to the unreachable address."""
    d = tmp_path / "ipython"
    d.mkdir(mode=0o700)
    multihost.clusterml("profile", "install", "--partition", "debug", "--time", "00:10:00",
                        "--controller-interface", "eth0", ipython_dir=d)
    multihost.script("trap", "on")
    try:
        rc, checks = doctor(multihost, d)
        c = checks["controller-address"]
        assert rc == 0 and c["status"] == "ok", c
        assert "compute tasks reach the controller address 10.231.17.10" in c["summary"], c
        out, _ = multihost.python("""
            import json
            import clusterml as cml
            c = cml.Cluster(n=4, profile="clusterml-slurm")
            hosts = c.status()["hosts"]
            c.stop()
            print(json.dumps(hosts))
        """, ipython_dir=d, timeout=400)
        assert out == ["node1", "node2"]
    finally:
        multihost.script("trap", "off")
    assert multihost.wait_no_jobs() == []
    assert multihost.wait_no_processes() == []
