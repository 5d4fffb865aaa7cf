"""The fault matrix through the facade, on one cluster of 3 MPI engines.

Every algorithm x {unreadable input, invalid value, an exception raised inside the
computation} x {rank 0, the last rank, every rank}: one exception in the notebook, of the same
class as under mpiexec, naming exactly the failing ranks, within 30 s; the cluster stays
usable and the next call gives the same result as before the fault.

Then the SIGKILL rows: an engine kills itself inside the call (``step@rank:kill``); the facade
reports an EngineError naming the ranks within 30 s, ``cluster.restart()`` brings a new MPI
world and the next call is correct, and no process of the killed world remains.  Each costs
a restart (~10-15 s on 2 cores), so by default a representative subset runs
(``KILL_ROWS``); ``CLUSTERML_RELIABILITY_FULL=1`` runs every algorithm x every target.
"""

import os
import time

import numpy as np
import psutil
import pytest
from faultcases import N_CLASSES, block, build, cases, landed_algorithms
from relhelp import ERROR_WITHIN, Tally

import clusterml as cml
from clusterml.client.cluster import EngineArray

pytestmark = pytest.mark.timeout(600)

N = 3
TABLES = build(N)
CASES = cases(TABLES)
ALGORITHMS = landed_algorithms()
FAULTS = ["unreadable input", "invalid value", "exception"]
TARGETS = ["rank 0", "last rank", "every rank"]
TARGET_RANKS = {"rank 0": [0], "last rank": [N - 1], "every rank": list(range(N))}
# (algorithm, target): three collective patterns -- a fold (covariance), an iterative loop
# killed in its first iteration (kmeans), gather + root broadcast + rank-local work (svd)
KILL_ROWS = [(a, t) for a in ("covariance", "kmeans", "svd") for t in TARGETS]
if os.environ.get("CLUSTERML_RELIABILITY_FULL"):
    KILL_ROWS = [(a, t) for a in ALGORITHMS for t in TARGETS]

TALLY = Tally(f"facade fault matrix, {N} engines")
KILL_TALLY = Tally(f"facade SIGKILL rows, {N} engines")


def _setenv(key, value):
    import os

    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def canonical(res):
    """A comparable form of a facade result (per-row outputs gathered)."""
    if isinstance(res, cml.Result):
        return {k: canonical(getattr(res, k)) for k in res.fields()}
    if isinstance(res, EngineArray):
        return canonical(res.gather())
    if isinstance(res, dict):
        return {k: canonical(v) for k, v in res.items()}
    if isinstance(res, np.ndarray):
        return (res.dtype.str, res.shape, res.tobytes())
    return res


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("facade-faults")
    for key, A in TABLES.items():
        for r in range(N):
            np.save(d / f"{key}-good-{r}.npy", block(A, r))
            for target, ranks in TARGET_RANKS.items():
                path = d / f"{key}-{target.replace(' ', '')}-{r}.npy"
                if r in ranks:
                    path.write_bytes(b"\x93NUMPY garbage, not an array" * 3)
                else:
                    np.save(path, block(A, r))
    return d


def good_inputs(name):
    _, _, tables, extras, _ = CASES[name]
    out = {k: TABLES[key].copy() for k, key in tables.items()}
    out.update(extras)
    return out


def call(cluster, name, inputs, timeout=None):
    args, kwargs, _, _, _ = CASES[name]
    return getattr(cluster, name)(*args, **kwargs).compute(**inputs, timeout=timeout)


@pytest.fixture(scope="module")
def healthy(cluster):
    return {name: canonical(call(cluster, name, good_inputs(name))) for name in ALGORITHMS}


def bad_inputs(name, fault, target, files):
    _, _, tables, _, _ = CASES[name]
    ranks = TARGET_RANKS[target]
    inputs = good_inputs(name)
    if fault == "unreadable input":
        inputs["data"] = str(files / f"{tables['data']}-{target.replace(' ', '')}-{{}}.npy")
        for k, key in tables.items():
            if k != "data":
                inputs[k] = str(files / f"{key}-good-{{}}.npy")
        return inputs, cml.InputError, "cannot read"
    if fault == "invalid value":
        # the rows the scatter sends to the targeted ranks get the bad value
        for r in ranks:
            row = r * len(block(TABLES["X"], 0)) + 2
            if name == "multinomial_naive_bayes_training":
                inputs["labels"][row, 0] = N_CLASSES + 4
            elif name == "multinomial_naive_bayes_prediction":
                inputs["data"][row, 1] = -2.0
            else:
                inputs["data"][row, 1] = np.nan if r % 2 == 0 else -np.inf
        text = {"multinomial_naive_bayes_training": f"outside [0, {N_CLASSES})",
                "multinomial_naive_bayes_prediction": "non-negative counts"}.get(name, "must be finite")
        return inputs, cml.InputError, text
    return inputs, cml.ComputeError, "fault injected"


