"""The farm API that SCOOP and ipyparallel users expect, on a real local cluster of 2 MPI engines:
len, share/unshare, submit (futures), imap, map_async, map_reduce, and the refusal of nested use;
the SPMD algorithms still work on the same engines after each."""

import concurrent.futures
import operator
import time

import numpy as np
import pytest
from clienthelp import engine_env

import clusterml as cml
from clusterml.client import TaskError
from clusterml.client.farm import _dumps_function
from clusterml.spmd.comm import NestedUseError

pytestmark = pytest.mark.timeout(300)

X = np.random.default_rng(7).normal(size=(60, 3))


@pytest.fixture(scope="module")
def cluster(ipython_dir):
    c = cml.Cluster(n=2, engine_env=engine_env(), timeout=120)
    try:
        yield c
    finally:
        c.stop()


def spmd_ok(cluster):
    """The MPI world is intact: a collective algorithm on every engine gives NumPy's answer."""
    res = cluster.covariance().compute(X)
    np.testing.assert_allclose(res.covariance, np.cov(X.T), rtol=1e-12)


def main_function(src: str, name: str, **globals_):
    """A function as a notebook cell or a script defines it (module __main__: shipped by value)."""
    ns = {"__name__": "__main__", **globals_}
    exec(src, ns)
    return ns[name]


# by reference: this module is importable on the engines (tests/client is on their PYTHONPATH)
def square(x):
    return x * x


def slow_square(x, delay=0.0):
    time.sleep(delay)
    return x * x


def boom(x):
    if x == 3:
        raise KeyError(f"boom {x}")
    return x


def covariance_in_task(_):
    return cml.covariance(distributed=True).compute(np.ones((4, 2))).covariance


def covariance_serial_in_task(_):
    return float(cml.covariance().compute(np.arange(8.0).reshape(4, 2)).covariance[0, 0])


def test_len_and_share_visible_to_tasks_and_px(cluster):
    assert len(cluster) == 2 and bool(cluster)
    big = np.arange(200_000, dtype=np.float64)  # 1.6 MB
    pick = main_function("def pick(i):\n    return float(big[i]) * 2\n", "pick", big=big)
    assert cluster.share(big=big) == ["big"]
    # the shared value is left out of what goes with every task: the engines have it
    assert len(_dumps_function(cluster, pick, "t")) < 20_000
    assert cluster.map(pick, [0, 5, 199_999]) == [0.0, 10.0, 399_998.0]
    assert cluster.submit(pick, 7).result(timeout=60) == 14.0
    cluster.view.execute("_px_sum = float(big.sum())")  # a %px cell sees it too
    assert cluster.view.pull("_px_sum") == [float(big.sum())] * 2
    only_there = main_function("def pick2(i):\n    return float(big[i])\n", "pick2")  # no big here
    assert cluster.map(only_there, [3]) == [3.0]
    assert cluster.unshare("big") == []
    assert len(_dumps_function(cluster, pick, "t")) > 1_000_000  # unshared: it goes with the function
    with pytest.raises(TaskError, match=r"task 0 of 1 failed on engine \d.*NameError.*big"):
        cluster.map(only_there, [0])
    cluster.view.execute("_gone = 'big' not in globals()")
    assert cluster.view.pull("_gone") == [True, True]
    with pytest.raises(cml.ParameterError, match="identifier"):
        cluster.share(**{"not a name": 1})
    spmd_ok(cluster)


def test_submit_futures_as_completed_and_errors(cluster):
    futs = [cluster.submit(slow_square, i, delay=0.05 * (i % 3)) for i in range(6)]
    assert all(isinstance(f, concurrent.futures.Future) for f in futs)
    got = sorted(f.result() for f in concurrent.futures.as_completed(futs, timeout=120))
    assert got == sorted(i * i for i in range(6))
    done, not_done = concurrent.futures.wait(futs, timeout=60)
    assert len(done) == 6 and not not_done
    assert {f.engine_id for f in futs} <= {0, 1}
    seen = []
    f = cluster.submit(square, 9)
    f.add_done_callback(lambda fut: seen.append(fut.result()))
    assert f.result(timeout=60) == 81
    concurrent.futures.wait([f], timeout=10)
    assert seen == [81] or (time.sleep(0.5) or seen == [81])
    bad = cluster.submit(boom, 3)
    with pytest.raises(TaskError, match=r"submit\(boom\): task \d+ failed on engine \d: KeyError") as info:
        bad.result(timeout=60)
    assert isinstance(info.value.exception, KeyError) and info.value.index == bad.index
    assert isinstance(bad.exception(), TaskError)
    spmd_ok(cluster)


