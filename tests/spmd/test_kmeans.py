"""kmeans (Lloyd) under MPI vs scikit-learn on all rows; bad input raises everywhere."""

import os

import numpy as np
import pytest
from mpihelpers import (
    expect_distributed_error,
    mpi_allclose,
    mpi_assert,
    my_block,
    rank,
    same_on_every_rank,
    size,
    uneven_counts,
    world,
)
from sklearn.cluster import KMeans

import clusterml as cml


def blobs(n_per=60, centres=5, d=4, seed=3, offset=0.0):
    rng = np.random.default_rng(seed)
    locs = rng.normal(scale=6.0, size=(centres, d))
    X = np.vstack([rng.normal(loc=c, size=(n_per, d)) for c in locs])
    return X[rng.permutation(len(X))] + offset


def gather_rows(local):
    return np.vstack(world().allgather(local))


def sk(X, C0, max_iter):
    return KMeans(len(C0), init=C0, n_init=1, tol=0.0, algorithm="lloyd", max_iter=max_iter).fit(X)


def shared(res):
    """The fields every rank must hold identically (assignments are per rank)."""
    return {k: v for k, v in res.to_dict().items() if k != "assignments"}


@pytest.mark.parametrize("max_iter", [2, 300])
@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_lloyd_matches_scikit_learn(max_iter, offset):
    X = blobs(offset=offset)
    C0 = X[:5].copy()
    ref = sk(X, C0, max_iter)
    res = cml.kmeans(5, max_iter, distributed=True).compute(my_block(X), C0)
    same_on_every_rank(shared(res))
    mpi_allclose(res.centroids, ref.cluster_centers_, rtol=1e-10, atol=1e-9 * max(1, offset),
                 what="centroids")
    mpi_allclose(res.objectiveFunction, [[ref.inertia_]], rtol=1e-9, what="objective")
    mpi_assert(res.objectiveFunction.shape == (1, 1) and res.nIterations.shape == (1, 1))
    # daal4py's count: the iteration that finds the objective unchanged counts too
    expected = min(ref.n_iter_ + 1, max_iter) if ref.n_iter_ < max_iter else max_iter
    mpi_assert(int(res.nIterations[0, 0]) == expected, (res.nIterations, ref.n_iter_))
    mine = res.assignments
    mpi_assert(mine.shape == (len(my_block(X)), 1) and mine.dtype == np.int32, mine.shape)
    mpi_assert(np.array_equal(gather_rows(mine).ravel(), ref.labels_), "assignments")
    if max_iter == 300:
        mpi_assert(ref.n_iter_ < 300, "the reference must have converged")


def test_zero_iterations_predicts():
    X = blobs()
    C0 = X[[1, 7, 30]].copy()
    res = cml.kmeans(3, 0, distributed=True).compute(my_block(X), C0)
    D = ((my_block(X)[:, None] - C0[None]) ** 2).sum(-1)
    mpi_assert(np.array_equal(res.assignments.ravel(), D.argmin(1)), "local prediction")
    mpi_assert(np.array_equal(res.centroids, C0) and int(res.nIterations[0, 0]) == 0)
    Dall = ((X[:, None] - C0[None]) ** 2).sum(-1)
    mpi_allclose(res.objectiveFunction, [[Dall.min(1).sum()]], rtol=1e-12, what="objective")


def test_empty_cluster_and_empty_rank():
    X = blobs()
    C0 = np.vstack([X[:3], [[100.0] * 4]])          # nothing is near the last centroid
    ref = sk(X, C0, 300)
    counts = uneven_counts(len(X), size())
    res = cml.kmeans(4, 300, distributed=True).compute(my_block(X, counts), C0)
    same_on_every_rank(shared(res))
    mpi_allclose(res.centroids, ref.cluster_centers_, rtol=1e-10, what="centroids")
    mpi_assert(np.array_equal(gather_rows(res.assignments).ravel(), ref.labels_), "labels")


def test_init_then_lloyd_from_files(shared_tmp):
    X = blobs()
    path = os.path.join(shared_tmp, "part{}.csv")
    np.savetxt(path.format(rank()), my_block(X), delimiter=",")
    world().Barrier()
    init = cml.kmeans_init(5, method="plusPlusDense", distributed=True).compute(path)
    res = cml.kmeans(5, 100, distributed=True).compute(path, init.centroids)
    ref_init = cml.kmeans_init(5, method="plusPlusDense").compute(X)
    mpi_allclose(init.centroids, ref_init.centroids, rtol=1e-15, atol=0, what="init from CSV")
    ref = sk(X, ref_init.centroids, 100)
    mpi_allclose(res.centroids, ref.cluster_centers_, rtol=1e-9, what="centroids")
    no_assign = cml.kmeans(5, 100, assignFlag=False, distributed=True).compute(path, init)
    mpi_assert(no_assign.assignments is None)
    mpi_allclose(no_assign.centroids, res.centroids, rtol=0, atol=0, what="same without assignments")


