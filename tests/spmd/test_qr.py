"""qr under MPI: Q R equals the stacked data and Q^T Q = I at any conditioning (rank 1 empty)."""

import numpy as np
import pytest

import clusterml as cml

from mpihelpers import (expect_distributed_error, mpi_allclose, mpi_assert, my_block,
                        same_on_every_rank, world)


def conditioned(cond, n=301, p=6, seed=3):
    """n x p data with condition number ``cond`` (singular values log-spaced)."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.normal(size=(n, p)))
    W, _ = np.linalg.qr(rng.normal(size=(p, p)))
    return U @ np.diag(np.logspace(0, -np.log10(cond), p)) @ W.T * 1e3


@pytest.mark.parametrize("cond", [1.0, 1e8, 1e15])
def test_qr_reconstructs_and_is_orthonormal(cond):
    X = conditioned(cond)
    res = cml.qr(distributed=True).compute(my_block(X))
    Q = np.vstack(world().allgather(res.matrixQ))
    R = res.matrixR
    mpi_assert(res.matrixQ.shape == (len(my_block(X)), 6) and R.shape == (6, 6), "shapes")
    mpi_assert(np.allclose(R, np.triu(R), rtol=0, atol=0) and np.all(np.diag(R) >= 0),
               "R upper triangular with a non-negative diagonal")
    rel = np.linalg.norm(Q @ R - X) / np.linalg.norm(X)
    orth = np.linalg.norm(Q.T @ Q - np.eye(6))
    mpi_assert(rel < 1e-12 and orth < 1e-12, f"cond {cond:g}: |QR-X|/|X| {rel:.2e}, |Q'Q-I| {orth:.2e}")
    # R is numpy's R up to the signs of its rows
    R_np = np.linalg.qr(X, mode="r")
    mpi_allclose(R, R_np * np.sign(np.diag(R_np))[:, None], rtol=1e-9, atol=1e-9 * np.abs(R).max(),
                 what="R vs numpy")
    same_on_every_rank(R, "matrixR")


def test_serial_qr_and_errors():
    X = conditioned(10.0, n=40, p=3)
    res = cml.qr().compute(X)
    mpi_allclose(res.matrixQ @ res.matrixR, X, rtol=1e-12, atol=1e-12, what="serial Q R")
    mpi_assert(res.fields() == ("matrixQ", "matrixR"), f"{res.fields()}")
    expect_distributed_error(lambda: cml.qr(distributed=True).compute(my_block(X[:2])),
                             "at least 3 rows", cml.InputError)
    Xbad = X.copy()
    Xbad[-1, 0] = np.nan
    expect_distributed_error(lambda: cml.qr(distributed=True).compute(my_block(Xbad)), "data",
                             cml.InputError)
