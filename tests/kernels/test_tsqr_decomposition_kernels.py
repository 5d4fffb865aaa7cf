"""TSQR, SVD and PCA kernels in one process: k chunks merged == NumPy on all rows."""

import itertools

import numpy as np
import pytest

from clusterml.kernels import covariance as cov_k
from clusterml.kernels import moments as mom_k
from clusterml.kernels import pca as pca_k
from clusterml.kernels import svd as svd_k
from clusterml.kernels import tsqr
from clusterml.kernels.blocks import iter_blocks


def chunks(X, sizes):
    bounds = np.cumsum([0] + list(sizes))
    assert bounds[-1] == len(X)
    return [X[a:b] for a, b in itertools.pairwise(bounds)]


def normalise_rows(V):
    """Signs fixed so the largest-magnitude entry of each row is positive."""
    V = V.copy()
    idx = np.argmax(np.abs(V), axis=1)
    V[V[np.arange(len(V)), idx] < 0] *= -1
    return V


def data(n=300, p=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, p)) @ rng.normal(size=(p, p)) + rng.normal(size=p)


@pytest.mark.parametrize("block", [1, 4, 7, 64, 1000])
def test_local_r_blockwise_matches_numpy(block):
    X = data()
    R = tsqr.local_r(iter_blocks(X, block), X.shape[1])
    ref = np.linalg.qr(X, mode="r")
    assert R.shape == ref.shape
    np.testing.assert_allclose(np.abs(R), np.abs(ref), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(R.T @ R, X.T @ X, rtol=1e-10)
    assert np.allclose(R, np.triu(R))


def test_local_r_fewer_rows_than_columns_and_empty():
    X = data(n=3, p=6)
    R = tsqr.local_r(iter_blocks(X, 2), 6)
    assert R.shape == (3, 6)
    np.testing.assert_allclose(R.T @ R, X.T @ X, atol=1e-10)
    assert tsqr.local_r(iter_blocks(X[:0]), 6).shape == (0, 6)


def test_stacked_r_of_chunks_equals_r_of_all():
    X = data()
    Rs = [tsqr.local_r(iter_blocks(c, 16), 6) for c in chunks(X, [100, 0, 3, 197])]
    R = tsqr.stack_qr(Rs)
    np.testing.assert_allclose(np.abs(R), np.abs(np.linalg.qr(X, mode="r")), rtol=1e-10, atol=1e-10)


def run_svd(X, sizes, block=16, store=False):
    p = X.shape[1]
    lqs = [tsqr.local_qr(iter_blocks(c, block), p, n_rows=len(c) if store else None)
           for c in chunks(X, sizes)]
    fin = svd_k.finalize([lq.r for lq in lqs], want_u=True)
    U = np.vstack([tsqr.apply_q(lq, W) for lq, W in zip(lqs, fin["u_factors"], strict=True)])
    return fin["singularValues"], fin["rightSingularMatrix"], U


@pytest.mark.parametrize("store", [False, True])
def test_svd_of_chunks_matches_numpy(store):
    # store: the Q factors live in one array that apply_q overwrites with U (a chunk
    # of 5 rows < 6 columns, and short last blocks, included)
    X = data()
    s, Vt, U = run_svd(X, [120, 0, 5, 175], store=store)
    Ur, sr, Vtr = np.linalg.svd(X, full_matrices=False)
    np.testing.assert_allclose(s.ravel(), sr, rtol=1e-12)
    signs = np.sign(np.sum(Vt * Vtr, axis=1))
    np.testing.assert_allclose(Vt * signs[:, None], Vtr, atol=1e-10)
    np.testing.assert_allclose(U * signs, Ur, atol=1e-10)
    np.testing.assert_allclose(U @ np.diag(s.ravel()) @ Vt, X, atol=1e-10)


def test_svd_zero_singular_values_are_finite():
    X = data(p=5)
    X[:, 3] = X[:, 0] - 2 * X[:, 1]   # rank 4
    X[:, 4] = 0.0                      # rank 3
    s, Vt, U = run_svd(X, [10, 290])
    assert np.all(np.isfinite(U)) and np.all(np.isfinite(Vt))
    assert s.ravel()[-1] < 1e-12 * s.ravel()[0] and s.ravel()[-2] < 1e-12 * s.ravel()[0]
    np.testing.assert_allclose(U.T @ U, np.eye(5), atol=1e-12)
    np.testing.assert_allclose(U @ np.diag(s.ravel()) @ Vt, X, atol=1e-10)


def test_left_vectors_stay_orthonormal_when_ill_conditioned():
    # Why U = Q (Q_s U_r) and not X V / s: on cond ~1e12 the latter loses orthogonality.
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.normal(size=(400, 6)))
    W, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    X = Q @ np.diag(np.logspace(0, -12, 6)) @ W
    s, Vt, U = run_svd(X, [150, 250])
    err_q = np.abs(U.T @ U - np.eye(6)).max()
    U_naive = X @ Vt.T / s.ravel()
    err_naive = np.abs(U_naive.T @ U_naive - np.eye(6)).max()
    assert err_q < 1e-13
    assert err_naive > 1e3 * err_q


