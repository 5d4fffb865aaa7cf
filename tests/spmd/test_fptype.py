"""fptype="float": single-precision results against float64 on the whole data, under MPI.

Every algorithm returns float32 arrays with ``fptype="float"`` and float64 with
``"double"``, whatever the input's type.  Accuracy is checked against NumPy /
scikit-learn in float64 on the same (float32-rounded) rows, on offset and on
ill-conditioned data, with an empty rank (``my_block``'s uneven layout).
Tolerances follow the error analysis: a few float32 ulps for one-pass
statistics (accumulated in float64, products rounded within a block), times
``cond`` or ``cond**2`` where the method squares it.
"""

import numpy as np
import pytest
from mpihelpers import mpi_allclose, mpi_assert, my_block, same_on_every_rank

import clusterml as cml

EPS32 = float(np.finfo(np.float32).eps)


def offset_data(n=1201, d=6, offset=1e4, seed=3):
    """float32 rows far from the origin (the spread is ~1e-4 of the offset)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.arange(1, d + 1) + offset
    return X.astype(np.float32)


def collinear_data(n=1201, d=5, noise=1e-2, seed=4):
    """float32 rows whose last column is nearly the sum of the others (cond ~ 1/noise)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:, -1] = X[:, :-1].sum(1) + noise * rng.normal(size=n)
    return (X + 3.0).astype(np.float32)


def is32(res, *fields):
    for f in fields:
        v = getattr(res, f)
        mpi_assert(v.dtype == np.float32, f"{f} is {v.dtype}, not float32")


@pytest.mark.parametrize("make", [offset_data, collinear_data])
@pytest.mark.parametrize("input_dtype", [np.float32, np.float64])
def test_moments_and_covariance_float(make, input_dtype):
    X32 = make()
    X = X32.astype(np.float64)                 # the exact values of the float32 rows
    mine = my_block(X32 if input_dtype == np.float32 else X)
    res = cml.low_order_moments(fptype="float", distributed=True).compute(mine)
    is32(res, "mean", "variance", "minimum", "sum", "sumSquaresCentered")
    tol = 8 * EPS32
    mpi_allclose(res.mean, X.mean(0, keepdims=True), rtol=tol, atol=0, what="mean")
    mpi_allclose(res.variance, X.var(0, ddof=1, keepdims=True), rtol=tol, atol=0, what="variance")
    mpi_allclose(res.minimum, X.min(0, keepdims=True), rtol=0, atol=0, what="min")
    same_on_every_rank(res)
    cov = cml.covariance(fptype="float", distributed=True).compute(mine)
    is32(cov, "covariance", "correlation", "mean")
    ref = np.cov(X, rowvar=False)
    # products rounded in float32 within a block: error ~ eps32 * sqrt(rows) * |C|
    mpi_allclose(cov.covariance, ref, rtol=0, atol=64 * EPS32 * np.abs(ref).max(), what="cov")
    mpi_allclose(cov.correlation, np.corrcoef(X, rowvar=False), rtol=0, atol=64 * EPS32, what="corr")
    same_on_every_rank(cov)


def test_double_on_float32_input_matches_float64():
    X32 = offset_data()
    X = X32.astype(np.float64)
    res = cml.covariance(distributed=True).compute(my_block(X32))
    mpi_assert(res.covariance.dtype == np.float64, res.covariance.dtype)
    ref = np.cov(X, rowvar=False)
    mpi_allclose(res.covariance, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max(), what="cov")
    mom = cml.low_order_moments(distributed=True).compute(my_block(X32))
    mpi_allclose(mom.variance, X.var(0, ddof=1, keepdims=True), rtol=1e-9, atol=0, what="var")
    Y = X @ np.arange(1.0, 7.0)[:, None] + 2.0
    lr = cml.linear_regression_training(interceptFlag=True, distributed=True).compute(
        my_block(X32), my_block(Y.astype(np.float32)))
    beta = np.linalg.lstsq(np.c_[np.ones(len(X)), X], Y.astype(np.float32).astype(float), rcond=None)[0]
    mpi_assert(lr.model.Beta.dtype == np.float64, lr.model.Beta.dtype)
    mpi_allclose(lr.model.Beta[0, 1:], beta[1:, 0], rtol=1e-6, atol=1e-6, what="beta")


