"""qr under MPI: Q R equals the stacked data and Q^T Q = I at any conditioning (rank 1 empty)."""

import numpy as np
import pytest
from mpihelpers import expect_distributed_error, mpi_allclose, mpi_assert, my_block, same_on_every_rank, world

import clusterml as cml


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


@pytest.mark.parametrize("streaming", [False, True])
def test_qr_float_is_single_precision_and_close_to_double(streaming):
    X = conditioned(100.0)
    mine = my_block(X)

    def run(fptype):
        algo = cml.qr(fptype=fptype, distributed=True, streaming=streaming)
        if not streaming:
            return algo.compute(mine)
        for chunk in (mine[:7], mine[7:]):  # two chunks, one of them empty on small blocks
            algo.compute(chunk)
        return algo.finalize()

    r32, r64 = run("float"), run("double")
    mpi_assert(r32.matrixQ.dtype == np.float32 and r32.matrixR.dtype == np.float32,
               f"dtypes {r32.matrixQ.dtype} {r32.matrixR.dtype}")
    mpi_assert(r32.matrixQ.shape == (len(mine), 6), f"{r32.matrixQ.shape}")
    Q = np.vstack(world().allgather(r32.matrixQ)).astype(np.float64)
    R = r32.matrixR.astype(np.float64)
    rel = np.linalg.norm(Q @ R - X) / np.linalg.norm(X)
    orth = np.linalg.norm(Q.T @ Q - np.eye(6))
    # float32: errors of a few float32 epsilons (1.2e-7), not float64's 1e-16
    mpi_assert(rel < 2e-6 and orth < 2e-6, f"|QR-X|/|X| {rel:.2e}, |Q'Q-I| {orth:.2e}")
    mpi_assert(np.all(np.diag(R) >= 0) and np.array_equal(R, np.triu(R)), "R triangular, diag >= 0")
    # against double: the condition number (100) times float32's epsilon
    dR = np.linalg.norm(R - r64.matrixR) / np.linalg.norm(r64.matrixR)
    dQ = np.linalg.norm(r32.matrixQ - r64.matrixQ) / max(1.0, np.linalg.norm(r64.matrixQ))
    mpi_assert(dR < 1e-6 and dQ < 1e-5, f"float vs double: R {dR:.2e}, this rank's Q {dQ:.2e}")
    same_on_every_rank(r32.matrixR, "float matrixR")
