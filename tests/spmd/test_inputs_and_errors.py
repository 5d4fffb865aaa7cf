"""Every kind of input, and bad input raising the same error on every rank (no hang)."""

import os

import numpy as np
import pandas as pd
import pytest
from mpihelpers import (
    expect_distributed_error,
    mpi_allclose,
    mpi_assert,
    my_block,
    rank,
    size,
    uneven_counts,
    world,
)

import clusterml as cml


def data(n=301, d=4, seed=1):
    return np.random.default_rng(seed).normal(size=(n, d)) * np.arange(1, d + 1)


def write_rank_files(tmp, X, ext, header=True, counts=None):
    """Rank 0 writes one file per rank; returns the {} template."""
    counts = counts or uneven_counts(len(X), size())
    if rank() == 0:
        start = 0
        for r, c in enumerate(counts):
            part = X[start:start + c]
            start += c
            path = os.path.join(tmp, f"part{r}.{ext}")
            frame = pd.DataFrame(part, columns=[f"x{j}" for j in range(X.shape[1])])
            if ext == "csv":
                if c == 0:
                    open(path, "w").close()  # an empty per-rank file
                else:
                    frame.to_csv(path, index=False, header=header)
            elif ext == "npy":
                np.save(path, part)
            else:
                frame.to_parquet(path)
    world().Barrier()
    return os.path.join(tmp, "part{}." + ext)


@pytest.mark.parametrize("ext,header", [("csv", True), ("csv", False), ("npy", None), ("parquet", None)])
def test_per_rank_files(shared_tmp, ext, header):
    X = data()
    template = write_rank_files(shared_tmp, X, ext, header=header)
    res = cml.covariance(distributed=True).compute(template)
    mpi_allclose(res.covariance, np.cov(X, rowvar=False), rtol=1e-12, what=f"{ext} cov")


@pytest.mark.parametrize("ext", ["csv", "csv-noheader", "npy", "parquet"])
def test_read_partition_reads_own_block(shared_tmp, ext):
    X = np.round(data(n=257), 6)
    path = os.path.join(shared_tmp, "all." + ext.split("-")[0])
    if rank() == 0:
        frame = pd.DataFrame(X, columns=list("abcd"))
        if ext == "csv":
            frame.to_csv(path, index=False)
        elif ext == "csv-noheader":
            frame.to_csv(path, index=False, header=False)
        elif ext == "npy":
            np.save(path, X)
        else:
            frame.to_parquet(path, row_group_size=40)
    world().Barrier()
    part = cml.read_partition(path)
    block, ncols = part.load(rank(), size())
    # blocks are contiguous, in rank order, and cover every row exactly once
    blocks = world().allgather(np.empty((0, 4)) if block is None else block)
    mpi_allclose(np.vstack(blocks), X, rtol=0, atol=1e-12, what="concatenated blocks")
    mpi_assert(ncols == 4, f"ncols {ncols}")
    res = cml.low_order_moments(distributed=True).compute(part)
    mpi_allclose(res.mean, X.mean(0, keepdims=True), rtol=1e-12, what="mean via read_partition")


def test_pandas_inputs():
    X = data()
    mine = my_block(X)
    frame = pd.DataFrame(mine, columns=list("abcd"))
    res = cml.low_order_moments(distributed=True).compute(frame)
    mpi_allclose(res.mean, X.mean(0, keepdims=True), what="DataFrame")
    res = cml.low_order_moments(distributed=True).compute(pd.Series(mine[:, 0]))
    mpi_allclose(res.mean, X[:, :1].mean(0, keepdims=True), what="Series")
    mpi_assert(res.mean.shape == (1, 1), res.mean.shape)


def test_integer_and_fortran_arrays_are_not_modified():
    X = np.arange(40 * 3).reshape(40, 3)
    mine = my_block(X)
    before = mine.copy()
    res = cml.covariance(distributed=True).compute(np.asfortranarray(mine))
    mpi_allclose(res.covariance, np.cov(X, rowvar=False), what="int input")
    mpi_assert(np.array_equal(mine, before) and mine.dtype == before.dtype, "input modified")


# ---------------------------------------------------------------------------- errors


