"""The facade on one real local cluster of 3 MPI engines (started once for the module)."""

import os
import time

import numpy as np
import pandas as pd
import pytest

import clusterml as cml
from clusterml.spmd import REGISTRY

pytestmark = pytest.mark.timeout(300)

RNG = np.random.default_rng(7)
X = RNG.normal(size=(120, 4)) * [1, 10, 0.1, 3] + [0, 5, -2, 1e3]
Y = X @ RNG.normal(size=(4, 2)) + RNG.normal(scale=0.1, size=(120, 2))
COUNTS = RNG.integers(0, 5, size=(120, 5)).astype(float)
LABELS = (np.arange(120) % 3).astype(float).reshape(-1, 1)


def _model():
    return REGISTRY["linear_regression_training"]().compute(X, Y).model


# name -> (constructor args, constructor kwargs, compute inputs as a function of nothing)
CASES = {
    "low_order_moments": ((), {}, lambda: (X,)),
    "covariance": ((), {"outputMatrixType": "correlationMatrix"}, lambda: (X,)),
    "pca": ((), {"method": "svdDense"}, lambda: (X,)),
    "svd": ((), {}, lambda: (X,)),
    "pca_transform": ((), {"nComponents": 2}, lambda: (X, REGISTRY["pca"]().compute(X))),
    "linear_regression_training": ((), {}, lambda: (X, Y)),
    "linear_regression_prediction": ((), {}, lambda: (X, _model())),
    "ridge_regression_training": ((), {"ridgeParameters": 0.5}, lambda: (X, Y)),
    "ridge_regression_prediction": ((), {}, lambda: (X, REGISTRY["ridge_regression_training"]()
                                                      .compute(X, Y).model)),
    "multinomial_naive_bayes_training": ((3,), {}, lambda: (COUNTS, LABELS)),
    "multinomial_naive_bayes_prediction": ((3,), {}, lambda: (
        COUNTS, REGISTRY["multinomial_naive_bayes_training"](3).compute(COUNTS, LABELS).model)),
    "kmeans_init": ((3,), {"method": "plusPlusDense"}, lambda: (X,)),
    "kmeans": ((3,), {"maxIterations": 5}, lambda: (X, X[:3])),
    "qr": ((), {}, lambda: (X,)),
    "dbscan": ((2.0, 4), {"resultsToCompute": "computeCoreIndices|computeCoreObservations"},
               lambda: (X,)),
}
SIGNLESS = {"eigenvectors", "rightSingularMatrix", "leftSingularMatrix"}
LANDED = sorted(n for n in REGISTRY if not n.startswith("cmltest_"))


def assert_results_equal(got, want, what):
    assert isinstance(got, cml.Result), f"{what}: got {type(got).__name__}"
    assert set(got.fields()) == set(want.fields()), f"{what}: fields {got.fields()} vs {want.fields()}"
    for f in want.fields():
        assert_values_equal(getattr(got, f), getattr(want, f), f"{what}.{f}", f in SIGNLESS)


def assert_values_equal(a, b, what, signless=False):
    if isinstance(a, cml.client.EngineArray):
        a = a.gather()
    if isinstance(b, cml.Result):
        assert_results_equal(a, b, what)
    elif isinstance(b, dict):
        assert isinstance(a, dict) and set(a) == set(b), f"{what}: keys {a!r} vs {b!r}"
        for k in b:
            assert_values_equal(a[k], b[k], f"{what}[{k!r}]", signless)
    elif isinstance(b, np.ndarray):
        a = np.asarray(a)
        assert a.shape == b.shape, f"{what}: shape {a.shape} vs {b.shape}"
        if signless:
            a, b = np.abs(a), np.abs(b)
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-8, err_msg=what)
    else:
        assert a == b, f"{what}: {a!r} vs {b!r}"


@pytest.mark.parametrize("name", LANDED)
def test_each_landed_algorithm_equals_in_process(cluster, name):
    assert name in CASES, f"algorithm {name!r} landed without a facade test case: add it to CASES"
    args, kwargs, inputs = CASES[name]
    data = inputs()
    want = REGISTRY[name](*args, **kwargs).compute(*data)
    got = getattr(cluster, name)(*args, **kwargs).compute(*data)
    assert_results_equal(got, want, name)


def test_engines_report_one_world(cluster):
    assert [e["rank"] for e in cluster.engines] == [0, 1, 2]
    assert {e["size"] for e in cluster.engines} == {3}
    assert {e["version"] for e in cluster.engines} == {cml.__version__}
    assert sorted(cluster.client.ids) == [0, 1, 2]
    # every engine has clusterml imported as cml, already initialised
    assert cluster.view.apply_sync(lambda: (cml.my_procid(), cml.num_procs())) == [(0, 3), (1, 3), (2, 3)]


def test_parameters_checked_on_the_client(cluster):
    with pytest.raises(cml.ParameterError, match="estimatesToCompute"):
        cluster.low_order_moments(estimatesToCompute="nope")
    with pytest.raises(cml.ParameterError, match="distributed"):
        cluster.covariance(distributed=True)
    with pytest.raises(cml.ParameterError, match="streaming=True"):
        cluster.low_order_moments(streaming=True)
    with pytest.raises(cml.ParameterError, match="unexpected input"):
        cluster.covariance().compute(X, labels=X)
    with pytest.raises(AttributeError, match="algorithms"):
        _ = cluster.no_such_algorithm


