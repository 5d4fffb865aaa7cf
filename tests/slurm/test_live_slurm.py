"""The templates and profiles on a real single-node Slurm (see conftest.live_slurm).

Jobs stay small (<= 4 tasks): the machine has 2 cores shared with other tests.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import psutil
import pytest

from clusterml.launch import slurm as S
from clusterml.launch import slurmctl as C

REPO = Path(__file__).resolve().parents[2]

PROBE = """\
import json, os, sys
from mpi4py import MPI
comm = MPI.COMM_WORLD
# one file per process: stdout of several ranks may interleave (mpiexec's does)
with open(os.path.join(sys.argv[1], f"{os.getpid()}.json"), "w") as f:
    f.write(json.dumps(dict(rank=comm.Get_rank(), size=comm.Get_size(),
                      procid=os.environ.get("SLURM_PROCID"),
                      job_name=os.environ.get("SLURM_JOB_NAME"),
                      hostile=os.environ.get("CML_HOSTILE"),
                      exe=sys.executable)))
"""


@pytest.mark.timeout(120)
def test_start_is_idempotent_and_records_its_pids(live_slurm):
    import subprocess

    pids = (live_slurm.folder / "started.pids").read_text()
    names = {line.split()[0] for line in pids.splitlines()}
    assert {"slurmctld", "slurmd"} <= names <= {"slurmctld", "slurmd", "munged"}
    for line in pids.splitlines():
        name, pid = line.split()
        assert psutil.Process(int(pid)).name() == name
    t0 = time.monotonic()
    again = subprocess.run(
        ["bash", str(REPO / "slurm" / "dev" / "start.sh")],
        env=live_slurm.script_env, capture_output=True, text=True, timeout=90,
    )
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - t0 < 30
    assert again.stdout.strip().splitlines()[-1] == f"export SLURM_CONF={live_slurm.conf}"
    assert (live_slurm.folder / "started.pids").read_text() == pids
    print(f"\nSlurm start (packages present): {live_slurm.start_seconds:.2f} s; "
          f"re-run when up: {time.monotonic() - t0:.2f} s")


def run_probe(live_slurm, tmp_path, **settings):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    out = tmp_path / "out.txt"
    results = tmp_path / "results"
    results.mkdir()
    base = dict(ntasks=4, time="5", partition=live_slurm.partition, output=str(out))
    base.update(settings)
    script = S.write_batch_script(
        S.render_spmd_script(base, [sys.executable, str(probe), str(results)]), tmp_path / "jobs",
        "spmd.sbatch"
    )
    job = C.sbatch(script, wait=True, timeout=240)
    text = out.read_text() if out.exists() else ""
    assert job.returncode == 0, f"{C.describe_job(job.job_id)}; output:\n{text}"
    return job, [json.loads(p.read_text()) for p in sorted(results.iterdir())]


@pytest.mark.timeout(300)
def test_spmd_under_srun_pmi2_is_one_world(live_slurm, tmp_path):
    _job, rows = run_probe(live_slurm, tmp_path)
    assert len(rows) == 4, rows
    assert {r["size"] for r in rows} == {4}
    assert sorted(r["rank"] for r in rows) == [0, 1, 2, 3]
    assert all(str(r["rank"]) == r["procid"] for r in rows)
    assert {r["exe"] for r in rows} == {sys.executable}


@pytest.mark.timeout(300)
def test_srun_without_mpi_plugin_gives_singletons(live_slurm, tmp_path):
    """The trap ``clusterml doctor`` must detect: N processes, N worlds of size 1."""
    _job, rows = run_probe(live_slurm, tmp_path, mpi="none")
    assert len(rows) == 4, rows
    assert {r["size"] for r in rows} == {1}
    assert {r["rank"] for r in rows} == {0}
    assert sorted(r["procid"] for r in rows) == ["0", "1", "2", "3"]


@pytest.mark.timeout(300)
def test_mpiexec_inside_the_job_is_one_world(live_slurm, tmp_path):
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.access(mpiexec, os.X_OK):
        pytest.skip(f"no mpiexec next to {sys.executable}")
    _job, rows = run_probe(live_slurm, tmp_path, ntasks=3, mpi="mpiexec", mpiexec=mpiexec)
    assert {r["size"] for r in rows} == {3} and sorted(r["rank"] for r in rows) == [0, 1, 2]


@pytest.mark.timeout(300)
def test_hostile_values_arrive_literally_in_a_real_job(live_slurm, tmp_path):
    name = "a b;$(id) `id` 'q' {x} #c"
    hostile = "; rm -rf ~ $(touch pwned) `id` \"dq\" 'sq' {} \\ \n second line"
    _job, rows = run_probe(
        live_slurm, tmp_path, ntasks=2, job_name=name, env={"CML_HOSTILE": hostile}
    )
    assert [r["job_name"] for r in rows] == [name, name]
    assert [r["hostile"] for r in rows] == [hostile, hostile]
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "jobs" / "pwned").exists()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("request_", [dict(nodes=100, ntasks=100), dict(ntasks=1000)])
def test_impossible_request_fails_fast_with_slurms_reason(live_slurm, tmp_path, request_):
    settings = dict(time="5", partition=live_slurm.partition, **request_)
    script = S.write_batch_script(
        S.render_spmd_script(settings, ["true"]), tmp_path / "jobs", "big.sbatch"
    )
    t0 = time.monotonic()
    with pytest.raises(C.SlurmError) as err:
        C.sbatch(script, timeout=60)
    assert time.monotonic() - t0 < 30
    msg = str(err.value)
    # Slurm's own reason, e.g. "More processors requested than permitted"
    assert "Batch job submission failed: " in msg, msg
    assert len(msg.split("Batch job submission failed: ", 1)[1].strip()) > 5, msg
    # the same words without submitting (clusterml start quotes them for a refused engines job)
    said = C.sbatch_test_only(script)
    assert msg.split("Batch job submission failed: ", 1)[1].strip() in said, (said, msg)
    assert C.sbatch_test_only(tmp_path / "missing.sbatch") == "(no batch script to test)"
    assert C.list_jobs() == []


@pytest.mark.timeout(120)
def test_job_queries_and_scancel(live_slurm, tmp_path):
    script = S.write_batch_script(
        S.render_spmd_script(
            dict(ntasks=1, time="5", job_name="cml-sleeper", output=str(tmp_path / "o.txt")),
            ["sleep", "300"],
        ),
        tmp_path / "jobs",
        "sleep.sbatch",
    )
    job = C.sbatch(script)
    assert job.returncode == 0 and job.job_id.isdigit()
    try:
        info = C.job_info(job.job_id)
        assert info is not None and info.state in ("PENDING", "RUNNING"), info
        assert [j.job_id for j in C.list_jobs(name="cml-sleeper")] == [job.job_id]
        assert C.describe_job(job.job_id).startswith(f"Slurm job {job.job_id} is ")
    finally:
        C.scancel(job.job_id)
    final = C.wait_for_job_end(job.job_id, timeout=60)
    assert final is None or final.state.startswith("CANCELLED"), final
    C.scancel(job.job_id)  # already gone: not an error


def _engine_processes(cluster_id):
    found = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except psutil.Error:
            continue
        if p.info["name"] == "slurmstepd" or ("ipyparallel.engine" in cmd and cluster_id in cmd):
            found.append((p.info["pid"], p.info["name"], cmd[:200]))
    return found


@pytest.mark.timeout(420)
def test_ipyparallel_engines_through_slurm_profile(live_slurm, ipython_dir, tmp_path, monkeypatch):
    """The clusterml-slurm profile starts 4 engines as one Slurm job, one MPI world."""
    import ipyparallel as ipp

    from clusterml.launch import profiles as P

    profile_dir = ipython_dir / "profile_clusterml-slurm"
    P.install(["clusterml-slurm"], P.ProfileSettings(env={"CML_ENV_PROBE": "a b'c"}))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # nothing may be written here

    cluster = ipp.Cluster(n=4, profile="clusterml-slurm", cluster_id="cmltest", engine_timeout=120)
    assert cluster.profile_dir == str(profile_dir)
    t0 = time.monotonic()
    job_id = None
    try:
        rc = cluster.start_and_connect_sync()
        registered = time.monotonic() - t0
        print(f"\n4 engines registered through Slurm in {registered:.1f} s")
        (engine_set,) = cluster.engines.values()
        job_id = engine_set.job_id
        assert type(engine_set).__name__ == "ClusterMLSlurmEngineSetLauncher"
        assert len(rc.ids) == 4

        # code as text: the engines cannot import this test module
        dv = rc[:]
        dv.execute(
            "import os\nfrom mpi4py import MPI\n"
            "_cml_probe = (MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size(),"
            " os.environ.get('SLURM_JOB_ID'), os.getpid(), os.environ.get('CML_ENV_PROBE'))",
            block=True,
        )
        results = dv.pull("_cml_probe").get(timeout=60)
        assert list(dv.targets) == rc.ids and len(results) == 4
        by_engine = dict(zip(dv.targets, results, strict=True))
        for eid, (rank, size, slurm_job, _pid, env) in by_engine.items():
            assert eid == rank, by_engine
            assert size == 4
            assert slurm_job == job_id
            assert env == "a b'c"  # the profile's --env reached every engine
        assert sorted(r[0] for r in results) == [0, 1, 2, 3]

        # the job script went into the profile's jobs/ folder, 0700; nothing in the cwd
        batch = profile_dir / "jobs" / "slurm_engine-cmltest.sbatch"
        assert batch.exists() and stat.S_IMODE(batch.stat().st_mode) == 0o700
        assert stat.S_IMODE(batch.parent.stat().st_mode) == 0o700
        assert "srun --mpi=pmi2" in batch.read_text()
        assert list(cwd.iterdir()) == []
        rc.close()
    finally:
        cluster.stop_cluster_sync()
        if job_id is not None:
            C.scancel(job_id)

    # nothing left behind: no job in squeue, no slurmstepd, no engine
    deadline = time.monotonic() + 60
    while C.list_jobs() or _engine_processes("cmltest"):
        if time.monotonic() > deadline:
            pytest.fail(
                f"left behind after 60 s: jobs={C.list_jobs()} "
                f"processes={_engine_processes('cmltest')}"
            )
        time.sleep(0.5)
    assert list(cwd.iterdir()) == []


@pytest.mark.timeout(420)
def test_controller_on_a_compute_node(live_slurm, ipython_dir, tmp_path, monkeypatch):
    """Profile with on_compute_node=True: controller and engines are two Slurm jobs."""
    import ipyparallel as ipp

    from clusterml.launch import profiles as P

    profile_dir = ipython_dir / "profile_clusterml-slurm"
    P.install(["clusterml-slurm"])
    P.set_values("clusterml-slurm", {"controller_launcher_class": "clusterml-slurm"})
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    cluster = ipp.Cluster(n=2, profile="clusterml-slurm", cluster_id="cmlctl", engine_timeout=120)
    job_ids = []
    try:
        t0 = time.monotonic()
        rc = cluster.start_and_connect_sync()
        print(f"\ncontroller + 2 engines through Slurm in {time.monotonic() - t0:.1f} s")
        job_ids = [cluster.controller.job_id] + [e.job_id for e in cluster.engines.values()]
        assert type(cluster.controller).__name__ == "ClusterMLSlurmControllerLauncher"
        names = {j.job_id: j.name for j in C.list_jobs()}
        assert names.get(job_ids[0], "").startswith("ipcontroller-cmlctl"), names
        assert names.get(job_ids[1], "").startswith("ipengine-cmlctl"), names
        dv = rc[:]
        dv.execute("from mpi4py import MPI\n_r = MPI.COMM_WORLD.Get_rank()", block=True)
        assert dict(zip(dv.targets, dv.pull("_r").get(timeout=60), strict=True)) == {0: 0, 1: 1}
        assert sorted(p.name for p in (profile_dir / "jobs").iterdir()) == [
            "slurm_controller-cmlctl.sbatch", "slurm_engine-cmlctl.sbatch"
        ]
        assert list(cwd.iterdir()) == []
        rc.close()
    finally:
        cluster.stop_cluster_sync()
        for j in job_ids:
            C.scancel(j)
    deadline = time.monotonic() + 60
    while C.list_jobs() or _engine_processes("cmlctl"):
        if time.monotonic() > deadline:
            pytest.fail(f"left behind: {C.list_jobs()} {_engine_processes('cmlctl')}")
        time.sleep(0.5)
