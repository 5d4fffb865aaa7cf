"""``clusterml start / status / stop`` through a real single-node Slurm (see tests/conftest.live_slurm).

Jobs stay small (<= 4 tasks): the machine has 2 cores shared with other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from helpers import subprocess_env

from clusterml import ClusterStartError, ClusterTimeoutError
from clusterml.launch import ipcluster as IC
from clusterml.launch import profiles as P
from clusterml.launch import slurm as S
from clusterml.launch import slurmctl as C


def cli(*args, env, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "clusterml", *args], capture_output=True, text=True,
        env=env, timeout=timeout, cwd=env["CML_TEST_CWD"],
    )


@pytest.fixture
def env(ipython_dir, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return subprocess_env(IPYTHONDIR=str(ipython_dir), CML_TEST_CWD=str(cwd))


def cluster_processes(profile_dir: Path) -> list[str]:
    """Running (non-zombie) controller / engine / mpiexec processes of this profile."""
    found = []
    for p in psutil.process_iter(["pid", "name", "cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(p.info["cmdline"] or [])
            if "ipyparallel" not in cmd and "mpiexec" not in cmd:
                continue
            if p.environ().get("IPP_PROFILE_DIR") == str(profile_dir):
                found.append(f"{p.info['pid']} {cmd[:120]}")
        except psutil.Error:
            continue
    return found


def wait_nothing_left(profile_dir: Path, timeout=60, slurm=True):
    deadline = time.monotonic() + timeout
    while True:
        jobs, procs = C.list_jobs() if slurm else [], cluster_processes(profile_dir)
        if not jobs and not procs:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"left behind after {timeout} s: jobs={jobs} processes={procs}")
        time.sleep(0.2)


@pytest.mark.timeout(600)
def test_start_status_stop_through_slurm(live_slurm, env, ipython_dir):
    import ipyparallel as ipp

    P.install(["clusterml-slurm"], P.ProfileSettings(slurm=dict(partition=live_slurm.partition, time="10")))
    pdir = ipython_dir / "profile_clusterml-slurm"
    t0 = time.monotonic()
    r = cli("start", "-n", "4", "--profile", "clusterml-slurm", "--cluster-id", "cmlstart",
            "--timeout", "180", env=env)
    print(f"\nclusterml start -n 4 through Slurm: {time.monotonic() - t0:.1f} s\n{r.stdout}{r.stderr}")
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert "4 engines registered" in r.stdout
        assert "clusterml stop --profile clusterml-slurm --cluster-id cmlstart" in r.stdout
        # progress came from Slurm while waiting (job id and state)
        assert "Slurm job" in r.stderr and "engines registered" in r.stderr, r.stderr
        # `start` returned; the cluster runs on without it
        (job,) = C.list_jobs()
        assert job.state == "RUNNING" and job.name == "ipengine-cmlstart"
        sec = pdir / "security"
        for f in ("cluster-cmlstart.json", "ipcontroller-cmlstart-client.json",
                  "ipcontroller-cmlstart-engine.json"):
            assert (sec / f).exists() and (os.stat(sec / f).st_mode & 0o777) == 0o600, f
        assert list(Path(env["CML_TEST_CWD"]).iterdir()) == []

        r = cli("status", "--profile", "clusterml-slurm", "--json", env=env)
        assert r.returncode == 0, r.stderr
        (row,) = json.loads(r.stdout)
        assert row["cluster_id"] == "cmlstart" and row["engines_registered"] == 4, row
        assert row["controller"].startswith("running (pid ")
        (es,) = row["engine_sets"]
        assert es["job_id"] == job.job_id and es["state"] == "RUNNING" and es["n"] == 4
        r = cli("status", env=env)
        assert f"Slurm job {job.job_id} RUNNING" in r.stdout and "engines registered: 4" in r.stdout, r.stdout

        # a client attaches and finds one MPI world with id == rank
        rc = ipp.Client(profile_dir=str(pdir), cluster_id="cmlstart", timeout=30)
        try:
            dv = rc[:]
            dv.execute("from mpi4py import MPI\n_w = (MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size())",
                       block=True)
            got = dict(zip(dv.targets, dv.pull("_w").get(timeout=60), strict=True))
            assert got == {i: (i, 4) for i in range(4)}
        finally:
            rc.close()

        # a second start with the same id is refused while it runs
        r = cli("start", "-n", "1", "--profile", "clusterml-slurm", "--cluster-id", "cmlstart", env=env)
        assert r.returncode == 1 and "already running" in r.stderr, r.stderr
    finally:
        stop = cli("stop", "--profile", "clusterml-slurm", "--cluster-id", "cmlstart", env=env)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "cancelled Slurm job" in stop.stdout
    wait_nothing_left(pdir)
    left = sorted(p.name for p in (pdir / "security").iterdir())
    assert left == [], left
    assert not any("cmlstart" in p.name for p in (pdir / "log").iterdir())
    r = cli("status", "--profile", "clusterml-slurm", env=env)
    assert "no clusters recorded" in r.stdout


@pytest.mark.timeout(300)
def test_request_that_cannot_fit_fails_fast_with_slurms_reason(live_slurm, env, ipython_dir):
    # 4 tasks x 64 CPUs on a node of 8: refused at submission (EnforcePartLimits=ALL)
    P.install(["clusterml-slurm"],
              P.ProfileSettings(slurm=dict(partition=live_slurm.partition, cpus_per_task=64)))
    t0 = time.monotonic()
    r = cli("start", "-n", "4", "--profile", "clusterml-slurm", "--cluster-id", "toobig", env=env)
    took = time.monotonic() - t0
    assert r.returncode == 1, r.stdout + r.stderr
    assert "clusterml: error: cluster not started: the engines job was refused" in r.stderr, r.stderr
    assert "\ncause: " in r.stderr and "\nfix: " in r.stderr, r.stderr
    assert "More processors requested than permitted" in r.stderr.split("cluster not started")[1], r.stderr
    assert took < 60, took
    pdir = ipython_dir / "profile_clusterml-slurm"
    wait_nothing_left(pdir)
    assert sorted(p.name for p in (pdir / "security").iterdir()) == []


@pytest.mark.timeout(300)
def test_wait_in_queue_shows_reason_and_times_out_with_it(live_slurm, env, ipython_dir, tmp_path):
    P.install(["clusterml-slurm"], P.ProfileSettings(slurm=dict(partition=live_slurm.partition, time="5")))
    hog = C.sbatch(S.write_batch_script(
        S.render_spmd_script(dict(ntasks=8, time="5", job_name="cml-hog", output=str(tmp_path / "hog.out")),
                             ["sleep", "300"]),
        tmp_path / "jobs", "hog.sbatch"))
    try:
        deadline = time.monotonic() + 60
        while C.job_info(hog.job_id).state != "RUNNING":
            assert time.monotonic() < deadline, C.describe_job(hog.job_id)
            time.sleep(0.2)
        r = cli("start", "-n", "2", "--profile", "clusterml-slurm", "--cluster-id", "queued",
                "--timeout", "12", env=env)
    finally:
        C.scancel(hog.job_id)
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr
    # the progress bar told the job and its pending reason while waiting ...
    assert "0/2" in err and " PENDING (Resources)" in err, err
    # ... and the failure says the same facts, not a bare timeout
    msg = err.split("cluster not started: ")[1]
    assert "0 of 2 engines registered after 1" in msg.splitlines()[0], msg
    engines_job = msg.split("Slurm job ")[1].split()[0]
    assert f"\nSlurm job {engines_job} PENDING (Resources)\n" in msg, msg
    assert "\ncause: " in msg and "\nfix: " in msg, msg
    assert engines_job != hog.job_id
    pdir = ipython_dir / "profile_clusterml-slurm"
    wait_nothing_left(pdir)  # the engines job was cancelled, the controller stopped
    assert sorted(p.name for p in (pdir / "security").iterdir()) == []


@pytest.mark.timeout(420)
def test_stop_all_local_clusters(env, ipython_dir):
    P.install(["clusterml-local"])
    pdir = ipython_dir / "profile_clusterml-local"
    for cid in ("one", "two"):
        r = cli("start", "-n", "2", "--profile", "clusterml-local", "--cluster-id", cid, "--timeout", "150",
                env=env)
        assert r.returncode == 0, r.stdout + r.stderr
    try:
        assert len(cluster_processes(pdir)) >= 4
        rows = {row["cluster_id"]: row for row in IC.status("clusterml-local")}
        assert set(rows) == {"one", "two"} and all(r["engines_registered"] == 2 for r in rows.values()), rows
    finally:
        r = cli("stop", "--all", "--profile", "clusterml-local", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stopped cluster 'one'" in r.stdout and "stopped cluster 'two'" in r.stdout
    wait_nothing_left(pdir, timeout=30, slurm=False)  # local clusters: no Slurm needed
    assert sorted(p.name for p in (pdir / "security").iterdir()) == []
    r = cli("stop", "--profile", "clusterml-local", "--cluster-id", "one", env=env)
    assert r.returncode == 1 and "no cluster 'one' recorded" in r.stderr


@pytest.mark.timeout(300)
def test_list_clusters_living_from_ipyparallel_dead_records_kept(env, ipython_dir):
    """A living cluster is listed as ipyparallel loads it, its record untouched and no watcher
    left running here; once its processes are killed, ipyparallel drops (and deletes) its
    record, but clusterml keeps it listed until ``stop_all`` has removed every file."""
    import signal
    import threading

    from clusterml.launch.lifecycle import list_clusters, stop_all

    P.install(["clusterml-local"])
    pdir = ipython_dir / "profile_clusterml-local"
    r = cli("start", "-n", "2", "--profile", "clusterml-local", "--cluster-id", "t", "--timeout", "150",
            env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    record = (pdir / "security" / "cluster-t.json").read_bytes()
    threads = threading.active_count()
    try:
        [entry] = list_clusters("clusterml-local")
        assert entry["cluster_id"] == "t" and entry["running"] and entry["owner_pid"] is None, entry
        assert entry["controller_pid"] == json.loads(record)["controller"]["state"]["pid"]
        assert (pdir / "security" / "cluster-t.json").read_bytes() == record
        deadline = time.monotonic() + 10
        while threading.active_count() > threads and time.monotonic() < deadline:
            time.sleep(0.1)
        assert threading.active_count() <= threads, [t.name for t in threading.enumerate()]
    finally:
        procs = []
        for p in psutil.process_iter():
            try:
                if p.environ().get("IPP_PROFILE_DIR") == str(pdir):
                    procs.append(p)
            except psutil.Error:
                continue
        for p in procs:
            p.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=20)
    for _ in range(2):  # the first listing lets ipyparallel drop the record: the second still sees it
        [entry] = list_clusters("clusterml-local")
        assert entry["cluster_id"] == "t" and not entry["running"], entry
    assert stop_all("clusterml-local") == ["t"]
    assert list_clusters("clusterml-local") == []
    assert sorted(p.name for p in (pdir / "security").iterdir()) == []
    assert sorted(p.name for p in (pdir / "log").iterdir()) == []
    assert cluster_processes(pdir) == []


class FakeClient:
    """Engines 'register' one by one at given times."""

    def __init__(self, times):
        self.t0 = time.monotonic()
        self.times = times

    @property
    def ids(self):
        return [i for i, t in enumerate(self.times) if time.monotonic() - self.t0 >= t]


@pytest.mark.timeout(60)
def test_wait_for_engines_progress_and_timeout_message():
    from types import SimpleNamespace

    from clusterml.launch.wait import wait_for_engines

    no_launchers = SimpleNamespace(engines={})
    assert wait_for_engines(no_launchers, FakeClient([0, 0.3, 0.6]), 3, 10) == [0, 1, 2]
    with pytest.raises(ClusterTimeoutError, match=r"^cluster: 1 of 3 engines registered after 1 s\n"):
        wait_for_engines(no_launchers, FakeClient([0, 99, 99]), 3, 1.0)


@pytest.mark.timeout(120)
def test_wait_for_engines_fails_at_once_when_the_job_ended(live_slurm, tmp_path):
    from types import SimpleNamespace

    from clusterml.launch.launchers import ClusterMLSlurmEngineSetLauncher
    from clusterml.launch.wait import wait_for_engines

    job = C.sbatch(S.write_batch_script(
        S.render_spmd_script(dict(ntasks=1, time="5", output=str(tmp_path / "o.out")), ["false"]),
        tmp_path / "jobs", "fail.sbatch"))
    launcher = ClusterMLSlurmEngineSetLauncher(profile_dir=str(tmp_path), output_file=str(tmp_path / "o.out"))
    launcher.job_id = job.job_id
    launcher.notify_start(job.job_id)
    launcher.watch()  # what start() does after sbatch: the launcher asks Slurm, the wait only reads it
    t0 = time.monotonic()
    with pytest.raises(ClusterStartError) as err:
        wait_for_engines(SimpleNamespace(engines={"1": launcher}), FakeClient([99]), 1, 90)
    assert time.monotonic() - t0 < 60
    msg = str(err.value)
    assert (msg.startswith("cluster: 0 of 1 engines registered after ")
            and f"\nSlurm job {job.job_id} FAILED" in msg), msg
    assert "\ncause: the engines exited before they all registered" in msg, msg


@pytest.mark.timeout(120)
def test_wait_for_engines_fails_at_once_when_the_controller_died(ipython_dir, tmp_path):
    """A controller that dies while the engines are awaited ends the wait with that cause, not a timeout."""
    import signal
    import threading

    import ipyparallel as ipp

    from clusterml.launch.wait import controller_process, wait_for_engines

    cluster = ipp.Cluster(n=1, profile_dir=str(tmp_path / "profile_t"), cluster_id="t", log_level=40)
    cluster.start_controller_sync()
    client = cluster.connect_client_sync()
    try:
        proc = controller_process(cluster)
        assert proc is not None and proc.pid == cluster.controller.process.pid
        killer = threading.Timer(1.0, proc.send_signal, (signal.SIGKILL,))  # while the wait runs
        killer.start()
        t0 = time.monotonic()
        with pytest.raises(ClusterStartError) as err:
            wait_for_engines(cluster, client, 1, 90, what="cluster t")  # no engine ever starts
        assert time.monotonic() - t0 < 10
        killer.join()
        assert not isinstance(err.value, ClusterTimeoutError), err.value
        msg = str(err.value)
        assert msg.startswith("cluster t: 0 of 1 engines registered after "), msg
        assert "the controller is gone" in msg, msg
        assert f"cause: the controller process (pid {proc.pid}, on this host) has exited" in msg, msg
    finally:
        client.close()
        cluster.stop_cluster_sync()
