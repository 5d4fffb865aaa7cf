"""Load: 1,000 consecutive facade calls, and 10 clusters started and stopped in a row.

Memory of the client and the engines must stay flat, and no file descriptor, thread or
process may leak.  The numbers are printed (they go into docs/reliability.md); the bounds
asserted are generous (a leak of one per-row output per call, 10 KB of assignments, or
one descriptor per call would break them), since other jobs share the machine.
"""

import gc
import os
import time

import numpy as np
import psutil
import pytest
from clienthelp import my_processes
from relhelp import reliability_engine_env

import clusterml as cml
from clusterml.client.cluster import list_clusters

pytestmark = pytest.mark.timeout(900)

MB = 2 ** 20
CALLS = 1000


def _store_size():
    from clusterml.spmd import remote

    return len(remote.STORE)


def snapshot(cluster):
    gc.collect()
    me = psutil.Process()
    engines = [psutil.Process(e["pid"]) for e in cluster.engines]
    ctrl = psutil.Process(cluster._ipp.controller.pid)
    return {
        "client_rss": me.memory_info().rss / MB,
        "client_fds": me.num_fds(),
        "client_threads": me.num_threads(),
        "engine_rss": [p.memory_info().rss / MB for p in engines],
        "engine_fds": [p.num_fds() for p in engines],
        "controller_rss": ctrl.memory_info().rss / MB,
        "controller_fds": ctrl.num_fds(),
        "store": cluster.apply(_store_size),
    }


def fmt(s):
    return (f"client {s['client_rss']:.1f} MB / {s['client_fds']} fds / {s['client_threads']} "
            f"threads; engines {', '.join(f'{r:.1f}' for r in s['engine_rss'])} MB / "
            f"{', '.join(map(str, s['engine_fds']))} fds; controller {s['controller_rss']:.1f} MB / "
            f"{s['controller_fds']} fds; engine store {s['store']}")


def test_1000_consecutive_calls(cluster, tmp_path, capsys):
    X = np.random.default_rng(5).normal(size=(30, 3))
    for r in range(cluster.n):
        np.save(tmp_path / f"part{r}.npy", X[r * 10:(r + 1) * 10])
    path = str(tmp_path / "part{}.npy")
    C = X[:3].copy()
    want_mean = X.mean(axis=0, keepdims=True)
    snaps = {}
    t0 = None
    for i in range(CALLS + 50):
        if i == 50:
            t0 = time.monotonic()
        if i - 50 in (0, CALLS // 2, CALLS):
            snaps[i - 50] = snapshot(cluster)
        if i % 2:
            res = cluster.low_order_moments().compute(path)
            assert np.allclose(res.mean, want_mean)
        else:
            # a per-row output (assignments) is kept on the engines until the handle is dropped
            res = cluster.kmeans(3, 2).compute(path, C)
            assert res.assignments.shape == (30, 1)
        if i == CALLS + 49:
            per_call = (time.monotonic() - t0) / CALLS
            del res
            snaps[CALLS] = snapshot(cluster)
    first, mid, last = snaps[0], snaps[CALLS // 2], snaps[CALLS]
    with capsys.disabled():
        print(f"\n[load] {CALLS} facade calls, {1e3 * per_call:.1f} ms per call")
        for k, s in snaps.items():
            print(f"[load] after {k:4d} calls: {fmt(s)}")
    assert last["client_fds"] <= first["client_fds"] + 2, (first, last)
    assert last["client_threads"] <= first["client_threads"] + 1, (first, last)
    assert last["client_rss"] - first["client_rss"] < 30, (first, last)
    for a, b in zip(first["engine_rss"], last["engine_rss"], strict=True):
        assert b - a < 15, (first, last)
    # flat once warm: the second 500 calls add (almost) nothing
    for a, b in zip(mid["engine_rss"], last["engine_rss"], strict=True):
        assert b - a < 5, (mid, last)
    assert last["client_rss"] - mid["client_rss"] < 5, (mid, last)
    for a, b in zip(first["engine_fds"], last["engine_fds"], strict=True):
        assert b <= a + 2, (first, last)
    # dropped per-row outputs are forgotten on the engines at the next call (they used to pile
    # up, one per kmeans call: 500 here); a few wait for the client's garbage collector
    assert max(last["store"]) <= 100 and max(mid["store"]) <= 100, (mid["store"], last["store"])


def test_10_clusters_in_a_row(cluster, capsys):
    baseline = {p.pid for p in my_processes()}  # the suite's shared cluster
    me = psutil.Process()
    rows = []
    X = np.random.default_rng(1).normal(size=(20, 2))
    for i in range(10):
        gc.collect()
        before = (me.memory_info().rss / MB, me.num_fds(), me.num_threads(), len(me.children()))
        t0 = time.monotonic()
        c = cml.Cluster(n=2, engine_env=reliability_engine_env(), timeout=120)
        started = time.monotonic() - t0
        pids = {p.pid for p in c._recorded_processes()}
        np.testing.assert_allclose(c.covariance().compute(X).covariance, np.cov(X.T))
        t0 = time.monotonic()
        c.stop()
        stopped = time.monotonic() - t0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            left = [p for p in my_processes() if p.pid not in baseline]
            if not left:
                break
            time.sleep(0.2)
        assert not left, f"cluster {i}: processes left after stop(): {left}"
        assert not [p for p in pids if psutil.pid_exists(p) and
                    psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        gc.collect()
        after = (me.memory_info().rss / MB, me.num_fds(), me.num_threads(), len(me.children()))
        rows.append((started, stopped, before, after))
    with capsys.disabled():
        print(f"\n[load] 10 clusters of 2 engines started and stopped: start "
              f"{min(r[0] for r in rows):.1f}-{max(r[0] for r in rows):.1f} s, stop "
              f"{min(r[1] for r in rows):.1f}-{max(r[1] for r in rows):.1f} s")
        for k in (0, 4, 9):
            b, a = rows[k][2], rows[k][3]
            print(f"[load] cluster {k + 1}: client {b[0]:.1f} -> {a[0]:.1f} MB, fds {b[1]} -> {a[1]}, "
                  f"threads {b[2]} -> {a[2]}, child processes {b[3]} -> {a[3]}")
    first, last = rows[0][2], rows[-1][3]
    assert last[1] <= first[1] + 2, f"fds {first[1]} -> {last[1]}"
    assert last[2] <= first[2] + 1, f"threads {first[2]} -> {last[2]}"
    assert last[3] == first[3], f"child processes {first[3]} -> {last[3]}"
    assert last[0] - first[0] < 40, f"client RSS {first[0]:.1f} -> {last[0]:.1f} MB"
    # only the shared cluster is still recorded, and no stopped cluster left files behind
    assert [c["cluster_id"] for c in list_clusters()] == [cluster.cluster_id]
    pdir = cluster._ipp.profile_dir
    leftovers = [f for f in os.listdir(os.path.join(pdir, "log")) + os.listdir(os.path.join(pdir, "security"))
                 if cluster.cluster_id not in f]
    assert not leftovers, leftovers
