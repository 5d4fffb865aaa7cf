"""QR and one-pass PCA kernels: rows split into k chunks (some empty) and merged, vs NumPy."""

from functools import reduce

import numpy as np
import pytest

from clusterml.kernels import covariance as cov_k
from clusterml.kernels import pca as pca_k
from clusterml.kernels import qr as qr_k
from clusterml.kernels import tsqr
from clusterml.kernels.blocks import iter_blocks

SPLITS = [[1.0], [0.2, 0.0, 0.5, 0.3], [0.01, 0.99]]


def chunks(X, weights):
    cuts = np.cumsum(np.floor(np.array(weights) * len(X)).astype(int))[:-1]
    return np.split(X, cuts)


def conditioned(cond, n=257, p=7, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.normal(size=(n, p)))
    W, _ = np.linalg.qr(rng.normal(size=(p, p)))
    return U @ np.diag(np.logspace(0, -np.log10(cond), p)) @ W.T


@pytest.mark.parametrize("weights", SPLITS)
@pytest.mark.parametrize("cond", [1.0, 1e14])
def test_tsqr_q_r_over_parts(weights, cond):
    X = conditioned(cond)
    parts = [tsqr.local_qr(iter_blocks(B, 40), X.shape[1], n_rows=len(B)) for B in chunks(X, weights)]
    fin = qr_k.finalize([lq.r for lq in parts])
    Q = np.vstack([qr_k.q_rows(lq, W) for lq, W in zip(parts, fin["q_factors"], strict=True)])
    R = fin["matrixR"]
    assert np.all(np.diag(R) >= 0) and np.array_equal(R, np.triu(R))
    assert np.linalg.norm(Q @ R - X) / np.linalg.norm(X) < 1e-13
    assert np.linalg.norm(Q.T @ Q - np.eye(X.shape[1])) < 1e-13


def test_merge_local_is_one_more_tree_level():
    X = conditioned(1e6)
    pieces = chunks(X, [0.3, 0.0, 0.7])
    lqs = [tsqr.local_qr(iter_blocks(B), X.shape[1], n_rows=len(B)) for B in pieces]
    R, split = qr_k.merge_local(lqs)
    fin = qr_k.finalize([R])
    Q = np.vstack([qr_k.q_rows(lq, W) for lq, W in zip(lqs, split(fin["q_factors"][0]), strict=True)])
    assert np.linalg.norm(Q @ fin["matrixR"] - X) / np.linalg.norm(X) < 1e-13
    assert np.linalg.norm(Q.T @ Q - np.eye(X.shape[1])) < 1e-13


@pytest.mark.parametrize("weights", SPLITS)
def test_one_pass_svd_dense_pca_equals_correlation(weights):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5)) * [1, 100, 0.01, 1, 10] + 1e6
    total = reduce(pca_k.centred_r_merge, [pca_k.centred_r_partial(B) for B in chunks(X, weights)])
    got = pca_k.from_centred_r(total, deterministic=True)
    ref = pca_k.from_crossproducts(cov_k.partial(X), deterministic=True)
    w = np.linalg.eigvalsh(np.corrcoef(X.T))[::-1]
    np.testing.assert_allclose(got["eigenvalues"].ravel(), w, rtol=1e-9)
    np.testing.assert_allclose(got["eigenvectors"], ref["eigenvectors"], atol=1e-8)
    np.testing.assert_allclose(got["variances"].ravel(), X.var(0, ddof=1), rtol=1e-9)
