"""Regression kernels in one process: chunks merged == NumPy lstsq / scikit-learn Ridge."""

import itertools

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from clusterml.kernels import linear_model as lm_k

SIZES = [100, 0, 7, 293]


def chunks(A, sizes=SIZES):
    bounds = np.cumsum([0] + list(sizes))
    return [A[a:b] for a, b in itertools.pairwise(bounds)]


def regression_data(n=400, p=5, r=2, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * np.arange(1, p + 1) + 10
    beta = rng.normal(size=(p, r))
    Y = X @ beta + rng.normal(size=r) + noise * rng.normal(size=(n, r))
    return X, Y


def fit(X, Y, method, intercept, ridge=None, sizes=SIZES, block_rows=32):
    p = X.shape[1]
    parts = list(zip(chunks(X, sizes), chunks(Y, sizes), strict=True))
    if method == "qr":
        return lm_k.solve_qr([lm_k.qr_partial(x, y, intercept, block_rows) for x, y in parts], p, intercept)
    g = None
    for x, y in parts:
        gp = lm_k.gram_partial(x, y, intercept, block_rows)
        g = gp if g is None else lm_k.gram_merge(g, gp)
    return lm_k.solve_normal_equations(g, p, ridge)


def lstsq_beta(X, Y, intercept):
    A = np.hstack([np.ones((len(X), 1)), X]) if intercept else X
    coef = np.linalg.lstsq(A, Y, rcond=None)[0]
    beta = np.zeros((Y.shape[1], X.shape[1] + 1))
    if intercept:
        beta[:, 0] = coef[0]
        beta[:, 1:] = coef[1:].T
    else:
        beta[:, 1:] = coef.T
    return beta


@pytest.mark.parametrize("method", ["normeq", "qr"])
@pytest.mark.parametrize("intercept", [True, False])
def test_matches_lstsq(method, intercept):
    X, Y = regression_data()
    beta = fit(X, Y, method, intercept)
    assert beta.shape == (2, 6)
    np.testing.assert_allclose(beta, lstsq_beta(X, Y, intercept), rtol=1e-8, atol=1e-8)
    if not intercept:
        assert np.all(beta[:, 0] == 0)


@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("alpha", [0.5, [0.1, 30.0]])
def test_ridge_matches_sklearn(intercept, alpha):
    X, Y = regression_data()
    beta = fit(X, Y, "normeq", intercept, ridge=np.atleast_1d(alpha))
    ref = Ridge(alpha=np.asarray(alpha) if np.ndim(alpha) else alpha, fit_intercept=intercept,
                solver="cholesky").fit(X, Y)
    np.testing.assert_allclose(beta[:, 1:], ref.coef_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(beta[:, 0], ref.intercept_ if intercept else 0.0, rtol=1e-9, atol=1e-9)


def ill_conditioned(n=600, p=5, cond=1e10, seed=0):
    """A design with cond(X) = cond (also after centring), known beta, exact responses."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, p))
    U, _ = np.linalg.qr(A - A.mean(0))           # columns orthogonal to the ones vector
    W, _ = np.linalg.qr(rng.normal(size=(p, p)))
    X = U @ np.diag(np.logspace(0, -np.log10(cond), p)) @ W.T * np.sqrt(n) + 3.0
    beta = rng.normal(size=(p, 2))
    return X, X @ beta + np.array([2.0, -1.0]), beta


def test_qr_is_far_more_accurate_than_normal_equations_when_ill_conditioned():
    X, Y, beta = ill_conditioned()
    assert np.linalg.cond(X - X.mean(0)) > 1e9
    err = {m: np.abs(fit(X, Y, m, True)[:, 1:].T - beta).max() for m in ("normeq", "qr")}
    assert err["qr"] < 1e-4 * np.abs(beta).max(), err
    assert err["normeq"] > 100 * err["qr"], err


def test_collinear_columns_give_the_minimum_norm_solution():
    X, Y = regression_data(p=3)
    X = np.hstack([X, X[:, :1]])                 # exactly duplicated feature
    for method in ("normeq", "qr"):
        beta = fit(X, Y, method, True)
        assert np.all(np.isfinite(beta))
        np.testing.assert_allclose(beta[:, 1], beta[:, 4], rtol=1e-6)   # min-norm splits evenly
        np.testing.assert_allclose(lm_k.predict(X, beta), lm_k.predict(X, lstsq_beta(X, Y, True)),
                                   rtol=1e-8, atol=1e-8)


def test_predict_blockwise():
    X, Y = regression_data()
    beta = lstsq_beta(X, Y, True)
    np.testing.assert_allclose(lm_k.predict(X, beta, block_rows=13), X @ beta[:, 1:].T + beta[:, 0])
    assert lm_k.predict(X[:0], beta).shape == (0, 2)