def test_serial_mode_is_local():
    X = blobs()
    mine = my_block(X)
    if len(mine) >= 3:
        res = cml.kmeans(3, 10).compute(mine, mine[:3])
        ok = np.allclose(res.centroids, sk(mine, mine[:3], 10).cluster_centers_)
    else:
        ok = True
    mpi_assert(ok, "serial k-means on the local block")


# --------------------------------------------------------------------------
# bad input: a clear DistributedError on every rank, never a hang


def test_too_many_clusters():
    X = blobs()[:6]
    expect_distributed_error(lambda: cml.kmeans(7, 5, distributed=True).compute(my_block(X), X[:1]),
                             match="nClusters=7 but only 6 rows", cls=cml.InputError)


def test_wrong_centroid_shape():
    X = blobs()
    expect_distributed_error(lambda: cml.kmeans(3, 5, distributed=True).compute(my_block(X), X[:2]),
                             match="expected (3, 4)", cls=cml.InputError)
    expect_distributed_error(
        lambda: cml.kmeans(3, 5, distributed=True).compute(my_block(X), X[:3, :2]),
        match="inputCentroids has shape (3, 2)", cls=cml.InputError)


def test_centroids_only_wrong_on_one_rank():
    X = blobs()
    C0 = X[:3].copy()
    if rank() == size() - 1:
        C0 = C0[:, :2]
    expect_distributed_error(lambda: cml.kmeans(3, 5, distributed=True).compute(my_block(X), C0),
                             match="inputCentroids has shape", cls=cml.InputError)


def test_centroids_differ_between_ranks():
    X = blobs()
    C0 = X[:3] + (rank() if size() > 1 else 0)
    if size() > 1:
        expect_distributed_error(lambda: cml.kmeans(3, 5, distributed=True).compute(my_block(X), C0),
                                 match="inputCentroids differ between ranks", cls=cml.InputError)


def test_nan_in_data_on_one_rank():
    X = blobs()
    counts = uneven_counts(len(X), size())
    bad = X.copy()
    bad[len(X) - 1, 2] = np.nan                       # the last row: on the last non-empty rank
    holder = max(r for r, c in enumerate(counts) if c)
    err = expect_distributed_error(
        lambda: cml.kmeans(3, 5, distributed=True).compute(my_block(bad, counts), X[:3]),
        match="nan", cls=cml.InputError)
    mpi_assert(err.ranks == [holder], (err.ranks, holder))
    expect_distributed_error(
        lambda: cml.kmeans_init(3, method="plusPlusDense", distributed=True).compute(
            my_block(bad, counts)), match="nan", cls=cml.InputError)


def test_nan_in_centroids():
    X = blobs()
    C0 = X[:3].copy()
    C0[1, 1] = np.inf
    expect_distributed_error(lambda: cml.kmeans(3, 5, distributed=True).compute(my_block(X), C0),
                             match="inputCentroids", cls=cml.InputError)


def test_missing_centroids_and_bad_parameters():
    X = blobs()
    expect_distributed_error(lambda: cml.kmeans(3, 5, distributed=True).compute(my_block(X)),
                             match="inputCentroids: missing", cls=cml.InputError)
    for make in (lambda: cml.kmeans(0, 5), lambda: cml.kmeans(3, -1),
                 lambda: cml.kmeans(3, 5, accuracyThreshold=-1.0),
                 lambda: cml.kmeans(3, 5, resultsToEvaluate="computeEverything"),
                 lambda: cml.kmeans_init(3, method="kmeans++"),
                 lambda: cml.kmeans_init(3, nTrials=0),
                 lambda: cml.kmeans_init(3, seed=-5),
                 lambda: cml.kmeans_init(3, oversamplingFactor=0)):
        expect_distributed_error(make, cls=cml.ParameterError)


# nIterations of daal4py 2024.7 (distributed, 2 ranks) on make_blobs(300, centers=4,
# random_state=1) from its first 4 rows: (accuracyThreshold, maxIterations) -> nIterations.
DAAL4PY_ITERATIONS = {(0.0, 50): 14, (5.0, 50): 13, (50.0, 50): 6, (0.0, 13): 13, (0.0, 14): 14,
                      (1e-3, 12): 12, (1e-3, 13): 13, (1e-3, 14): 14, (50.0, 4): 4, (50.0, 6): 6}


def test_iterations_counted_as_daal4py_counts_them():
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(300, centers=4, random_state=1)
    got = {key: int(cml.kmeans(4, key[1], accuracyThreshold=key[0], distributed=True)
                    .compute(my_block(X), X[:4]).nIterations[0, 0]) for key in DAAL4PY_ITERATIONS}
    mpi_assert(got == DAAL4PY_ITERATIONS, f"{got}")
