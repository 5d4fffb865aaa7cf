"""streaming=True under MPI: compute(chunk) per chunk then finalize() equals one call on all rows.

Every rank feeds its block (rank 1 empty when size > 1) in three uneven chunks (at size > 2
rank 0's middle chunk is empty too); the result must equal one distributed call, and NumPy /
scikit-learn on all rows.
"""

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
    world,
)
from sklearn.linear_model import Ridge

import clusterml as cml


def data(n=211, p=5, seed=1):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, p)) @ rng.normal(size=(p, p))) * np.array([1, 10, 0.1, 1, 100]) + 1e3
    Y = X @ rng.normal(size=(p, 2)) + 4.0 + rng.normal(size=(n, 2))
    C = rng.integers(0, 6, size=(n, p)).astype(float)
    L = rng.integers(0, 3, size=(n, 1)).astype(float)
    return X, Y, C, L


def chunks(*tables):
    """This rank's rows of each table in 3 uneven chunks (some empty, never on every rank).

    (A chunk empty on every rank is refused like an empty one-call input.)
    """
    mine = [my_block(t) for t in tables]
    n = len(mine[0])
    cuts = [n // 3, n // 3 if rank() == 0 and size() > 2 else n // 2]
    return [[t[a:b] for t in mine] for a, b in zip([0] + cuts, cuts + [n], strict=True)]


def stream(make, *tables):
    algo = make(streaming=True)
    for piece in chunks(*tables):
        mpi_assert(algo.compute(*piece) is None, "compute(chunk) returns None")
    return algo.finalize()


def close(a, b, what, rtol=1e-9):
    for f in b.fields():
        u, v = getattr(a, f), getattr(b, f)
        if isinstance(v, np.ndarray):
            mpi_allclose(u, v, rtol=rtol, atol=rtol * max(1.0, np.abs(v).max()), what=f"{what}.{f}")


MAKERS = {
    "low_order_moments": (lambda **k: cml.low_order_moments(distributed=True, **k), "X"),
    "covariance": (lambda **k: cml.covariance(distributed=True, **k), "X"),
    "pca": (lambda **k: cml.pca(isDeterministic=True, distributed=True, **k), "X"),
    "pca svdDense": (lambda **k: cml.pca(method="svdDense", isDeterministic=True, distributed=True,
                                         **k), "X"),
    "linear normEq": (lambda **k: cml.linear_regression_training(interceptFlag=True, distributed=True,
                                                                 **k), "XY"),
    "linear qr": (lambda **k: cml.linear_regression_training(method="qrDense", distributed=True,
                                                             **k), "XY"),
    "ridge": (lambda **k: cml.ridge_regression_training(ridgeParameters=[0.5, 3.0], interceptFlag=True,
                                                        distributed=True, **k), "XY"),
    "naive bayes": (lambda **k: cml.multinomial_naive_bayes_training(3, distributed=True, **k), "CL"),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_streaming_equals_one_call(name):
    make, which = MAKERS[name]
    X, Y, C, L = data()
    tables = {"X": (X,), "XY": (X, Y), "CL": (C, L)}[which]
    got = stream(make, *tables)
    one = make().compute(*[my_block(t) for t in tables])
    if hasattr(one, "model"):
        got, one = got.model, one.model
    close(got, one, name)
    same_on_every_rank(got, name)
    if name == "low_order_moments":
        mpi_allclose(got.variance, X.var(0, ddof=1)[None], rtol=1e-10, what="variance vs numpy")
    if name == "ridge":
        ref = Ridge(alpha=np.array([0.5, 3.0])).fit(X, Y)
        mpi_allclose(got.Beta[:, 1:], ref.coef_, rtol=1e-8, atol=1e-10, what="ridge vs sklearn")


@pytest.mark.parametrize("make", [lambda **k: cml.svd(distributed=True, **k),
                                  lambda **k: cml.qr(distributed=True, **k)])
def test_streaming_svd_and_qr_rows(make):
    X = data()[0]
    got = stream(make, X)
    one = make().compute(my_block(X))
    rows = "leftSingularMatrix" if hasattr(one, "leftSingularMatrix") else "matrixQ"
    square = "rightSingularMatrix" if rows == "leftSingularMatrix" else "matrixR"
    Q = np.vstack(world().allgather(getattr(got, rows)))
    mpi_assert(getattr(got, rows).shape == (len(my_block(X)), 5), "this rank's rows")
    mpi_assert(np.linalg.norm(Q.T @ Q - np.eye(5)) < 1e-12, "orthonormal")
    if rows == "matrixQ":
        mpi_allclose(got.matrixR, one.matrixR, rtol=1e-10, atol=1e-10 * np.abs(one.matrixR).max(),
                     what="matrixR")
        mpi_allclose(Q @ got.matrixR, X, rtol=1e-12, atol=1e-12 * np.abs(X).max(), what="Q R")
    else:
        mpi_allclose(got.singularValues, one.singularValues, rtol=1e-12, what="singular values")
        V = got.rightSingularMatrix
        mpi_allclose(Q * got.singularValues @ V, X, rtol=1e-12, atol=1e-11 * np.abs(X).max(),
                     what="U S V^T")
    same_on_every_rank(getattr(got, square), square)


def test_streaming_errors():
    X, Y = data()[:2]
    algo = cml.low_order_moments(streaming=True, distributed=True)
    expect_distributed_error(algo.finalize, "before any compute", cml.ParameterError)
    algo.compute(my_block(X))
    expect_distributed_error(lambda: algo.compute(my_block(X[:, :3])), "columns", cml.InputError)
    expect_distributed_error(lambda: cml.covariance(streaming="yes"), "streaming='yes'",
                             cml.ParameterError)
    expect_distributed_error(cml.pca(distributed=True).finalize, "streaming=True", cml.ParameterError)
    # a bad chunk on one rank raises on every rank (nobody is left in the next collective),
    # and the good chunks before it are kept
    for make in (lambda **k: cml.covariance(distributed=True, **k),
                 lambda **k: cml.pca(method="svdDense", isDeterministic=True, distributed=True, **k)):
        algo = make(streaming=True)
        bad = my_block(X).copy()
        if rank() == 0:
            bad[0, 2] = np.nan
        algo.compute(my_block(X))
        expect_distributed_error(lambda algo=algo, bad=bad: algo.compute(bad), "data", cml.InputError)
        close(algo.finalize(), make().compute(my_block(X)), "after a bad chunk")
    lin = cml.linear_regression_training(interceptFlag=True, streaming=True, distributed=True)
    lin.compute(my_block(X[:3]), my_block(Y[:3]))
    expect_distributed_error(lin.finalize, "at least 6 rows", cml.InputError)
