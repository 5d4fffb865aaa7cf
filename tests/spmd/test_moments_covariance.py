"""low_order_moments and covariance under MPI vs NumPy on all rows."""

import numpy as np
import pytest
from mpihelpers import mpi_allclose, mpi_assert, my_block, rank, same_on_every_rank, size, uneven_counts

import clusterml as cml


def full_data(n=1003, d=7, offset=0.0, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.arange(1, d + 1) + rng.normal(size=d)
    return X + offset


@pytest.mark.parametrize("offset", [0.0, 1e9])
def test_moments_match_numpy(offset):
    X = full_data(offset=offset)
    res = cml.low_order_moments(distributed=True).compute(my_block(X))
    rtol = 1e-6 if offset else 1e-10
    mpi_allclose(res.mean, X.mean(0, keepdims=True), rtol=1e-12, what="mean")
    mpi_allclose(res.variance, X.var(0, ddof=1, keepdims=True), rtol=rtol, atol=0, what="variance")
    mpi_allclose(res.standardDeviation, X.std(0, ddof=1, keepdims=True), rtol=rtol, atol=0, what="std")
    mpi_allclose(res.sumSquaresCentered, ((X - X.mean(0)) ** 2).sum(0, keepdims=True), rtol=rtol,
                 atol=0, what="sumSquaresCentered")
    mpi_allclose(res.minimum, X.min(0, keepdims=True), what="min")
    mpi_allclose(res.maximum, X.max(0, keepdims=True), what="max")
    mpi_allclose(res.sum, X.sum(0, keepdims=True), rtol=1e-12, what="sum")
    mpi_allclose(res.sumSquares, (X ** 2).sum(0, keepdims=True), rtol=1e-12, what="sumSquares")
    mpi_allclose(res.secondOrderRawMoment, (X ** 2).mean(0, keepdims=True), rtol=1e-12, what="raw2")
    mpi_allclose(res.variation, X.std(0, ddof=1, keepdims=True) / X.mean(0, keepdims=True),
                 rtol=rtol, atol=0, what="variation")
    same_on_every_rank(res)


def test_moments_subsets():
    X = full_data()
    res = cml.low_order_moments(estimatesToCompute="estimatesMinMax", distributed=True).compute(my_block(X))
    mpi_assert(res.fields() == ("minimum", "maximum"), res.fields())
    res = cml.low_order_moments(estimatesToCompute="estimatesMeanVariance",
                                distributed=True).compute(my_block(X))
    mpi_assert(res.fields() == ("mean", "variance"), res.fields())
    mpi_allclose(res.variance, X.var(0, ddof=1, keepdims=True), rtol=1e-10, what="variance")


@pytest.mark.parametrize("offset", [0.0, 1e9])
def test_covariance_and_correlation(offset):
    X = full_data(offset=offset)
    res = cml.covariance(distributed=True).compute(my_block(X))
    rtol = 1e-6 if offset else 1e-10
    ref = np.cov(X, rowvar=False)
    mpi_allclose(res.covariance, ref, rtol=rtol, atol=rtol * np.abs(ref).max(), what="cov")
    mpi_allclose(res.correlation, np.corrcoef(X, rowvar=False), rtol=rtol, atol=rtol, what="corr")
    mpi_allclose(res.mean, X.mean(0, keepdims=True), rtol=1e-12, what="mean")
    mpi_assert(res.mean.shape == (1, X.shape[1]), res.mean.shape)
    same_on_every_rank(res)
    res2 = cml.covariance(outputMatrixType="correlationMatrix", distributed=True).compute(my_block(X))
    mpi_allclose(res2.correlation, np.corrcoef(X, rowvar=False), rtol=rtol, atol=rtol, what="corr2")


def test_all_rows_on_one_rank():
    X = full_data(n=50)
    counts = [0] * size()
    counts[-1] = len(X)
    res = cml.covariance(distributed=True).compute(my_block(X, counts))
    mpi_allclose(res.covariance, np.cov(X, rowvar=False), rtol=1e-10, what="cov")


def test_serial_mode_on_each_rank_is_local():
    X = full_data(n=40)
    mine = my_block(X)
    if len(mine) >= 2:
        res = cml.low_order_moments(distributed=False).compute(mine)
        ok = np.allclose(res.mean, mine.mean(0, keepdims=True))
    else:
        ok = True
    mpi_assert(ok, "serial moments of the local block")


def test_runtime_ids_and_idempotent_init():
    cml.init()
    cml.init()
    mpi_assert(cml.my_procid() == rank() and cml.num_procs() == size(), "ids")
    cml.daalfini()
    cml.daalinit()
    mpi_assert(cml.num_procs() == size(), "after re-init")


def test_init_on_a_sub_communicator():
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    color = world.Get_rank() % 2
    sub = world.Split(color, world.Get_rank())
    try:
        cml.init(comm=sub)
        X = full_data(n=60, seed=color)
        counts = uneven_counts(60, sub.Get_size(), empty_rank=False)
        start = sum(counts[: sub.Get_rank()])
        res = cml.low_order_moments(distributed=True).compute(X[start:start + counts[sub.Get_rank()]])
        mpi_allclose(res.mean, X.mean(0, keepdims=True), what="sub-communicator mean")
        mpi_assert(cml.num_procs() == sub.Get_size(), "num_procs on sub comm")
    finally:
        cml.init(comm=world)  # back to the world (a bare init() keeps the current communicator)
        sub.Free()
    mpi_assert(cml.num_procs() == size(), "back on the world")
