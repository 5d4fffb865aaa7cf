"""pca, pca_transform and svd under MPI vs NumPy on all rows (rank 1 empty when size > 1)."""

import pickle

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

import clusterml as cml


def full_data(n=403, p=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) @ rng.normal(size=(p, p))
    return X * np.array([1, 10, 0.1, 1, 100, 1])[:p] + 50.0


def normalise_rows(V):
    V = np.array(V, dtype=float, copy=True)
    idx = np.argmax(np.abs(V), axis=1)
    V[V[np.arange(len(V)), idx] < 0] *= -1
    return V


def gather_rows(A):
    return np.vstack(world().allgather(A))


def corr_eig(X):
    w, v = np.linalg.eigh(np.corrcoef(X, rowvar=False))
    return w[::-1], normalise_rows(v[:, ::-1].T)


@pytest.mark.parametrize("method", ["correlationDense", "svdDense", "defaultDense"])
@pytest.mark.parametrize("k", [0, 2])
def test_pca_matches_eigh_of_correlation(method, k):
    X = full_data()
    res = cml.pca(method=method, nComponents=k, isDeterministic=True, distributed=True).compute(my_block(X))
    w, V = corr_eig(X)
    kk = k or X.shape[1]
    mpi_assert(res.eigenvalues.shape == (1, kk) and res.eigenvectors.shape == (kk, X.shape[1]),
               f"shapes {res.eigenvalues.shape} {res.eigenvectors.shape}")
    mpi_allclose(res.eigenvalues, w[:kk].reshape(1, -1), rtol=1e-9, atol=1e-12, what="eigenvalues")
    mpi_allclose(res.eigenvectors, V[:kk], atol=1e-8, what="eigenvectors")
    mpi_allclose(res.means, X.mean(0, keepdims=True), rtol=1e-12, what="means")
    mpi_allclose(res.variances, X.var(0, ddof=1, keepdims=True), rtol=1e-10, what="variances")
    mpi_assert(np.all(np.diff(res.eigenvalues.ravel()) <= 0), "eigenvalues descending")
    same_on_every_rank(res, "pca result")
    mpi_assert(pickle.loads(pickle.dumps(res)).eigenvalues.shape == (1, kk), "pickles")


def test_pca_methods_agree_and_signs_free_without_determinism():
    X = full_data(seed=1)
    a = cml.pca(method="correlationDense", distributed=True).compute(my_block(X))
    b = cml.pca(method="svdDense", distributed=True).compute(my_block(X))
    mpi_allclose(a.eigenvalues, b.eigenvalues, rtol=1e-9, what="methods agree")
    mpi_allclose(normalise_rows(a.eigenvectors), normalise_rows(b.eigenvectors), atol=1e-8,
                 what="eigenvectors agree")
    same_on_every_rank(b, "svdDense result")


def test_pca_results_to_compute():
    X = full_data()
    res = cml.pca(resultsToCompute="mean", distributed=True).compute(my_block(X))
    mpi_assert(set(res.dataForTransform) == {"mean"}, f"{res.dataForTransform.keys()}")
    mpi_assert(res.means.shape == (1, 6) and res.variances.shape == (1, 6), "means/variances returned")


def test_pca_transform_each_rank_its_rows():
    X = full_data()
    res = cml.pca(isDeterministic=True, distributed=True).compute(my_block(X))
    mine = my_block(X)
    tr = cml.pca_transform(nComponents=3, distributed=True).compute(mine, res.eigenvectors,
                                                                    res.dataForTransform)
    mpi_assert(tr.transformedData.shape == (len(mine), 3), f"{tr.transformedData.shape}")
    w, V = corr_eig(X)
    Z = (X - X.mean(0)) / X.std(0, ddof=1)
    ref = Z @ V[:3].T / np.sqrt(w[:3])
    mpi_allclose(gather_rows(tr.transformedData), ref, rtol=1e-7, atol=1e-8, what="whitened scores")
    # The pca result itself may be passed; no dataForTransform -> its own.
    tr2 = cml.pca_transform(nComponents=3, distributed=True).compute(mine, res)
    mpi_allclose(tr2.transformedData, tr.transformedData, rtol=0, atol=0, what="result as input")
    # Only centring: plain projection of centred data.
    tr3 = cml.pca_transform(distributed=True).compute(mine, res.eigenvectors, {"mean": res.means})
    mpi_allclose(gather_rows(tr3.transformedData), (X - X.mean(0)) @ res.eigenvectors.T,
                 rtol=1e-9, atol=1e-8, what="centred projection")


