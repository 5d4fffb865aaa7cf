"""The CSR kernels against the dense ones: split into chunks (one empty), merge, compare."""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from clusterml.kernels import covariance as cov_k
from clusterml.kernels import kmeans as km_k
from clusterml.kernels import moments as mom_k
from clusterml.kernels import naive_bayes as nb_k
from clusterml.kernels import sparse as sparse_k

RNG = np.random.default_rng(5)
X = RNG.normal(size=(230, 7)) * (RNG.random((230, 7)) < 0.3)
X[:, 3] = 2.5                        # a column without zeros
X[:, 5] = 0.0                        # a column with no stored value
BOUNDS = [0, 40, 40, 170, 230]       # chunk 1 is empty


def chunks(A):
    return [A[a:b] for a, b in itertools.pairwise(BOUNDS)]


@pytest.mark.parametrize("kernel,dense,merge,fields", [
    (sparse_k.moments_partial, mom_k.partial, mom_k.merge,
     ("n", "mean", "m2", "minimum", "maximum", "sum", "sumsq")),
    (sparse_k.cov_partial, cov_k.partial, cov_k.merge, ("n", "mean", "cp")),
])
def test_partials_merge_to_dense(kernel, dense, merge, fields):
    S = sp.csr_array(X)
    got = None
    for C in chunks(S):
        part = kernel(C)
        got = part if got is None else merge(got, part)
    want = dense(X)
    for f in fields:
        np.testing.assert_allclose(getattr(got, f), getattr(want, f), rtol=1e-12, atol=1e-12,
                                   err_msg=f)


def test_naive_bayes_counts_and_prediction():
    C = np.abs(np.round(X * 3))
    y = np.arange(len(C)) % 3
    counts, ok = sparse_k.nb_partial(sp.csr_array(C), y, 3)
    ref, ref_ok = nb_k.partial(C, y.astype(float), 3)
    assert ok and ref_ok
    np.testing.assert_allclose(counts, ref, rtol=0)
    fin = nb_k.finalize(counts, np.ones(C.shape[1]), np.full(3, 1 / 3))
    got = sparse_k.nb_predict(sp.csr_array(C), fin["LogP"], fin["LogTheta"], probabilities=True)
    want = nb_k.predict(C, fin["LogP"], fin["LogTheta"], probabilities=True)
    np.testing.assert_array_equal(got["prediction"], want["prediction"])
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], rtol=1e-12)
    _, ok = sparse_k.nb_partial(sp.csr_array(-C), y, 3)
    assert not ok


def test_lloyd_on_csr_chunks_equals_dense():
    C0 = X[[0, 50, 120, 200]] + 0.01
    dense = km_k.lloyd(km_k.Chunks.split(X, np.diff(BOUNDS).tolist()), C0, 12)
    team = km_k.Chunks([km_k.Rows(sp.csr_array(X[a:b]), offset=a) for a, b in itertools.pairwise(BOUNDS)])
    got = km_k.lloyd(team, C0, 12)
    np.testing.assert_allclose(got[0], dense[0], rtol=1e-10, atol=1e-12)
    assert abs(got[1] - dense[1]) <= 1e-9 * dense[1] and got[2] == dense[2]