def test_missing_file_on_one_rank(shared_tmp):
    X = data()
    template = write_rank_files(shared_tmp, X, "npy")
    bad = size() - 1
    if rank() == 0:
        os.remove(template.replace("{}", str(bad)))
    world().Barrier()
    err = expect_distributed_error(lambda: cml.low_order_moments(distributed=True).compute(template),
                                   match="no such file", cls=cml.InputError)
    mpi_assert(err.ranks == [bad], f"ranks {err.ranks}")
    mpi_assert(f"rank {bad}" in str(err), str(err))


def test_columns_differ_between_ranks():
    X = data(d=3)
    mine = my_block(X)
    if rank() == size() - 1 and size() > 1:
        mine = np.hstack([mine, mine[:, :1]])
    if size() == 1:
        return
    expect_distributed_error(lambda: cml.covariance(distributed=True).compute(mine),
                             match="disagree on the number of columns", cls=cml.InputError)


def test_non_numeric_column(shared_tmp):
    path = os.path.join(shared_tmp, "text{}.csv")
    if rank() == 0:
        for r in range(size()):
            with open(path.replace("{}", str(r)), "w") as fh:
                fh.write("a,b\n1,2\n3,4\n" if r != 0 else "a,b\n1,x\n3,4\n")
    world().Barrier()
    err = expect_distributed_error(lambda: cml.low_order_moments(distributed=True).compute(path),
                                   match="non-numeric column", cls=cml.InputError)
    mpi_assert(err.ranks == [0], err.ranks)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_on_last_rank(bad):
    X = data()
    mine = my_block(X).copy()
    target = max(r for r, c in enumerate(uneven_counts(len(X), size())) if c > 0)
    if rank() == target:
        mine[len(mine) // 2, 2] = bad
    err = expect_distributed_error(lambda: cml.covariance(distributed=True).compute(mine),
                                   match="must be finite", cls=cml.InputError)
    mpi_assert("column 2" in str(err), str(err))


def test_overflowing_values():
    mine = np.full((5, 2), 1.5e308)
    expect_distributed_error(lambda: cml.low_order_moments(distributed=True).compute(mine),
                             match="too large", cls=cml.InputError)


def test_no_rows_anywhere():
    expect_distributed_error(lambda: cml.low_order_moments(distributed=True).compute(np.empty((0, 3))),
                             match="no rows at all", cls=cml.InputError)


def test_bad_parameters_raise_everywhere():
    # distributed=True: the constructor's error is held and raised by compute() on every rank
    expect_distributed_error(lambda: cml.low_order_moments(estimatesToCompute="nope", distributed=True)
                             .compute(data()),
                             match="estimatesToCompute='nope'", cls=cml.ParameterError)
    expect_distributed_error(lambda: cml.covariance(outputMatrixType=3, distributed=True).compute(data()),
                             match="outputMatrixType", cls=cml.ParameterError)
    expect_distributed_error(lambda: cml.covariance(distributed=True).compute(data(), data()),
                             match="takes 1 input", cls=cml.ParameterError)


def test_wrong_dimensionality_and_dtype():
    expect_distributed_error(lambda: cml.covariance(distributed=True).compute(np.zeros((2, 2, 2))),
                             match="3-D", cls=cml.InputError)
    expect_distributed_error(lambda: cml.covariance(distributed=True).compute(np.array([["a", "b"]])),
                             match="not numeric", cls=cml.InputError)


def test_directory_and_ragged_csv(shared_tmp):
    expect_distributed_error(lambda: cml.covariance(distributed=True).compute(shared_tmp),
                             match="is a directory", cls=cml.InputError)
    path = os.path.join(shared_tmp, "ragged.csv")
    if rank() == 0:
        with open(path, "w") as fh:
            fh.write("1,2,3\n4,5,6\n7,8,9,10\n")
    world().Barrier()
    expect_distributed_error(lambda: cml.covariance(distributed=True).compute(path),
                             match="malformed CSV", cls=cml.InputError)


def test_injected_compute_fault_reaches_every_rank(monkeypatch):
    monkeypatch.setenv("CLUSTERML_INJECT_FAULT", f"covariance@{size() - 1}")
    err = expect_distributed_error(lambda: cml.covariance(distributed=True).compute(my_block(data())),
                                   match="fault injected", cls=cml.ComputeError)
    mpi_assert(err.ranks == [size() - 1], err.ranks)
    monkeypatch.delenv("CLUSTERML_INJECT_FAULT")
    # the communicator is still healthy afterwards
    res = cml.covariance(distributed=True).compute(my_block(data()))
    mpi_allclose(res.covariance, np.cov(data(), rowvar=False), what="after a fault")