def test_svd_matches_numpy():
    X = full_data()
    res = cml.svd(distributed=True).compute(my_block(X))
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    mpi_allclose(res.singularValues, s.reshape(1, -1), rtol=1e-12, what="singular values")
    signs = np.sign(np.sum(res.rightSingularMatrix * Vt, axis=1))
    mpi_allclose(res.rightSingularMatrix * signs[:, None], Vt, atol=1e-9, what="V^T")
    mine = my_block(X)
    mpi_assert(res.leftSingularMatrix.shape == mine.shape, f"{res.leftSingularMatrix.shape}")
    U_all = gather_rows(res.leftSingularMatrix)
    mpi_allclose(U_all * signs, U, atol=1e-9, what="U")
    mpi_allclose(U_all.T @ U_all, np.eye(X.shape[1]), atol=1e-12, what="U orthonormal")
    mpi_allclose(res.leftSingularMatrix * res.singularValues @ res.rightSingularMatrix, mine, atol=1e-9,
                 what="U S V^T = local rows")
    same_on_every_rank((res.singularValues, res.rightSingularMatrix), "singular values and V^T")


def test_svd_without_left_vectors_and_with_zero_singular_values():
    X = full_data(p=5)
    X[:, 4] = X[:, 0] + X[:, 1]
    res = cml.svd(leftSingularMatrix="notRequired", distributed=True).compute(my_block(X))
    mpi_assert(res.leftSingularMatrix is None, "no U")
    mpi_allclose(res.singularValues, np.linalg.svd(X, compute_uv=False).reshape(1, -1), rtol=1e-10,
                 atol=1e-9, what="singular values")
    full = cml.svd(distributed=True).compute(my_block(X))
    mpi_assert(np.all(np.isfinite(full.leftSingularMatrix)), "U finite with a zero singular value")
    U_all = gather_rows(full.leftSingularMatrix)
    mpi_allclose(U_all.T @ U_all, np.eye(5), atol=1e-12, what="U orthonormal")


def test_all_rows_on_the_last_rank():
    X = full_data(n=40)
    counts = [0] * size()
    counts[-1] = len(X)
    res = cml.svd(distributed=True).compute(my_block(X, counts))
    mpi_allclose(res.singularValues, np.linalg.svd(X, compute_uv=False).reshape(1, -1), rtol=1e-12,
                 what="singular values")


def test_errors_on_every_rank():
    X = full_data(n=20, p=6)
    few = X[:4]  # 4 rows in total, fewer than the 6 columns
    expect_distributed_error(lambda: cml.svd(distributed=True).compute(my_block(few)),
                             "at least 6 rows", cml.InputError)
    expect_distributed_error(lambda: cml.pca(distributed=True).compute(my_block(X[:1])),
                             "at least 2 rows", cml.InputError)
    expect_distributed_error(lambda: cml.pca(nComponents=9, distributed=True).compute(my_block(X)),
                             "nComponents=9", cml.ParameterError)
    expect_distributed_error(lambda: cml.pca(resultsToCompute="mean|stddev"), "'stddev'",
                             cml.ParameterError)
    res = cml.pca(distributed=True).compute(my_block(X))
    expect_distributed_error(
        lambda: cml.pca_transform(distributed=True).compute(my_block(X[:, :5]), res.eigenvectors),
        "expected k x 5", cml.InputError)
    # eigenvectors that differ between ranks still raise everywhere (no hang).
    bad = res.eigenvectors if rank() != size() - 1 else res.eigenvectors[:, :4]
    expect_distributed_error(lambda: cml.pca_transform(distributed=True).compute(my_block(X), bad),
                             "eigenvectors have shape", cml.InputError)