def test_imap_streams_and_stops_early(cluster):
    xs = list(range(20))
    assert list(cluster.imap(square, xs)) == [x * x for x in xs]
    assert sorted(cluster.imap(square, xs, ordered=False, chunksize=1)) == [x * x for x in xs]
    # the first result arrives before the slow tasks end (streaming, not a list at the end)
    t0 = time.monotonic()
    it = cluster.imap(slow_square, [0, 1, 2, 3], [0.0, 3.0, 3.0, 3.0], ordered=False, chunksize=1)
    assert next(it) == 0 and time.monotonic() - t0 < 2.5
    it.close()  # leaving early drops what has not started
    with pytest.raises(TaskError, match=r"task 3 of 5"):
        list(cluster.imap(boom, range(5), chunksize=1))
    assert cluster.map(square, range(4)) == [0, 1, 4, 9]
    spmd_ok(cluster)


def test_map_async_and_map_reduce(cluster):
    fut = cluster.map_async(square, range(30))
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=120) == [x * x for x in range(30)]
    with pytest.raises(TaskError, match="task 3 of 6"):
        cluster.map_async(boom, range(6), chunksize=1).result(timeout=120)
    assert cluster.map_reduce(square, operator.add, range(101)) == sum(x * x for x in range(101))
    concat = cluster.map_reduce(lambda x: [x], operator.add, range(25), chunksize=4)
    assert concat == list(range(25)), "partial results are folded in input order"
    assert cluster.map_reduce(square, operator.add, [], initial=5) == 5
    with pytest.raises(TypeError, match="empty"):
        cluster.map_reduce(square, operator.add, [])
    with pytest.raises(TaskError, match="task 3 of 8"):
        cluster.map_reduce(boom, operator.add, range(8), chunksize=2)
    spmd_ok(cluster)


def test_nested_use_is_refused_at_once(cluster):
    uses_cluster = main_function("def f(x):\n    return cluster.map(abs, [x])\n", "f", cluster=cluster)
    t0 = time.monotonic()
    with pytest.raises(NestedUseError, match="farm tasks run one per engine"):
        cluster.map(uses_cluster, [1, 2])
    with pytest.raises(NestedUseError, match="farm tasks run one per engine"):
        cluster.submit(uses_cluster, 1)
    with pytest.raises(TaskError, match="farm tasks run one per engine") as info:
        cluster.map(covariance_in_task, range(4), chunksize=1)
    assert isinstance(info.value.exception, NestedUseError) and "distributed=False" in str(info.value)
    assert time.monotonic() - t0 < 30, "refused, not hung"
    # the non-distributed call is fine inside a task, and the SPMD algorithms still work after
    expected = np.cov(np.arange(8.0).reshape(4, 2).T)[0, 0]
    assert cluster.map(covariance_serial_in_task, range(2)) == pytest.approx([expected] * 2, rel=1e-12)
    spmd_ok(cluster)


def test_chunk_plan_rule():
    from clusterml.client.farm import chunk_plan

    assert chunk_plan(200, 2) == 50                    # not timed yet: 2 chunks per engine
    assert chunk_plan(200, 2, 20e-6) == 100            # DEAP's microsecond evaluations: 1 per engine
    assert chunk_plan(200, 2, 2e-3) == 100             # 2 ms tasks: 0.2 s per engine, still 1
    assert chunk_plan(200, 2, 0.004) == 50             # 0.4 s per engine: 2 chunks of 0.2 s
    assert chunk_plan(200, 2, 0.01) == 25              # 1 s per engine: at most 4 chunks per engine
    assert chunk_plan(7, 3, 1.0) == 1 and chunk_plan(1, 4) == 1


def test_cancel_a_queued_task_only(cluster):
    busy = [cluster.submit(slow_square, i, delay=2.0) for i in range(2)]
    queued = cluster.submit(slow_square, 5)
    deadline = time.monotonic() + 30
    while any(f.engine_id is None and not f.done() and f._ar.engine_id is None for f in busy) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queued.cancel() and queued.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        queued.result(timeout=1)
    assert not busy[0].cancel(), "a running task cannot be cancelled"
    assert [f.result(timeout=60) for f in busy] == [0, 1]
    assert cluster.submit(square, 3).result(timeout=60) == 9
