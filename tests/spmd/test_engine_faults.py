"""The engine-side faults of issue 18: memory, degenerate inputs, non-finite models.

A rank that runs out of memory (``resource.setrlimit(RLIMIT_AS)`` on one rank, as a Slurm
``--mem`` limit does) must make the same clear error on every rank -- in a guarded step, and
outside one (a finalize) -- never a hang; a parameter whose memory cannot be had is refused
by the constructor with the amount; one row in total and a model holding NaN are InputErrors.
"""

import resource
import time

import numpy as np
import psutil
import pytest
from mpihelpers import expect_distributed_error, mpi_assert, my_block, rank, same_on_every_rank, size, world

import clusterml as cml
from clusterml.spmd.algorithm import Algorithm

X = np.random.default_rng(11).normal(size=(60, 4))


def odd() -> bool:
    return rank() == size() - 1


def same_message(err):
    msgs = world().allgather(str(err))
    mpi_assert(len(set(msgs)) == 1, f"messages differ: {msgs}")


class limited_memory:
    """Limit this process's address space to what it uses now plus ``extra`` bytes."""

    def __init__(self, extra: int, on: bool = True):
        self.extra, self.on = extra, on

    def __enter__(self):
        self.old = resource.getrlimit(resource.RLIMIT_AS)
        if self.on:
            vms = psutil.Process().memory_info().vms
            resource.setrlimit(resource.RLIMIT_AS, (vms + self.extra, self.old[1]))

    def __exit__(self, *exc):
        resource.setrlimit(resource.RLIMIT_AS, self.old)


def test_memory_error_in_a_step_on_one_rank_is_an_error_everywhere():
    wide = np.random.default_rng(12).normal(size=(3 * size(), 1500))   # cross products: 18 MB
    cml.covariance(distributed=True).compute(my_block(X))   # lazy imports done before the limit
    t0 = time.perf_counter()
    with limited_memory(8 << 20, on=odd()):
        try:
            cml.covariance(distributed=True).compute(my_block(wide))
        except cml.DistributedError as exc:
            err = exc
        else:
            err = None
    took = time.perf_counter() - t0
    mpi_assert(isinstance(err, cml.ComputeError) and err.ranks == [size() - 1]
               and "out of memory" in str(err), f"got {err!r}")
    same_message(err)
    mpi_assert(took < 30, f"took {took:.1f} s")
    res = cml.covariance(distributed=True).compute(my_block(X))   # the world goes on
    same_on_every_rank(res, "covariance after the MemoryError")


def test_memory_check_at_compute_names_the_amount():
    counts = np.ones((size() * 2, 4))
    labels = np.zeros((size() * 2, 1))
    cml.multinomial_naive_bayes_training(2, distributed=True).compute(my_block(counts), my_block(labels))
    with limited_memory(16 << 20, on=odd()):
        try:
            cml.multinomial_naive_bayes_training(1_000_000, distributed=True).compute(
                my_block(counts), my_block(labels))
        except cml.DistributedError as exc:
            err = exc
        else:
            err = None
    mpi_assert(isinstance(err, cml.ParameterError) and "nClasses=1000000 with 4 features needs 61.0 MiB"
               in str(err) and err.ranks == [size() - 1], f"got {err!r}")
    same_message(err)


class _FailsOutsideSteps(Algorithm):
    """An algorithm whose last rank raises MemoryError between collectives (unguarded)."""

    def __init__(self, where, distributed=False):
        super().__init__(distributed)
        self.where = where

    def _compute(self, ctx, layout, data):
        if self.where == "before" and odd():
            raise MemoryError()
        total = ctx.sum(lambda: np.array([float(len(data))]), step="count rows")
        if self.where == "after" and odd():
            raise MemoryError()
        return total


@pytest.mark.parametrize("where", ["before", "after"])
def test_unguarded_memory_error_on_one_rank_reaches_every_rank(where):
    err = expect_distributed_error(
        lambda: _FailsOutsideSteps(where, distributed=True).compute(my_block(X)),
        match="out of memory", cls=cml.ComputeError)
    mpi_assert(err.ranks == [size() - 1], f"ranks {err.ranks}")
    same_message(err)
    total = _FailsOutsideSteps("nowhere", distributed=True).compute(my_block(X))
    mpi_assert(total[0] == len(X), f"total {total}")


def test_constructors_refuse_parameters_whose_memory_cannot_be_had():
    for make, match in [
        (lambda **kw: cml.multinomial_naive_bayes_training(10**12, **kw), "nClasses=1000000000000"),
        (lambda **kw: cml.multinomial_naive_bayes_prediction(10**13, **kw), "nClasses="),
        (lambda **kw: cml.kmeans(10**13, 5, **kw), "nClusters=10000000000000"),
        (lambda **kw: cml.kmeans_init(10**13, **kw), "nClusters="),
    ]:
        with pytest.raises(cml.ParameterError, match=match + r".*needs [0-9.]+ TiB of memory"):
            make()
    err = expect_distributed_error(
        lambda: cml.multinomial_naive_bayes_training(10**12, distributed=True).compute(
            my_block(X), my_block(np.zeros((len(X), 1)))),
        match="TiB of memory", cls=cml.ParameterError)
    same_message(err)


def test_covariance_of_one_row_in_total_is_an_error_as_for_pca():
    one = X[:1] if rank() == 0 else X[:0]
    for algo in ("covariance", "pca"):
        expect_distributed_error(lambda algo=algo: getattr(cml, algo)(distributed=True).compute(one),
                                 match=f"{algo} needs at least 2 rows in total, got 1",
                                 cls=cml.InputError)
    res = cml.covariance(outputMatrixType="correlationMatrix", distributed=True).compute(
        X[:2] if rank() == 0 else X[:0])
    mpi_assert(np.all(np.isfinite(res.covariance)), "two rows: finite")


def test_predictions_refuse_a_non_finite_model():
    y = X @ np.arange(1.0, 5.0)[:, None]
    model = cml.linear_regression_training(distributed=True).compute(my_block(X), my_block(y)).model
    model.Beta = model.Beta.copy()
    model.Beta[0, 2] = np.nan
    expect_distributed_error(lambda: cml.linear_regression_prediction(distributed=True)
                             .compute(my_block(X), model), match="model.Beta holds nan", cls=cml.InputError)
    ridge = cml.ridge_regression_training(distributed=True).compute(my_block(X), my_block(y)).model
    ridge.Beta = np.full_like(ridge.Beta, np.inf)
    expect_distributed_error(lambda: cml.ridge_regression_prediction(distributed=True)
                             .compute(my_block(X), ridge), match="holds inf", cls=cml.InputError)
    counts = np.abs(np.round(X * 3))
    labels = (np.arange(len(X)) % 2).reshape(-1, 1).astype(float)
    nb = cml.multinomial_naive_bayes_training(2, distributed=True).compute(
        my_block(counts), my_block(labels)).model
    nb.LogTheta = nb.LogTheta.copy()
    nb.LogTheta[1, 0] = np.nan
    expect_distributed_error(lambda: cml.multinomial_naive_bayes_prediction(2, distributed=True)
                             .compute(my_block(counts), nb), match="model.LogTheta holds nan",
                             cls=cml.InputError)