@pytest.mark.parametrize("method", ["normEqDense", "qrDense"])
@pytest.mark.parametrize("intercept", [True, False])
def test_regression_float_on_collinear_data(method, intercept):
    X32 = collinear_data(noise=0.1)
    X = X32.astype(np.float64)
    rng = np.random.default_rng(9)
    Y32 = (X @ rng.normal(size=(X.shape[1], 2)) + 0.01 * rng.normal(size=(len(X), 2)) + 5.0
           ).astype(np.float32)
    Y = Y32.astype(np.float64)
    A = np.c_[np.ones(len(X)), X] if intercept else X
    ref = np.linalg.lstsq(A, Y, rcond=None)[0].T
    res = cml.linear_regression_training(method=method, interceptFlag=intercept, fptype="float",
                                         distributed=True).compute(my_block(X32), my_block(Y32))
    is32(res.model, "Beta")
    beta = res.model.Beta if intercept else res.model.Beta[:, 1:]
    cond = np.linalg.cond(X - X.mean(0) if intercept else X)
    # normal equations square the condition number; QR does not
    tol = (cond ** 2 if method == "normEqDense" else cond) * 64 * EPS32
    mpi_allclose(beta, ref, rtol=0, atol=tol * np.abs(ref).max(), what=f"{method} beta (cond {cond:.0f})")
    same_on_every_rank(res)
    pred = cml.linear_regression_prediction(fptype="float", distributed=True).compute(
        my_block(X32), res.model)
    is32(pred, "prediction")
    want = my_block(A @ ref.T)
    mpi_allclose(pred.prediction, want, rtol=0, atol=tol * np.abs(Y).max(), what="prediction")


def test_ridge_float():
    X32 = offset_data(offset=100.0)
    X = X32.astype(np.float64)
    Y = (X @ np.linspace(-1, 1, X.shape[1])[:, None]).astype(np.float32)
    from sklearn.linear_model import Ridge

    ref = Ridge(alpha=2.0).fit(X, Y.astype(np.float64))
    res = cml.ridge_regression_training(ridgeParameters=2.0, interceptFlag=True, fptype="float",
                                        distributed=True).compute(my_block(X32), my_block(Y))
    is32(res.model, "Beta")
    mpi_allclose(res.model.Beta[:, 1:], ref.coef_.reshape(1, -1), rtol=0, atol=1e-4, what="ridge coef")


def test_naive_bayes_float():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, size=(901, 1)).astype(np.float32)
    X32 = rng.poisson(2.0 + y, size=(901, 4)).astype(np.float32)
    res = cml.multinomial_naive_bayes_training(3, fptype="float", distributed=True).compute(
        my_block(X32), my_block(y))
    is32(res.model, "LogP", "LogTheta")
    from sklearn.naive_bayes import MultinomialNB

    ref = MultinomialNB(fit_prior=False).fit(X32.astype(float), y[:, 0])
    mpi_allclose(res.model.LogTheta, ref.feature_log_prob_, rtol=0, atol=16 * EPS32, what="LogTheta")
    pred = cml.multinomial_naive_bayes_prediction(3, fptype="float", distributed=True).compute(
        my_block(X32), res.model)
    is32(pred, "prediction")
    mpi_allclose(pred.prediction[:, 0], my_block(ref.predict(X32.astype(float))), what="labels")


@pytest.mark.parametrize("input_dtype", [np.float32, np.float64])
def test_kmeans_float(input_dtype):
    rng = np.random.default_rng(6)
    centres = rng.normal(scale=10.0, size=(4, 3)) + 1e3
    X32 = (centres[rng.integers(0, 4, size=800)] + rng.normal(size=(800, 3))).astype(np.float32)
    X = X32.astype(np.float64)
    mine = my_block(X32 if input_dtype == np.float32 else X)
    init = cml.kmeans_init(4, method="plusPlusDense", fptype="float", distributed=True).compute(mine)
    is32(init, "centroids")
    init64 = cml.kmeans_init(4, method="plusPlusDense", distributed=True).compute(my_block(X))
    mpi_allclose(init.centroids, init64.centroids, rtol=0, atol=0, what="same picks")
    res = cml.kmeans(4, maxIterations=20, fptype="float", distributed=True).compute(mine, init.centroids)
    ref = cml.kmeans(4, maxIterations=20, distributed=True).compute(my_block(X), init64.centroids)
    is32(res, "centroids", "objectiveFunction")
    mpi_allclose(res.assignments, ref.assignments, rtol=0, atol=0, what="assignments")
    mpi_allclose(res.centroids, ref.centroids, rtol=4 * EPS32, atol=0, what="centroids")
    mpi_allclose(res.objectiveFunction, ref.objectiveFunction, rtol=1e-5, atol=0, what="objective")
    same_on_every_rank(res.centroids)


@pytest.mark.parametrize("method", ["correlationDense", "svdDense"])
def test_pca_svd_float(method):
    X32 = collinear_data(noise=0.3)
    X = X32.astype(np.float64)
    res = cml.pca(method=method, fptype="float", distributed=True).compute(my_block(X32))
    is32(res, "eigenvalues", "eigenvectors")
    Z = (X - X.mean(0)) / X.std(0, ddof=1)
    ref = np.sort(np.linalg.eigvalsh(Z.T @ Z / (len(X) - 1)))[::-1]
    mpi_allclose(res.eigenvalues[0], ref, rtol=0, atol=256 * EPS32 * ref[0], what="eigenvalues")
    sv = cml.svd(fptype="float", distributed=True).compute(my_block(X32))
    is32(sv, "singularValues", "rightSingularMatrix", "leftSingularMatrix")
    s = np.linalg.svd(X, compute_uv=False)
    mpi_allclose(sv.singularValues[0], s, rtol=0, atol=16 * EPS32 * s[0], what="singular values")
