"""dbscan under MPI equals sklearn.cluster.DBSCAN on all rows (rank 1 empty when size > 1)."""

import numpy as np
import pytest
from mpihelpers import expect_distributed_error, mpi_assert, my_block, rank, same_on_every_rank, size, world
from sklearn.cluster import DBSCAN
from sklearn.datasets import make_blobs, make_moons

import clusterml as cml


def shuffled(X, seed=0):
    """Rows in random order: every cluster has rows on every rank."""
    return X[np.random.default_rng(seed).permutation(len(X))]


CASES = {
    "blobs": (lambda: shuffled(make_blobs(500, centers=[[0, 0], [3, 0], [6, 0], [9, 0.5]],
                                          cluster_std=0.8, random_state=4)[0]), 0.35, 6),
    "moons": (lambda: shuffled(make_moons(300, noise=0.07, random_state=1)[0]), 0.12, 4),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_dbscan_equals_sklearn(case):
    make, eps, m = CASES[case]
    X = make()
    ref = DBSCAN(eps=eps, min_samples=m).fit(X)
    algo = cml.dbscan(eps, m, resultsToCompute="computeCoreIndices|computeCoreObservations",
                      distributed=True)
    res = algo.compute(my_block(X))
    mine = res.assignments
    mpi_assert(mine.shape == (len(my_block(X)), 1) and mine.dtype == np.int32, f"{mine.shape}")
    labels = np.vstack(world().allgather(mine)).ravel()
    mpi_assert(np.array_equal(labels, ref.labels_), "labels differ from scikit-learn's")
    mpi_assert(int(res.nClusters[0, 0]) == ref.labels_.max() + 1, f"{res.nClusters}")
    core = np.vstack(world().allgather(res.coreIndices)).ravel()
    mpi_assert(np.array_equal(core, ref.core_sample_indices_), "coreIndices")
    mpi_assert(np.array_equal(np.vstack(world().allgather(res.coreObservations)),
                              X[ref.core_sample_indices_]), "coreObservations")
    same_on_every_rank(res.nClusters, "nClusters")
    # memory: each rank held about its share of the rows, never all of them
    held = algo.held_rows_
    mpi_assert(held["slab"] <= 1.2 * len(X) / size() + 8, f"slab rows {held}")
    if size() > 1:
        mpi_assert(held["slab"] + held["halo"] < 0.8 * len(X), f"held {held} of {len(X)}")


def test_weights_as_sklearn_sample_weight():
    make, eps, m = CASES["moons"]
    X = make()
    w = np.random.default_rng(0).uniform(0.2, 3.0, size=(len(X), 1))
    ref = DBSCAN(eps=eps, min_samples=m).fit(X, sample_weight=w.ravel())
    res = cml.dbscan(eps, m, distributed=True).compute(my_block(X), my_block(w))
    labels = np.vstack(world().allgather(res.assignments)).ravel()
    mpi_assert(np.array_equal(labels, ref.labels_), "weighted labels differ from scikit-learn's")
    res = cml.dbscan(eps, m).compute(X, weights=w)
    mpi_assert(np.array_equal(res.assignments.ravel(), ref.labels_), "serial weighted labels")
    # weights on some ranks only: every rank raises, nobody waits
    if size() > 1:
        extra = [my_block(w)] if rank() == 0 else []
        expect_distributed_error(lambda: cml.dbscan(eps, m, distributed=True).compute(
            my_block(X), *extra), "weights given on rank(s) 0 only", cml.ParameterError)
    expect_distributed_error(lambda: cml.dbscan(eps, m, distributed=True).compute(
        my_block(X), my_block(np.c_[w, w])), "weights: expected one column", cml.InputError)


def test_defaults_serial_and_errors():
    X = make_moons(120, noise=0.05, random_state=3)[0]
    res = cml.dbscan(epsilon=0.2, minObservations=5).compute(X)
    ref = DBSCAN(eps=0.2, min_samples=5).fit(X)
    mpi_assert(np.array_equal(res.assignments.ravel(), ref.labels_), "serial labels")
    mpi_assert(res.coreIndices is None and res.coreObservations is None, "not asked for")
    mpi_assert(res.fields() == ("assignments", "coreIndices", "coreObservations", "nClusters"),
               f"{res.fields()}")
    # all noise, and an empty data set on some ranks
    res = cml.dbscan(1e-6, 3, distributed=True).compute(my_block(X))
    mpi_assert(np.all(res.assignments == -1) and int(res.nClusters[0, 0]) == 0, "all noise")
    expect_distributed_error(lambda: cml.dbscan(0.0, 3), "epsilon=0.0", cml.ParameterError)
    expect_distributed_error(lambda: cml.dbscan(0.5, 0), "minObservations=0", cml.ParameterError)
    expect_distributed_error(lambda: cml.dbscan(0.5, 3, resultsToCompute="computeCore"),
                             "computeCore", cml.ParameterError)
    Xbad = X.copy()
    Xbad[-1, 1] = np.inf
    expect_distributed_error(lambda: cml.dbscan(0.5, 3, distributed=True).compute(my_block(Xbad)),
                             "data", cml.InputError)


@pytest.mark.parametrize("weighted", [False, True])
def test_float_is_dbscan_of_the_float32_rows(weighted):
    make, eps, m = CASES["blobs"]
    X = make()
    w = np.random.default_rng(2).uniform(0.2, 3.0, size=(len(X), 1)) if weighted else None
    X32 = X.astype(np.float32)
    ref = DBSCAN(eps=eps, min_samples=m).fit(X32.astype(np.float64),
                                             sample_weight=None if w is None else
                                             w.astype(np.float32).ravel())
    extra = [] if w is None else [my_block(w)]
    want = "computeCoreIndices|computeCoreObservations"
    res = cml.dbscan(eps, m, resultsToCompute=want, fptype="float",
                     distributed=True).compute(my_block(X), *extra)
    dbl = cml.dbscan(eps, m, distributed=True).compute(my_block(X), *extra)
    mpi_assert(res.coreObservations.dtype == np.float32, f"{res.coreObservations.dtype}")
    mpi_assert(res.assignments.dtype == np.int32, f"{res.assignments.dtype}")
    labels = np.vstack(world().allgather(res.assignments)).ravel()
    mpi_assert(np.array_equal(labels, ref.labels_), "float labels vs scikit-learn on float32 rows")
    # rounding the rows to float32 moves no distance across eps here: the same as double
    mpi_assert(np.array_equal(res.assignments, dbl.assignments), "float vs double labels")
    core = np.vstack(world().allgather(res.coreObservations))
    mpi_assert(np.array_equal(core, X32[ref.core_sample_indices_]), "coreObservations")
    same_on_every_rank(res.nClusters, "nClusters")


@pytest.mark.parametrize("step", ["dbscan slabs", "dbscan halo flags", "dbscan labels back"])
def test_a_failing_exchange_raises_on_every_rank(step, monkeypatch):
    """An exception while one rank builds its payloads: every rank raises the same error."""
    X = make_moons(120, noise=0.05, random_state=3)[0]
    last = size() - 1
    monkeypatch.setenv("CLUSTERML_INJECT_FAULT", f"{step}@{last}")
    err = expect_distributed_error(lambda: cml.dbscan(0.2, 5, distributed=True).compute(my_block(X)),
                                   f"fault injected into step '{step}'")
    mpi_assert(err.ranks == [last] and step in str(err), f"{err}")
    same_on_every_rank(str(err), "error text")
    monkeypatch.delenv("CLUSTERML_INJECT_FAULT")
    res = cml.dbscan(0.2, 5, distributed=True).compute(my_block(X))
    labels = np.vstack(world().allgather(res.assignments)).ravel()
    mpi_assert(np.array_equal(labels, DBSCAN(eps=0.2, min_samples=5).fit(X).labels_), "after")
