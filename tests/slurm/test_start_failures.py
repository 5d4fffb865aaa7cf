"""A start that cannot succeed fails fast, with the job's state, the engine log, cause and fix.

On the single-node dev Slurm (conftest.live_slurm), through the product path:
``cml.Cluster(profile="clusterml-slurm")`` and ``clusterml start``.  Small jobs only.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime

import pytest
from helpers import subprocess_env

import clusterml as cml
from clusterml.launch import profiles as P
from clusterml.launch import slurm as S
from clusterml.launch import slurmctl as C


def _end_time(job_id: str) -> float:
    """The job's EndTime as a wall-clock timestamp (scontrol keeps ended jobs MinJobAge s)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
    fields = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
    return datetime.strptime(fields["EndTime"], "%Y-%m-%dT%H:%M:%S").timestamp()


def _no_jobs_left(timeout=60):
    deadline = time.monotonic() + timeout
    while C.list_jobs():
        assert time.monotonic() < deadline, C.list_jobs()
        time.sleep(0.2)


def _lines(msg: str) -> list[str]:
    return msg.splitlines()


@pytest.mark.timeout(300)
def test_engines_that_die_fail_the_notebook_within_seconds_of_the_job_end(live_slurm, ipython_dir,
                                                                          tmp_path, monkeypatch):
    # a bad engine environment: Python cannot even start, so the job FAILS at once
    monkeypatch.chdir(tmp_path)
    P.install(["clusterml-slurm"], P.ProfileSettings(slurm=dict(partition=live_slurm.partition, time="5"),
                                                    env={"PYTHONHOME": "/nonexistent/cml"}))
    t0 = time.monotonic()
    with pytest.raises(cml.ClusterStartError) as info:
        cml.Cluster(n=2, profile="clusterml-slurm", cluster_id="dies")
    raised = time.time()
    msg = str(info.value)
    print(f"\nengines died: ClusterStartError after {time.monotonic() - t0:.1f} s:\n{msg}")
    assert isinstance(info.value, cml.DistributedError) and isinstance(info.value, RuntimeError)
    lines = _lines(msg)
    job = next(line for line in lines if line.startswith("Slurm job "))
    job_id = job.split()[2]
    assert job.split()[3] in ("FAILED", "COMPLETED"), job
    assert "engine log (last lines):" in lines, msg
    assert any("PYTHONHOME" in line or "encodings" in line for line in lines), msg  # Python's own words
    assert (any(line.startswith("cause: ") for line in lines)
            and any(line.startswith("fix: ") for line in lines))
    assert raised - _end_time(job_id) < 10, (raised, _end_time(job_id))  # not at the 300 s timeout
    _no_jobs_left()
    assert sorted(p.name for p in (ipython_dir / "profile_clusterml-slurm" / "security").iterdir()) == []


@pytest.mark.timeout(300)
def test_a_job_that_can_never_run_fails_fast_with_its_reason(live_slurm, ipython_dir, tmp_path):
    # a dependency on a job that failed can never be satisfied: Slurm keeps it PENDING forever
    failed = C.sbatch(S.write_batch_script(
        S.render_spmd_script(dict(ntasks=1, time="1", output=str(tmp_path / "f.out")), ["false"]),
        tmp_path / "jobs", "fail.sbatch"))
    C.wait_for_job_end(failed.job_id, 60)
    P.install(["clusterml-slurm"], P.ProfileSettings(slurm=dict(
        partition=live_slurm.partition, time="5", extra_sbatch=[f"--dependency=afterok:{failed.job_id}"])))
    env = subprocess_env(IPYTHONDIR=str(ipython_dir))
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "clusterml", "start", "-n", "2", "--profile", "clusterml-slurm",
                        "--cluster-id", "never"], capture_output=True, text=True, env=env, timeout=240,
                       cwd=tmp_path)
    took = time.monotonic() - t0
    print(f"\nhopeless pending job: clusterml start failed after {took:.1f} s:\n{r.stderr[-1500:]}")
    assert r.returncode == 1, r.stdout + r.stderr
    msg = r.stderr.split("cluster not started: ")[1]
    assert any(line.startswith("Slurm job ") and line.endswith("PENDING (DependencyNeverSatisfied)")
               for line in _lines(msg)), msg
    assert "\ncause: Slurm can never run this request" in msg and "\nfix: remove the --dependency" in msg, msg
    assert took < 60, took  # the profile's timeout is 300 s
    _no_jobs_left()  # the hopeless job was cancelled


@pytest.mark.timeout(300)
def test_notebook_shows_the_pending_reason_and_honours_the_profile_timeout(live_slurm, ipython_dir, tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    P.install(["clusterml-slurm"], P.ProfileSettings(slurm=dict(partition=live_slurm.partition, time="5"),
                                                    engine_timeout=8))
    hog = C.sbatch(S.write_batch_script(
        S.render_spmd_script(dict(ntasks=8, time="5", job_name="cml-hog", output=str(tmp_path / "hog.out")),
                             ["sleep", "300"]), tmp_path / "jobs", "hog.sbatch"))
    try:
        deadline = time.monotonic() + 60
        while C.job_info(hog.job_id).state != "RUNNING":
            assert time.monotonic() < deadline, C.describe_job(hog.job_id)
            time.sleep(0.2)
        t0 = time.monotonic()
        with pytest.raises(cml.ClusterStartError) as info:
            cml.Cluster(n=2, profile="clusterml-slurm", cluster_id="queued")  # no start_timeout given
        took = time.monotonic() - t0
    finally:
        C.scancel(hog.job_id)
    msg = str(info.value)
    print(f"\nnotebook, partition busy: failed after {took:.1f} s:\n{msg}")
    assert isinstance(info.value, cml.ClusterTimeoutError)
    assert "0 of 2 engines registered" in _lines(msg)[0], msg
    assert any(line.startswith("Slurm job ") and line.endswith("PENDING (Resources)")
               for line in _lines(msg)), msg
    assert "within 8 s" in msg and 8 <= took < 40, took  # the profile's 8 s, not a default
    _no_jobs_left()


@pytest.mark.timeout(300)
def test_unreachable_controller_address_is_named_with_the_fix(live_slurm, ipython_dir, tmp_path):
    # engines and client are told a controller address nobody answers on (TEST-NET-1, RFC 5737);
    # the multi-homed login host (engines cannot reach, client can) is tested on the three-host cluster
    P.install(["clusterml-slurm"], P.ProfileSettings(slurm=dict(partition=live_slurm.partition, time="5"),
                                                    controller=dict(ip="*", location="192.0.2.1")))
    env = subprocess_env(IPYTHONDIR=str(ipython_dir))
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "clusterml", "start", "-n", "2", "--profile", "clusterml-slurm",
                        "--cluster-id", "lost"], capture_output=True, text=True, env=env, timeout=240,
                       cwd=tmp_path)
    took = time.monotonic() - t0
    print(f"\nunreachable controller: clusterml start failed after {took:.1f} s:\n{r.stderr[-2000:]}")
    assert r.returncode == 1, r.stdout + r.stderr
    msg = r.stderr.split("cluster not started: ")[1]
    lines = _lines(msg)
    assert any(line.startswith("Slurm job ") for line in lines), msg
    cause = next(x for x in lines if x.startswith("cause: "))
    assert cause.startswith("cause: controller address 192.0.2.1:") and "is not reachable from " in cause, msg
    assert any(x.startswith("fix: clusterml profile set clusterml-slurm controller_ip=") for x in lines), msg
    assert took < 90, took  # not the profile's 300 s
    _no_jobs_left()