def test_every_algorithm_has_a_case():
    assert not [n for n in ALGORITHMS if n not in CASES]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("name", ALGORITHMS)
def test_fault(cluster, healthy, files, name, fault, target):
    step = CASES[name][4]
    inputs, cls, text = bad_inputs(name, fault, target, files)
    before = {k: v.copy() for k, v in inputs.items() if isinstance(v, np.ndarray)}
    if fault == "exception":
        where = "*" if target == "every rank" else str(TARGET_RANKS[target][0])
        cluster.apply(_setenv, "CLUSTERML_INJECT_FAULT", f"{step}@{where}")
    t0 = time.monotonic()
    err = None
    try:
        # a hang would wait for the call's timeout; 60 s turns it into a failure, not a stall
        call(cluster, name, inputs, timeout=60)
    except cml.DistributedError as exc:
        err = exc
    finally:
        elapsed = time.monotonic() - t0
        if fault == "exception":
            cluster.apply(_setenv, "CLUSTERML_INJECT_FAULT", None)
    ok = False
    try:
        assert isinstance(err, cls) and not isinstance(err, cml.ClusterTimeoutError), \
            f"expected {cls.__name__}, got {err!r}"
        assert text in str(err), f"{text!r} not in {str(err)!r}"
        assert err.ranks == TARGET_RANKS[target], f"ranks {err.ranks} != {TARGET_RANKS[target]}"
        assert f"{name}.compute" in str(err)
        assert elapsed < ERROR_WITHIN, f"error after {elapsed:.1f} s"
        for k, v in before.items():
            np.testing.assert_array_equal(inputs[k], v, err_msg=f"the user's {k} was modified")
        assert canonical(call(cluster, name, good_inputs(name))) == healthy[name], \
            "the call after the fault differs from the call before"
        ok = True
    finally:
        TALLY.record(f"{name}/{fault}/{target}", ok, elapsed,
                     hang=isinstance(err, cml.ClusterTimeoutError))


def _world_processes(cluster):
    """Engines, mpiexec / hydra and controller of the cluster's current MPI world."""
    procs = cluster._recorded_processes()
    return {p.pid: p for p in procs}


@pytest.mark.parametrize("name,target", KILL_ROWS)
def test_sigkill_row(cluster, healthy, name, target):
    step = CASES[name][4]
    where = "*" if target == "every rank" else str(TARGET_RANKS[target][0])
    old = _world_processes(cluster)
    assert old, "no recorded processes"
    cluster.apply(_setenv, "CLUSTERML_INJECT_FAULT", f"{step}@{where}:kill")
    t0 = time.monotonic()
    err = None
    try:
        call(cluster, name, good_inputs(name), timeout=60)
    except cml.DistributedError as exc:
        err = exc
    elapsed = time.monotonic() - t0
    ok = False
    try:
        assert isinstance(err, cml.EngineError) and not isinstance(err, cml.ClusterTimeoutError), \
            f"expected EngineError, got {err!r}"
        assert "restart()" in str(err)
        # the killed rank is named; MPICH then ends its whole world, so others may be too
        assert err.ranks and set(err.ranks) <= set(range(N)), f"ranks {err.ranks}: {err}"
        if target != "every rank":
            assert TARGET_RANKS[target][0] in err.ranks, f"ranks {err.ranks}: {err}"
        assert elapsed < ERROR_WITHIN, f"error after {elapsed:.1f} s"
        with pytest.raises(cml.EngineError, match="restart"):
            call(cluster, name, good_inputs(name))
        cluster.restart()
        # the new world has a fresh environment: no injected fault
        assert canonical(call(cluster, name, good_inputs(name))) == healthy[name]
        alive = [p for p in old.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"processes of the killed world remain: {alive}"
        ok = True
    finally:
        KILL_TALLY.record(f"{name}/{target}", ok, elapsed,
                          hang=isinstance(err, cml.ClusterTimeoutError))


def test_summary(capsys):
    with capsys.disabled():
        print("\n" + TALLY.line() + "\n" + KILL_TALLY.line() + " (rows: "
              + ", ".join(c for c, _, _ in KILL_TALLY.rows) + ")")
    assert TALLY.tried == len(ALGORITHMS) * len(FAULTS) * len(TARGETS)
    assert TALLY.passed == TALLY.tried and TALLY.hangs == 0
    assert KILL_TALLY.tried == len(KILL_ROWS)
    assert KILL_TALLY.passed == KILL_TALLY.tried and KILL_TALLY.hangs == 0
