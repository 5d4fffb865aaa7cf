"""kmeans_init under MPI: every method gives, bit for bit, the single-process centroids.

This file also runs at 7 ranks (tests/test_kmeans_worlds.py), so the seeded
methods are checked on 1, 2, 3, 4 and 7 ranks, with an empty rank.
"""

import numpy as np
import pytest
from mpihelpers import mpi_assert, my_block, same_on_every_rank, size

import clusterml as cml


def blobs(n_per=40, centres=5, d=3, seed=11):
    rng = np.random.default_rng(seed)
    locs = rng.normal(scale=10.0, size=(centres, d))
    X = np.vstack([rng.normal(loc=c, size=(n_per, d)) for c in locs])
    return X[rng.permutation(len(X))]


METHODS = ["defaultDense", "deterministicDense", "randomDense", "plusPlusDense", "parallelPlusDense"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n_trials", [1, 3])
def test_init_equals_single_process(method, n_trials):
    X = blobs()
    params = dict(method=method, nTrials=n_trials, seed=2024)
    res = cml.kmeans_init(6, distributed=True, **params).compute(my_block(X))
    ref = cml.kmeans_init(6, **params).compute(X)
    same_on_every_rank(res)
    mpi_assert(res.centroids.shape == (6, 3), res.centroids.shape)
    mpi_assert(np.array_equal(res.centroids, ref.centroids),
               f"{method}: {size()} ranks differ from one process")


@pytest.mark.parametrize("method", ["randomDense", "plusPlusDense", "parallelPlusDense"])
def test_default_seed_and_other_layouts(method):
    X = blobs()
    ref = cml.kmeans_init(5, method=method).compute(X).centroids
    counts = [0] * size()
    counts[-1] = len(X)                       # every row on the last rank
    a = cml.kmeans_init(5, method=method, distributed=True).compute(my_block(X, counts)).centroids
    counts = [len(X) // size()] * size()
    counts[0] += len(X) - sum(counts)         # even split
    b = cml.kmeans_init(5, method=method, distributed=True).compute(my_block(X, counts)).centroids
    mpi_assert(np.array_equal(a, ref) and np.array_equal(b, ref), f"{method} depends on the layout")


def test_first_rows_when_rank0_holds_fewer():
    X = blobs()
    counts = [1] + [0] * (size() - 1)
    if size() > 1:
        counts[-1] = len(X) - 1
    else:
        counts = [len(X)]
    res = cml.kmeans_init(4, distributed=True).compute(my_block(X, counts))
    mpi_assert(np.array_equal(res.centroids, X[:4]), res.centroids)


def test_plusplus_spreads_over_blobs():
    rng = np.random.default_rng(5)
    locs = np.array([[0, 0], [50, 0], [0, 50], [50, 50]], float)
    X = np.vstack([rng.normal(loc=c, scale=0.3, size=(30, 2)) for c in locs])
    for method in ("plusPlusDense", "parallelPlusDense"):
        C = cml.kmeans_init(4, method=method, seed=9, distributed=True).compute(
            my_block(X)).centroids
        nearest = np.argmin(((C[:, None] - locs[None]) ** 2).sum(-1), axis=1)
        mpi_assert(sorted(nearest) == [0, 1, 2, 3], (method, C))


def test_too_many_clusters_everywhere():
    from mpihelpers import expect_distributed_error

    X = blobs()[:7]
    err = expect_distributed_error(
        lambda: cml.kmeans_init(8, method="plusPlusDense", distributed=True).compute(my_block(X)),
        match="nClusters=8 but only 7 rows", cls=cml.InputError)
    mpi_assert(err is not None)


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_data_anywhere_is_refused(method):
    """Every method refuses a NaN or infinity anywhere, even in a row it would not pick (SPEC §3)."""
    from mpihelpers import expect_distributed_error, world

    X = blobs()
    counts = world().allgather(len(my_block(X)))
    offsets = np.cumsum([0] + counts)
    g = len(X) - 1                            # the last row: never among the first rows
    owner = int(np.searchsorted(offsets, g, side="right") - 1)
    for value, match in ((np.nan, "values must be finite"), (np.inf, "values must be finite"),
                         (1e200, "too large")):
        Xb = X.copy()
        Xb[g, 2] = value
        err = expect_distributed_error(
            lambda Xb=Xb: cml.kmeans_init(3, method=method, seed=5, distributed=True).compute(my_block(Xb)),
            match, cml.InputError)
        mpi_assert(err.ranks == [owner], f"failing ranks {err.ranks}")