def corr_eig(X):
    w, v = np.linalg.eigh(np.corrcoef(X, rowvar=False))
    return w[::-1], normalise_rows(v[:, ::-1].T)


@pytest.mark.parametrize("method", ["correlation", "svd"])
@pytest.mark.parametrize("k", [0, 3])
def test_pca_kernels_match_eigh_of_correlation(method, k):
    X = data(p=6) * np.array([1, 10, 100, 1e-3, 1, 5]) + 1e6
    parts = chunks(X, [50, 0, 250])
    if method == "correlation":
        cp = cov_k.partial(parts[0])
        for c in parts[1:]:
            cp = cov_k.merge(cp, cov_k.partial(c))
        res = pca_k.from_crossproducts(cp, k, True)
    else:
        m = mom_k.partial(parts[0])
        for c in parts[1:]:
            m = mom_k.merge(m, mom_k.partial(c))
        mean, scale, var = pca_k.standardiser(m)
        Rs = [tsqr.local_r(pca_k.standardised_blocks(c, mean, scale, 32), 6) for c in parts]
        res = pca_k.from_r_factors(Rs, m.n, mean, var, k, True)
    w, V = corr_eig(X)
    kk = k or 6
    assert res["eigenvalues"].shape == (1, kk) and res["eigenvectors"].shape == (kk, 6)
    # The 1e-3-scaled column sitting at 1e6 carries only ~1e-7 relative precision.
    np.testing.assert_allclose(res["eigenvalues"].ravel(), w[:kk], rtol=1e-8, atol=1e-8 * w[0])
    np.testing.assert_allclose(res["eigenvectors"], V[:kk], atol=1e-7)
    np.testing.assert_allclose(res["means"], X.mean(0, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(res["variances"], X.var(0, ddof=1, keepdims=True), rtol=1e-7)
    assert set(res["dataForTransform"]) == {"mean", "variance", "eigenvalue"}
    # The sign convention holds.
    V = res["eigenvectors"]
    assert np.all(V[np.arange(kk), np.argmax(np.abs(V), axis=1)] > 0)


def test_parse_results():
    assert pca_k.parse_results("mean|eigenvalue") == ("mean", "eigenvalue")
    assert pca_k.parse_results("none") == ()
    with pytest.raises(ValueError, match="'meen'"):
        pca_k.parse_results("meen|variance")


def test_transform_matches_formula_and_whitening_never_inf():
    X = data(p=4)
    mean, var = X.mean(0), X.var(0, ddof=1)
    Z = (X - mean) / np.sqrt(var)
    w, V = corr_eig(X)
    Y = pca_k.transform(X, V, 2, mean=mean, variance=var, block_rows=7)
    np.testing.assert_allclose(Y, Z @ V[:2].T, atol=1e-10)
    Yw = pca_k.transform(X, V, 0, mean=mean, variance=var, eigenvalue=w, block_rows=50)
    np.testing.assert_allclose(np.cov(Yw, rowvar=False), np.eye(4), atol=1e-8)
    ev = w.copy()
    ev[-1] = 0.0
    Y0 = pca_k.transform(X, V, 0, eigenvalue=ev)
    assert np.all(np.isfinite(Y0)) and np.all(Y0[:, -1] == 0)
    np.testing.assert_allclose(pca_k.transform(X, V, 3), X @ V[:3].T, atol=1e-10)