def test_forced_disagreement_is_caught(cluster):
    with pytest.raises(cml.InconsistentResultError, match="different results") as info:
        cluster.cmltest_rank_result().compute(X)
    assert "ranks 0" in str(info.value) and "ranks 2" in str(info.value)
    # the cluster stays usable
    assert cluster.covariance().compute(X).covariance.shape == (4, 4)


def test_scatter_ref_gather(cluster):
    ref = cluster.scatter(X)
    res = cluster.cmltest_rows().compute(ref)
    assert isinstance(res.doubled, cml.client.EngineArray)
    assert res.doubled.counts == [40, 40, 40]
    assert res.doubled.shape == (120, 4)
    np.testing.assert_array_equal(res.doubled.gather(), 2 * X)
    np.testing.assert_array_equal(cluster.gather(ref), X)
    assert float(res.total[0, 0]) == 120
    # a per-row output feeds another call without leaving the engines
    again = cluster.low_order_moments().compute(res.doubled)
    np.testing.assert_allclose(again.mean, 2 * X.mean(axis=0, keepdims=True))

    # a name a %%px cell bound (each engine its own, uneven rows, rank 1 empty)
    cluster.view.execute(
        "import numpy as np\n"
        "_r = cml.my_procid()\n"
        "Z = np.arange(12.0).reshape(6, 2)[[slice(0, 2), slice(0, 0), slice(2, 6)][_r]]")
    z = cluster.covariance().compute(cluster.ref("Z"))
    np.testing.assert_allclose(z.covariance, np.cov(np.arange(12.0).reshape(6, 2).T))

    # a DataFrame, bound under a name %%px cells can use
    frame = pd.DataFrame(X, columns=list("abcd"))
    cluster.scatter(frame, name="F")
    assert [len(f) for f in cluster.view.pull("F")] == [40, 40, 40]  # bound for %%px cells
    np.testing.assert_allclose(cluster.low_order_moments().compute(cluster.ref("F")).mean,
                               X.mean(axis=0, keepdims=True))
    pd.testing.assert_frame_equal(cluster.gather("F"), frame)


def test_missing_ref_is_an_input_error_on_every_rank(cluster):
    with pytest.raises(cml.InputError, match="no variable 'nothing_here'") as info:
        cluster.covariance().compute(cluster.ref("nothing_here"))
    assert info.value.ranks == [0, 1, 2]


def test_paths_with_rank_and_read_partition(cluster, tmp_path):
    blocks = [X[:50], X[:0], X[50:]]  # rank 1 has an empty file
    for r, b in enumerate(blocks):
        if len(b):
            pd.DataFrame(b, columns=list("abcd")).to_csv(tmp_path / f"part{r}.csv", index=False)
        else:
            (tmp_path / f"part{r}.csv").write_text("")
    got = cluster.covariance().compute(str(tmp_path / "part{}.csv"))
    np.testing.assert_allclose(got.covariance, np.cov(X.T), rtol=1e-9)
    np.save(tmp_path / "all.npy", X)
    got = cluster.low_order_moments().compute(cml.read_partition(tmp_path / "all.npy"))
    np.testing.assert_allclose(got.variance, X.var(axis=0, ddof=1, keepdims=True), rtol=1e-9)


def test_error_on_one_engine(cluster, tmp_path):
    # a guarded failure (rank 2's file is missing): one InputError naming rank 2
    for r in (0, 1):
        np.save(tmp_path / f"p{r}.npy", X[:10])
    with pytest.raises(cml.InputError, match="rank 2") as info:
        cluster.covariance().compute(str(tmp_path / "p{}.npy"))
    assert info.value.ranks == [2]
    assert "no such file" in str(info.value)
    # an unguarded exception on rank 1: one ComputeError with the original type and traceback
    # (every rank raises it: compute() ends with an agreement, issue 15)
    with pytest.raises(cml.ComputeError, match=r"rank 1.*ValueError: boom on rank 1") as info:
        cluster.cmltest_raise(rank=1).compute(X)
    assert info.value.ranks == [1]
    assert "Traceback" in info.value.remote_traceback() and "cml_testalgos" in info.value.remote_traceback()
    # still usable afterwards
    assert cluster.covariance().compute(X).covariance.shape == (4, 4)


def test_recoverable_timeout(cluster):
    # every rank sleeps in Python: the interrupt reaches all of them and the cluster recovers
    t0 = time.monotonic()
    with pytest.raises(cml.ClusterTimeoutError, match=r"timed out after 2 s.*usable again") as info:
        cluster.cmltest_sleep(seconds=60, rank=-1).compute(X, timeout=2)
    assert "rank(s) 0, 1, 2" in str(info.value)
    assert time.monotonic() - t0 < 30
    got = cluster.covariance().compute(X)
    np.testing.assert_allclose(got.covariance, np.cov(X.T))


def test_facade_overhead(cluster, capsys):
    """Not an assertion on time: prints the facade's round trip next to bare ipyparallel's."""
    view = cluster.view

    def best(f, k=15):
        f()
        ts = []
        for _ in range(k):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        return 1e3 * float(np.median(ts))

    bare = best(lambda: view.apply_sync(os.getpid))
    entry = best(lambda: cluster._noop())
    noop = best(lambda: cluster.cmltest_noop().compute())
    with capsys.disabled():
        print(f"\n[overhead] bare apply_sync {bare:.1f} ms, facade entry {entry:.1f} ms, "
              f"facade no-op algorithm {noop:.1f} ms (median of 15, 3 engines)")
    assert cluster.cmltest_noop().compute().ok == 1
