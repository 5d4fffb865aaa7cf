"""No controller, engine, mpiexec or hydra proxy remains: after stop() (also test_load's 10
clusters), after the client is SIGKILLed and the documented clean-up runs
(``clusterml.client.stop_all()``, what ``clusterml stop --all`` runs, from a new process),
and after an engine dies."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest
from clienthelp import my_processes
from relhelp import ROOT, reliability_engine_env

import clusterml as cml

pytestmark = pytest.mark.timeout(400)


def _wait_none(ipdir, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        left = my_processes(ipdir)
        if not left or time.monotonic() > deadline:
            return [(p.pid, p.name()) for p in left]
        time.sleep(0.2)


CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    import numpy as np
    import clusterml as cml
    c = cml.Cluster(n=2, engine_env={env!r})
    print("READY", " ".join(str(e["pid"]) for e in c.engines), flush=True)
    X = np.random.default_rng(0).normal(size=(40, 3))
    while True:  # busy with calls when it is killed
        try:
            c.covariance().compute(X)
        except Exception as exc:
            print("ERROR", type(exc).__name__, flush=True)
            time.sleep(0.5)
""")


@pytest.mark.parametrize("engine_dies_first", [False, True],
                         ids=["client killed", "engine then client killed"])
def test_killed_client_then_documented_cleanup(tmp_path, engine_dies_first):
    ipdir = str(tmp_path / "ipython")
    os.makedirs(ipdir, mode=0o700)
    env = dict(os.environ, IPYTHONDIR=ipdir)
    code = CHILD.format(root=ROOT, env=reliability_engine_env())
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY"), f"the client did not start a cluster: {line!r}"
        engines = [int(p) for p in line.split()[1:]]
        time.sleep(1.0)  # calls are running
        if engine_dies_first:
            psutil.Process(engines[1]).send_signal(signal.SIGKILL)
            time.sleep(2.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert my_processes(ipdir), "a SIGKILLed client leaves its controller running (documented)"
    # the documented clean-up, from a new process (a restarted kernel, a terminal)
    r = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {ROOT!r}); "
                        "from clusterml.client.cluster import stop_all, list_clusters; "
                        "print(stop_all()); print(list_clusters())"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    stopped, listed = r.stdout.strip().splitlines()[-2:]
    assert stopped != "[]" and listed == "[]", r.stdout
    assert _wait_none(ipdir) == []


def test_engine_dies_then_stop(tmp_path):
    X = np.random.default_rng(2).normal(size=(30, 2))
    c = cml.Cluster(n=2, engine_env=reliability_engine_env(), timeout=120)
    try:
        procs = c._recorded_processes()
        assert len(procs) >= 4  # controller (and its schedulers), mpiexec, proxy, engines
        psutil.Process(c.engines[0]["pid"]).send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(cml.EngineError, match="restart"):
            c.covariance().compute(X)
        assert time.monotonic() - t0 < 30
    finally:
        c.stop()
    psutil.wait_procs(procs, timeout=20)
    left = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"left after an engine died and stop(): {left}"
