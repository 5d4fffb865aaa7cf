"""Clusters of their own: a stuck timeout, an engine killed with SIGKILL, restart(),
connect(), and a client killed with SIGKILL followed by stop_all() -- no process left after any."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest
from clienthelp import HERE, engine_env, my_processes, wait_no_processes

import clusterml as cml
from clusterml.client.cluster import list_clusters, stop_all

pytestmark = pytest.mark.timeout(400)

X = np.random.default_rng(3).normal(size=(60, 3))


def _ok(cluster):
    np.testing.assert_allclose(cluster.covariance().compute(X).covariance, np.cov(X.T))


def test_stuck_timeout_kill_and_restart(capsys):
    import cml_testalgos  # noqa: F401

    with cml.Cluster(n=2, engine_env=engine_env(), timeout=60) as cluster:
        cluster.view.execute("import cml_testalgos")
        first_pids = [e["pid"] for e in cluster.engines]

        # rank 1 sleeps outside MPI, rank 0 waits in a clusterml collective: since issue 15 that
        # wait polls, so the interrupt frees both ranks and the engines are usable again
        with pytest.raises(cml.ClusterTimeoutError, match=r"timed out after 3 s") as info:
            cluster.cmltest_sleep(seconds=120, rank=1).compute(X, timeout=3)
        msg = str(info.value)
        assert "cmltest_sleep.compute" in msg and "rank(s) 0" in msg and "usable again" in msg
        _ok(cluster)

        t0 = time.monotonic()
        cluster.restart()
        restart_s = time.monotonic() - t0
        assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                       for p in first_pids)
        cluster.view.execute("import cml_testalgos")
        _ok(cluster)

        # SIGKILL one engine during a call: detected (not waited on), reported with the rank
        victim = cluster.engines[1]["pid"]
        t0 = time.monotonic()
        killer = psutil.Process(victim)

        def kill_soon():
            time.sleep(1.0)
            killer.send_signal(signal.SIGKILL)

        import threading

        threading.Thread(target=kill_soon, daemon=True).start()
        with pytest.raises(cml.EngineError, match=r"rank\(s\) .*1.* died during cmltest_sleep") as info:
            cluster.cmltest_sleep(seconds=30, rank=0).compute(X)
        detect_s = time.monotonic() - t0 - 1.0
        assert "restart()" in str(info.value)
        with pytest.raises(cml.EngineError):
            cluster.covariance().compute(X)

        t0 = time.monotonic()
        cluster.restart()
        restart2_s = time.monotonic() - t0
        _ok(cluster)
        assert [e["rank"] for e in cluster.engines] == [0, 1]
    assert wait_no_processes() == []
    with capsys.disabled():
        print(f"\n[lifecycle] restart after stuck timeout {restart_s:.1f} s; SIGKILLed engine "
              f"detected in {detect_s:.2f} s; restart after kill {restart2_s:.1f} s")


def test_killed_client_then_stop_all_and_connect(ipython_dir):
    """A client process killed with SIGKILL leaves its cluster running; connect() attaches to it
    and stop_all() stops everything the record names."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(os.path.dirname(HERE))!r})
        import clusterml as cml
        c = cml.Cluster(n=2, engine_env={engine_env()!r})
        print("READY", c.cluster_id, flush=True)
        time.sleep(600)
    """)
    env = dict(os.environ, IPYTHONDIR=ipython_dir)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while not line.startswith("READY") and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert line.startswith("READY"), f"child did not start a cluster: {line!r}"
        cid = line.split()[1]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert my_processes(), "the killed client's cluster should still be running"
    listed = {c["cluster_id"]: c for c in list_clusters()}
    assert cid in listed and listed[cid]["owner_alive"] is False and listed[cid]["running"]

    # attach to the orphan: it works, and stop() on an attached cluster only disconnects
    attached = cml.Cluster.connect(cluster_id=cid)
    assert attached.n == 2
    _ok(attached)
    attached.stop()
    assert my_processes()

    assert stop_all() == [cid]
    assert wait_no_processes() == []
    assert list_clusters() == []


def test_next_start_reaps_orphans(ipython_dir):
    """The next Cluster started with the same profile stops what a killed client left."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(os.path.dirname(HERE))!r})
        import clusterml as cml
        c = cml.Cluster(n=2, engine_env={engine_env()!r})
        print("READY", c.cluster_id, flush=True)
        time.sleep(600)
    """)
    env = dict(os.environ, IPYTHONDIR=ipython_dir)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY"), line
        orphan = line.split()[1]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    orphan_pids = {p.pid for p in my_processes()}
    assert orphan_pids
    with cml.Cluster(n=2, engine_env=engine_env()) as cluster:
        assert orphan not in {c["cluster_id"] for c in list_clusters()}
        assert not orphan_pids & {p.pid for p in my_processes()}
        _ok(cluster)
    assert wait_no_processes() == []


def test_interpreter_exit_stops_the_cluster(ipython_dir):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(os.path.dirname(HERE))!r})
        import clusterml as cml
        c = cml.Cluster(n=2, engine_env={engine_env()!r})
        print("READY", c.cluster_id, flush=True)
        # no stop(): the interpreter exits here
    """)
    env = dict(os.environ, IPYTHONDIR=ipython_dir)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=180)
    assert proc.returncode == 0 and "READY" in proc.stdout, proc.stderr[-3000:]
    assert wait_no_processes(timeout=5) == []
    assert list_clusters() == []


def test_local_profile_env_and_timeout_reach_the_cluster(ipython_dir):
    """`clusterml profile install --env` reaches local engines; the profile's engine_timeout is used."""
    env = subprocess.run(
        [sys.executable, "-m", "clusterml", "profile", "install", "--name", "clusterml-local",
         "--env", "CML_LOCAL_PROBE=a b'c", "--engine-timeout", "97"],
        capture_output=True, text=True, env=dict(os.environ, IPYTHONDIR=ipython_dir), timeout=120)
    assert env.returncode == 0, env.stderr
    with cml.Cluster(n=2, profile="clusterml-local", engine_env=engine_env()) as cluster:
        assert cluster._engine_timeout() == 97  # nothing hard-coded overrides the profile
        got = cluster.apply(lambda: __import__("os").environ.get("CML_LOCAL_PROBE"))
        assert got == ["a b'c", "a b'c"]
        _ok(cluster)
    assert wait_no_processes() == []
