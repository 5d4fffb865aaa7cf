"""Moments and covariance kernels in one process: k-chunk merges == NumPy on all rows."""

import functools
import pickle

import numpy as np
import pytest

from clusterml.kernels import covariance as cov_k
from clusterml.kernels import moments as mom_k


def chunks(X, k, seed=0):
    """Split X into k contiguous chunks of random (possibly zero) sizes."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, len(X) + 1, size=k - 1))
    return np.split(X, cuts)


@pytest.mark.parametrize("k", [1, 2, 5, 13])
@pytest.mark.parametrize("offset", [0.0, 1e9])
def test_moment_merges_equal_numpy(k, offset):
    rng = np.random.default_rng(k)
    X = rng.normal(size=(777, 4)) * [1, 10, 0.1, 3] + offset
    parts = [mom_k.partial(c) for c in chunks(X, k)]
    m = functools.reduce(mom_k.merge, parts)
    out = mom_k.finalize(m)
    rtol = 1e-6 if offset else 1e-11
    np.testing.assert_allclose(out["variance"][0], X.var(0, ddof=1), rtol=rtol)
    np.testing.assert_allclose(out["mean"][0], X.mean(0), rtol=1e-13)
    np.testing.assert_array_equal(out["minimum"][0], X.min(0))
    np.testing.assert_array_equal(out["maximum"][0], X.max(0))
    assert m.n == len(X)


def test_moments_gold_hand_case():
    X = np.array([[1.0, -2.0], [2.0, 0.0], [6.0, 2.0]])
    out = mom_k.finalize(mom_k.partial(X))
    np.testing.assert_allclose(out["mean"], [[3.0, 0.0]])
    np.testing.assert_allclose(out["sum"], [[9.0, 0.0]])
    np.testing.assert_allclose(out["sumSquares"], [[41.0, 8.0]])
    np.testing.assert_allclose(out["sumSquaresCentered"], [[14.0, 8.0]])
    np.testing.assert_allclose(out["variance"], [[7.0, 4.0]])
    np.testing.assert_allclose(out["standardDeviation"], [[np.sqrt(7.0), 2.0]])
    np.testing.assert_allclose(out["secondOrderRawMoment"], [[41.0 / 3, 8.0 / 3]])
    np.testing.assert_allclose(out["variation"][0, 0], np.sqrt(7.0) / 3)
    assert out["variation"].shape == (1, 2)


def test_merge_is_associative_and_empty_is_identity():
    rng = np.random.default_rng(3)
    a, b, c = (mom_k.partial(rng.normal(size=(n, 3))) for n in (5, 9, 2))
    left = mom_k.merge(mom_k.merge(a, b), c)
    right = mom_k.merge(a, mom_k.merge(b, c))
    np.testing.assert_allclose(left.m2, right.m2, rtol=1e-13)
    e = mom_k.Moments.empty(3)
    assert mom_k.merge(e, a) is a and mom_k.merge(a, e) is a


@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("offset", [0.0, 1e9])
def test_covariance_merges_equal_numpy(k, offset):
    rng = np.random.default_rng(10 + k)
    X = rng.normal(size=(1000, 6)) @ rng.normal(size=(6, 6)) + offset
    c = functools.reduce(cov_k.merge, [cov_k.partial(ch, block_rows=64) for ch in chunks(X, k)])
    out = cov_k.finalize(c)
    ref = np.cov(X, rowvar=False)
    rtol = 1e-6 if offset else 1e-11
    np.testing.assert_allclose(out["covariance"], ref, rtol=rtol, atol=rtol * np.abs(ref).max())
    np.testing.assert_allclose(out["correlation"], np.corrcoef(X, rowvar=False), atol=rtol)
    np.testing.assert_array_equal(out["covariance"], out["covariance"].T)
    assert out["mean"].shape == (1, 6)


def test_covariance_gold_and_constant_column():
    X = np.array([[1.0, 5.0, 0.0], [3.0, 5.0, 2.0], [5.0, 5.0, 7.0]])
    out = cov_k.finalize(cov_k.partial(X))
    np.testing.assert_allclose(out["covariance"], np.cov(X, rowvar=False), atol=1e-14)
    corr = out["correlation"]
    assert corr[1, 1] == 1.0 and corr[0, 1] == 0.0 and corr[1, 2] == 0.0
    assert np.all(np.isfinite(corr))


def test_results_pickle():
    out = cov_k.finalize(cov_k.partial(np.eye(3)))
    again = pickle.loads(pickle.dumps(out))
    np.testing.assert_array_equal(again["covariance"], out["covariance"])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_products_of_drifting_data_stay_accurate(dtype):
    # The first rows sit near 0 (so the kernel starts reading in place, raw products),
    # the rest far away: centring the raw products would cancel ~7 bits (G/C ~ 100);
    # the kernel notices and sums around a shift instead.
    rng = np.random.default_rng(2)
    X = rng.normal(size=(100_000, 2))
    X[1024:] += 1e4
    Y = X[:, :1] * 2.0 + rng.normal(size=(len(X), 1))
    X, Y = X.astype(dtype), Y.astype(dtype)
    ref = np.cov(np.hstack([X, Y]).astype(np.float64), rowvar=False) * (len(X) - 1)
    assert cov_k._raw_is_safe([X, Y], len(X))
    got = cov_k.partial(X, Y, block_rows=7000)
    eps = np.finfo(dtype).eps
    assert np.abs(got.cp - ref).max() <= 16 * eps * np.abs(ref).max()
    m = mom_k.partial(X)
    assert np.allclose(m.m2, np.diag(ref)[:2], rtol=64 * eps, atol=0)  # np.cov itself: ~20 eps
    # in place (raw products) when that is safe, with the same result
    Z = rng.normal(size=(3000, 4)).astype(dtype)
    refz = np.cov(Z.astype(np.float64), rowvar=False) * (len(Z) - 1)
    assert cov_k._raw_is_safe([Z], len(Z))
    assert np.abs(cov_k.partial(Z, block_rows=500).cp - refz).max() <= 64 * eps * np.abs(refz).max()
