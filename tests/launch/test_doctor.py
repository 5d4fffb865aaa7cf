"""``clusterml doctor`` on a good setup (real Slurm) and on broken ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import subprocess_env

from clusterml.launch import doctor as D
from clusterml.launch import doctor_slurm as DS
from clusterml.launch import profiles as P


def doctor(*args, env):
    r = subprocess.run([sys.executable, "-m", "clusterml", "doctor", "--json", *args],
                       capture_output=True, text=True, env=env, timeout=900)
    checks = {c["name"]: c for c in json.loads(r.stdout)}
    return r.returncode, checks


def venv_path() -> str:
    return os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin"


@pytest.mark.timeout(1200)
def test_doctor_all_ok_on_a_good_setup(live_slurm, ipython_dir):
    P.install(settings=P.ProfileSettings(slurm=dict(partition=live_slurm.partition, time="5")))
    env = subprocess_env(IPYTHONDIR=str(ipython_dir), PATH=venv_path())
    rc, checks = doctor("--timeout", "300", env=env)  # 2 cores shared with other MPI tests
    bad = {k: v for k, v in checks.items() if v["status"] != "ok"}
    assert rc == 0 and not bad, bad
    for name in ("mpi4py", "mpiexec-path", "mpiexec-python", "mpiexec-world", "slurm",
                 "profile clusterml-local", "profile clusterml-slurm", "srun-world",
                 "controller-address", "connection-files"):
        assert name in checks, sorted(checks)
    assert "srun --mpi=pmi2 gives one world of size 2" in checks["srun-world"]["summary"]
    assert "MPICH" in checks["mpi4py"]["summary"]
    # the text report says the same
    r = subprocess.run([sys.executable, "-m", "clusterml", "doctor", "--slurm", "no"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("all checks ok"), r.stdout + r.stderr


@pytest.mark.timeout(1200)
def test_doctor_finds_singletons_when_the_profile_runs_srun_without_mpi(live_slurm, ipython_dir):
    P.install(settings=P.ProfileSettings(slurm=dict(partition=live_slurm.partition, time="5", mpi="none")))
    env = subprocess_env(IPYTHONDIR=str(ipython_dir), PATH=venv_path())
    rc, checks = doctor("--timeout", "300", env=env)
    assert rc == 1
    c = checks["srun-world"]
    assert c["status"] == "problem" and "srun --mpi=none gives 2 singletons" in c["summary"], c
    assert "clusterml profile set clusterml-slurm mpi=pmi2" in c["fix"]
    assert checks["mpiexec-world"]["status"] == "ok"  # the rest is fine


@pytest.mark.timeout(300)
def test_doctor_finds_a_wrong_mpiexec_on_path(ipython_dir, tmp_path):
    P.install(["clusterml-local"])
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "mpiexec").write_text(
        "#!/bin/sh\necho 'mpiexec (OpenRTE) 4.1.4'\necho 'Report bugs to http://www.open-mpi.org/community/help/'\n"
    )
    os.chmod(fake / "mpiexec", 0o755)
    env = subprocess_env(IPYTHONDIR=str(ipython_dir), PATH=f"{fake}:{venv_path()}")
    rc, checks = doctor("--slurm", "no", env=env)
    assert rc == 1
    c = checks["mpiexec-path"]
    assert c["status"] == "problem", c
    assert f"mpiexec on PATH ({fake / 'mpiexec'}) is openmpi, but mpi4py uses MPICH" in c["summary"], c
    assert f"export PATH={os.path.dirname(sys.executable)}:$PATH" in c["fix"]
    assert checks["mpiexec-python"]["status"] == "ok"


@pytest.mark.timeout(300)
def test_doctor_finds_no_mpiexec_on_path_and_loose_connection_files(ipython_dir):
    P.install(["clusterml-local"])
    sec = ipython_dir / "profile_clusterml-local" / "security"
    (sec / "ipcontroller-client.json").write_text("{}")
    os.chmod(sec / "ipcontroller-client.json", 0o644)
    env = subprocess_env(IPYTHONDIR=str(ipython_dir), PATH="/usr/bin:/bin")
    rc, checks = doctor("--slurm", "no", env=env)
    assert rc == 1
    c = checks["mpiexec-path"]
    assert c["status"] == "problem" and c["summary"] == "no mpiexec on PATH", c
    c = checks["connection-files"]
    assert c["status"] == "problem" and "ipcontroller-client.json is 644" in c["details"], c
    assert f"chmod 600 {sec / 'ipcontroller-client.json'}" in c["fix"]
    # the missing Slurm profile is not a problem when Slurm is not used
    assert checks["profile clusterml-slurm"]["status"] == "skipped"


def test_loopback_controller_with_engines_on_other_nodes_is_a_problem():
    other = [dict(name="n1", addr="10.1.0.17", hostname="node17", partition="batch", state="idle")]
    here = [dict(name="n1", addr="127.0.0.1", hostname="whatever", partition="debug", state="idle")]
    c = DS.check_loopback("127.0.0.1", False, other)
    assert c is not None and c.status == "problem" and "node17" in c.details and "ip='*'" in c.fix
    assert DS.check_loopback("127.0.0.1", False, here) is None
    assert DS.check_loopback("127.0.0.1", True, other) is None  # controller is a Slurm job too
    assert DS.check_loopback("10.1.0.1", False, other) is None


def test_mpi_family():
    assert D.mpi_family("HYDRA build details:\n Version: 4.1") == "mpich"
    assert D.mpi_family("MPICH Version:      5.0.2") == "mpich"
    assert D.mpi_family("Intel(R) MPI Library for Linux* OS, Version 2021.10") == "mpich"
    assert D.mpi_family("mpiexec (Open MPI) 4.1.4") == "openmpi"
    assert D.mpi_family("Open MPI v5.0.3, package: Debian") == "openmpi"
    assert D.mpi_family("something else") is None


def test_partition_nodes_of_the_profile_or_the_default_partition():
    nodes = [dict(name="a1", partition="batch*"), dict(name="a2", partition="batch*"),
             dict(name="b1", partition="one"), dict(name="a1", partition="one")]
    assert DS.partition_nodes("#!/bin/bash\n#SBATCH --ntasks={n}\n", nodes) == ["a1", "a2"]
    assert DS.partition_nodes('#SBATCH --partition="one"\n', nodes) == ["a1", "b1"]
    assert DS.partition_nodes("#SBATCH --partition=gpu\n", nodes) == []


def test_unreachable_controller_address_names_cause_and_the_address_that_works():
    rows = [dict(host="n1", resolved="192.0.2.1", reach="OSError: [Errno 101] Network is unreachable",
                 alts={"10.9.0.1": "ok", "192.0.2.1": "OSError: unreachable"}),
            dict(host="n2", resolved="192.0.2.1", reach="OSError: [Errno 101] Network is unreachable",
                 alts={"10.9.0.1": "ok", "192.0.2.1": "OSError: unreachable"})]
    c = DS._reach_check(rows, "login9", "*", 4711, {"192.0.2.1": "pub0", "10.9.0.1": "ib0"})
    assert c.status == "problem"
    assert c.summary == "controller address 192.0.2.1:4711 is not reachable from n1, n2"
    assert "'login9' (the profile's controller location), which the nodes resolve to 192.0.2.1" in c.details
    assert "10.9.0.1 (ib0) is reachable from every node" in c.details
    assert "controller_ip=10.9.0.1" in c.fix and "--controller-interface ib0" in c.fix, c
    ok = DS._reach_check([dict(r, reach="ok") for r in rows], "login9", "*", 4711, {})
    assert ok.status == "ok"
