"""Linear and ridge regression under MPI vs NumPy lstsq / scikit-learn Ridge on all rows."""

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
from clusterml.spmd import comm


def regression_data(n=301, p=4, r=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * np.arange(1, p + 1) + 5.0
    Y = X @ rng.normal(size=(p, r)) + rng.normal(size=r) + 0.1 * rng.normal(size=(n, r))
    return X, Y


def lstsq_beta(X, Y, intercept):
    A = np.hstack([np.ones((len(X), 1)), X]) if intercept else X
    coef = np.linalg.lstsq(A, Y, rcond=None)[0]
    beta = np.zeros((Y.shape[1], X.shape[1] + 1))
    beta[:, (0 if intercept else 1):] = coef.T
    return beta


def gather_rows(A):
    return np.vstack(world().allgather(A))


@pytest.mark.parametrize("method", ["normEqDense", "qrDense"])
@pytest.mark.parametrize("intercept", [True, False])
def test_linear_regression_matches_lstsq(method, intercept):
    X, Y = regression_data()
    res = cml.linear_regression_training(method=method, interceptFlag=intercept,
                                         distributed=True).compute(my_block(X), my_block(Y))
    m = res.model
    mpi_allclose(m.Beta, lstsq_beta(X, Y, intercept), rtol=1e-9, atol=1e-9, what=f"Beta {method}")
    mpi_assert((m.NumberOfBetas, m.NumberOfResponses, m.NumberOfFeatures, m.InterceptFlag)
               == (5, 2, 4, intercept), repr(m))
    same_on_every_rank(res.model, "model")
    pred = cml.linear_regression_prediction(distributed=True).compute(my_block(X), m)
    mpi_assert(pred.prediction.shape == (len(my_block(X)), 2), f"{pred.prediction.shape}")
    mpi_allclose(gather_rows(pred.prediction), X @ m.Beta[:, 1:].T + m.Beta[:, 0], rtol=1e-12,
                 what="prediction")


def test_single_response_as_1d_and_serial_prediction():
    X, Y = regression_data(r=1)
    res = cml.linear_regression_training(interceptFlag=True, distributed=True).compute(
        my_block(X), my_block(Y).ravel())
    mpi_assert(res.model.Beta.shape == (1, 5), f"{res.model.Beta.shape}")
    mine = my_block(X)
    local = cml.linear_regression_prediction().compute(mine, res.model) if len(mine) else None
    mpi_assert(local is None or np.allclose(local.prediction.ravel(), mine @ res.model.Beta[0, 1:]
                                            + res.model.Beta[0, 0]), "serial prediction")


def ill_conditioned(n=600, p=5, cond=1e10, seed=0):
    """cond(X) = 1e10 (also after centring), known beta, exact responses."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, p))
    U, _ = np.linalg.qr(A - A.mean(0))
    W, _ = np.linalg.qr(rng.normal(size=(p, p)))
    X = U @ np.diag(np.logspace(0, -np.log10(cond), p)) @ W.T * np.sqrt(n) + 3.0
    beta = rng.normal(size=(p, 2))
    return X, X @ beta + np.array([2.0, -1.0]), beta


def test_qr_is_far_more_accurate_than_normal_equations_when_ill_conditioned():
    X, Y, beta = ill_conditioned()
    err = {}
    for method in ("normEqDense", "qrDense"):
        m = cml.linear_regression_training(method=method, interceptFlag=True, distributed=True).compute(
            my_block(X), my_block(Y)).model
        err[method] = np.abs(m.Beta[:, 1:].T - beta).max()
    mpi_assert(err["qrDense"] < 1e-4 * np.abs(beta).max(), f"qr error {err}")
    mpi_assert(err["normEqDense"] > 100 * err["qrDense"], f"normEq not worse: {err}")


@pytest.mark.parametrize("alpha", [1.0, [0.2, 25.0]])
@pytest.mark.parametrize("intercept", [True, False])
def test_ridge_matches_sklearn(alpha, intercept):
    X, Y = regression_data()
    res = cml.ridge_regression_training(ridgeParameters=alpha, interceptFlag=intercept,
                                        distributed=True).compute(my_block(X), my_block(Y))
    ref = Ridge(alpha=np.asarray(alpha) if np.ndim(alpha) else alpha, fit_intercept=intercept).fit(X, Y)
    mpi_allclose(res.model.Beta[:, 1:], ref.coef_, rtol=1e-8, atol=1e-10, what="ridge coef")
    mpi_allclose(res.model.Beta[:, 0], ref.intercept_ if intercept else np.zeros(2), rtol=1e-8,
                 atol=1e-10, what="ridge intercept")
    same_on_every_rank(res.model, "ridge model")
    pred = cml.ridge_regression_prediction(distributed=True).compute(my_block(X), res.model)
    mpi_allclose(gather_rows(pred.prediction), ref.predict(X), rtol=1e-8, atol=1e-8, what="ridge pred")


def test_errors_on_every_rank():
    X, Y = regression_data(n=40)
    # 4 features + intercept need 5 rows; 4 rows in total.
    expect_distributed_error(lambda: cml.linear_regression_training(
        interceptFlag=True, distributed=True).compute(my_block(X[:4]), my_block(Y[:4])),
        "at least 5 rows", cml.InputError)
    model = cml.linear_regression_training(distributed=True).compute(my_block(X), my_block(Y)).model
    expect_distributed_error(lambda: cml.linear_regression_prediction(distributed=True).compute(
        my_block(X[:, :3]), model), "model has 4 features but the data has 3", cml.InputError)
    # A model that differs between ranks: every rank raises, nobody waits.
    bad = model if rank() != size() - 1 else cml.Result("linear_regression_model", Beta=np.zeros((2, 3)))
    expect_distributed_error(lambda: cml.linear_regression_prediction(distributed=True).compute(
        my_block(X), bad), "features but the data has 4", cml.InputError)
    expect_distributed_error(lambda: cml.ridge_regression_prediction(distributed=True).compute(
        my_block(X), object()), "model must be", cml.ParameterError)
    expect_distributed_error(lambda: cml.ridge_regression_training(
        ridgeParameters=[1.0, 2.0, 3.0], distributed=True).compute(my_block(X), my_block(Y)),
        "3 values but there are 2 responses", cml.ParameterError)
    expect_distributed_error(lambda: cml.ridge_regression_training(ridgeParameters=-1.0),
                             "ridgeParameters=-1.0", cml.ParameterError)
    expect_distributed_error(lambda: cml.linear_regression_training(method="svd"), "method='svd'",
                             cml.ParameterError)
    Ybad = Y.copy()
    Ybad[-1, 0] = np.nan
    expect_distributed_error(lambda: cml.linear_regression_training(distributed=True).compute(
        my_block(X), my_block(Ybad)), "dependentVariables", cml.InputError)
    # Finiteness is found by the training pass itself (no separate pass): every method and
    # flag, in the data and in the responses, names the table, the local row and column.
    counts = world().allgather(len(my_block(X)))
    last = max(r for r, c in enumerate(counts) if c)
    trainers = [lambda: cml.linear_regression_training(interceptFlag=True, distributed=True),
                lambda: cml.linear_regression_training(method="qrDense", distributed=True),
                lambda: cml.linear_regression_training(interceptFlag=False, distributed=True),
                lambda: cml.ridge_regression_training(interceptFlag=True, distributed=True)]
    for make in trainers:
        for table, value in (("data", np.nan), ("data", -np.inf), ("dependentVariables", np.inf)):
            Xr, Yr = my_block(X).copy(), my_block(Y).copy()
            if rank() == last:
                (Xr if table == "data" else Yr)[1, 1] = value
            err = expect_distributed_error(lambda make=make, Xr=Xr, Yr=Yr: make().compute(Xr, Yr),
                                           f"{table}: {value} at row 1, column 1", cml.InputError)
            mpi_assert(err.ranks == [last], f"failing ranks {err.ranks}")


def test_guarded_steps_returning_none_under_mpi():
    # Regression test for the runtime: a guarded step whose value is None
    # (every ctx.check) must survive the pickling of the allgather.
    ctx = comm.context(True)
    mpi_assert(ctx.allgather(lambda: None) == [None] * size(), "None values gathered")
    ctx.check(lambda: None)
