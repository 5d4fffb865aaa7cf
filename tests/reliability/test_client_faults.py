"""Faults of the client's side of a cluster: the controller, two clients, a frozen engine.

* The controller process is sent SIGTERM or SIGKILL while a call waits (a broadcast
  algorithm call, ``apply``, a farm ``map``, a ``submit`` future's ``result()``), or is
  frozen with SIGSTOP: the call ends with
  a :class:`~clusterml.ControllerError` that names the controller and the look that saw it
  (its process, or the probe through the client's connection) within ``BOUND`` seconds of
  the fault; the next call says the same at once; ``restart()`` gives a new controller and
  engine set, no process of the old set remains, and the next call is correct.  The same
  for a client attached with ``Cluster.connect`` from another process.
* Two client processes attached to one cluster scatter, compute and free concurrently:
  each gets its own correct answers, and neither's frees drop the other's (or this
  client's) rows.
* An engine frozen with SIGSTOP during a call with a short timeout: the timeout error
  names its rank as alive but stopped (not dead), with SIGCONT and ``restart()`` as the
  ways on.

Each controller case costs a restart of the suite's cluster (~10-15 s on 2 cores).
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
from relhelp import HERE, Tally

import clusterml as cml

pytestmark = pytest.mark.timeout(600)

BOUND = 15.0  # seconds from the fault to the error in the notebook
CONTROLLER_CASES = [("SIGTERM", "compute"), ("SIGKILL", "apply"), ("SIGKILL", "map"),
                    ("SIGTERM", "submit"), ("SIGSTOP", "compute")]
TALLY = Tally("client faults")
X = np.random.default_rng(7).normal(size=(40, 3))


def _sleep(seconds):
    import time

    time.sleep(seconds)
    return seconds


def _register_test_algorithms(cluster):
    import cml_testalgos  # noqa: F401  (cmltest_sleep on the client)

    cluster.view.execute("import cml_testalgos", block=True)


def _long_call(cluster, kind):
    if kind == "compute":
        cluster.cmltest_sleep(seconds=120, rank=-1).compute(cluster.scatter(X), timeout=100)
    elif kind == "apply":
        cluster.apply(_sleep, 120, timeout=100)
    elif kind == "submit":
        cluster.submit(_sleep, 120).result(timeout=100)
    else:
        cluster.map(_sleep, [120] * 6, timeout=100)


def _old_world(cluster) -> list:
    procs = {p.pid: p for p in cluster._recorded_processes()}
    assert procs, "no recorded processes"
    return list(procs.values())


def _check_restart(cluster, old):
    t0 = time.monotonic()
    cluster.restart()
    restart = time.monotonic() - t0
    _register_test_algorithms(cluster)
    res = cluster.covariance().compute(cluster.scatter(X))
    assert np.allclose(res.covariance, np.cov(X.T)), "wrong covariance after restart()"
    alive = [p for p in old if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes of the old set remain after restart(): {alive}"
    return restart


def _kill_later(pid, sig, delay=1.5):
    t = threading.Timer(delay, os.kill, (pid, sig))
    t.start()
    return t


@pytest.fixture
def registered(cluster):
    _register_test_algorithms(cluster)
    return cluster


@pytest.mark.parametrize("sig,kind", CONTROLLER_CASES)
def test_controller_fault_mid_call(registered, sig, kind):
    cluster = registered
    old = _old_world(cluster)
    ctl = cluster._ipp.controller.process
    timer = _kill_later(ctl.pid, getattr(signal, sig))
    t0 = time.monotonic()
    err, ok, after = None, False, float("nan")
    try:
        with pytest.raises(cml.ControllerError) as info:
            _long_call(cluster, kind)
        err = info.value
        after = time.monotonic() - t0 - 1.5
        msg = str(err)
        assert "controller is gone" in msg and "restart()" in msg, msg
        look = "did not answer the client" if sig == "SIGSTOP" else "controller process"
        assert look in msg, f"the message should name the look that saw it ({look!r}): {msg}"
        assert after < BOUND, f"ControllerError {after:.1f} s after the {sig}"
        t1 = time.monotonic()
        with pytest.raises(cml.ControllerError, match="controller is gone"):
            cluster.covariance().compute(cluster.scatter(X))
        assert time.monotonic() - t1 < 1.0, "the next call must fail at once"
        restart = _check_restart(cluster, old)
        print(f"[controller {sig} during {kind}] error {after:.2f} s after the fault; "
              f"restart {restart:.1f} s")
        ok = True
    finally:
        timer.cancel()
        if sig == "SIGSTOP":
            try:
                os.kill(ctl.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        TALLY.record(f"controller {sig} during {kind}", ok, after)


def _job(mode, cluster, seed=0, rounds=0):
    return subprocess.Popen([sys.executable, os.path.join(HERE, "clientjob.py"), mode, cluster.cluster_id,
                             str(seed), str(rounds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _result(proc, timeout=300) -> dict:
    out, errout = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"client process failed ({proc.returncode}):\n{errout[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


def test_controller_killed_under_an_attached_client(registered):
    cluster = registered
    old = _old_world(cluster)
    ctl = cluster._ipp.controller.process
    proc = _job("wait", cluster)
    ok, after = False, float("nan")
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        t0 = time.monotonic()
        os.kill(ctl.pid, signal.SIGKILL)
        got = _result(proc)
        after = time.monotonic() - t0
        assert got["error"] == "ControllerError", got
        assert got["restart"] == "ControllerError", f"restart() of the attached client: {got}"
        assert "controller" in got["message"] and "Cluster.connect" in got["message"], got["message"]
        assert after < BOUND, f"the attached client heard of it {after:.1f} s after the SIGKILL"
        with pytest.raises(cml.ControllerError):
            cluster.apply(_sleep, 0)
        restart = _check_restart(cluster, old)
        print(f"[controller SIGKILL, attached client] error within {after:.2f} s; restart {restart:.1f} s")
        ok = True
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        TALLY.record("controller SIGKILL under an attached client", ok, after)


def test_two_clients_on_one_cluster(cluster):
    mine = np.arange(30.0).reshape(10, 3) ** 1.5
    ref = cluster.scatter(mine)
    rounds = 15
    t0 = time.monotonic()
    procs = [_job("data", cluster, seed, rounds) for seed in (1, 2)]
    ok = False
    try:
        got = [_result(p) for p in procs]
        for g in got:
            assert g["correct"] == rounds, f"wrong answers in a client: {g}"
            assert g["kept_ok"], f"a client's kept rows were dropped or replaced: {g}"
        prefixes = {n.rsplit("_scatter_", 1)[0] for g in got for n in g["names"]}
        assert len(prefixes) == 2, f"the two clients share engine-side names: {prefixes}"
        assert not ref.name.startswith(tuple(prefixes))
        res = cluster.low_order_moments().compute(ref)
        assert np.allclose(res.mean, mine.mean(0)), "the other clients' frees dropped this client's rows"
        print(f"[two clients] 2 x {rounds} concurrent scatter/compute/free rounds correct in "
              f"{time.monotonic() - t0:.1f} s")
        ok = True
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
        cluster.free(ref)
        TALLY.record("two client processes on one cluster", ok, time.monotonic() - t0)


def test_frozen_engine_is_reported_as_stopped(registered):
    cluster = registered
    pid = cluster.engines[1]["pid"]
    timer = _kill_later(pid, signal.SIGSTOP, delay=0.5)
    t0 = time.monotonic()
    ok, elapsed = False, float("nan")
    try:
        with pytest.raises(cml.ClusterTimeoutError) as info:
            cluster.cmltest_sleep(seconds=2, rank=-1).compute(cluster.scatter(X), timeout=4)
        elapsed = time.monotonic() - t0
        msg = str(info.value)
        assert "Rank(s) 1" in msg and "alive but stopped" in msg and "SIGCONT" in msg, msg
        assert "restart()" in msg and "died" not in msg, msg
        assert elapsed < 4 + 5 + 5, f"timeout error after {elapsed:.1f} s"
        os.kill(pid, signal.SIGCONT)
        t1 = time.monotonic()
        cluster.restart()
        _register_test_algorithms(cluster)
        res = cluster.covariance().compute(cluster.scatter(X))
        assert np.allclose(res.covariance, np.cov(X.T))
        print(f"[frozen engine] ClusterTimeoutError naming the stopped rank after {elapsed:.1f} s "
              f"(timeout 4 s); restart {time.monotonic() - t1:.1f} s")
        ok = True
    finally:
        timer.cancel()
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        TALLY.record("engine SIGSTOPped during a call", ok, elapsed)


def test_stop_with_a_dead_controller(ipython_dir):
    from relhelp import reliability_engine_env

    c = cml.Cluster(n=2, engine_env=reliability_engine_env(), timeout=60)
    took = float("nan")
    try:
        old = _old_world(c)
        os.kill(c._ipp.controller.process.pid, signal.SIGKILL)
        time.sleep(0.5)
        t0 = time.monotonic()
        c.stop()
        took = time.monotonic() - t0
    finally:
        c.stop()
    alive = [p for p in old if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes left after stop() with a dead controller: {alive}"
    assert took < 20, f"stop() took {took:.1f} s with a dead controller"
    print(f"[controller SIGKILLed, then stop()] {took:.1f} s, nothing left")
    TALLY.record("stop() with a SIGKILLed controller", True, took)


def test_summary(capsys):
    with capsys.disabled():
        print("\n" + TALLY.line())
