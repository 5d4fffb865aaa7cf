"""Kernels for sparse CSR rows (daal4py's ``fastCSR`` / ``lloydCSR`` methods).

Each function takes a ``scipy.sparse`` CSR array of a block of rows and
returns the same partial as its dense counterpart (so the dense ``merge`` and
``finalize`` apply unchanged); the work touches only stored values, and no
dense copy of the block is made.  Implicit zeros count as values: a column
with ``nnz < n`` stored values has ``n - nnz`` zeros.

Moments use the stored values' deviations from the block mean plus the
implicit zeros' share, ``sum_nz (x - mean)^2 + (n - nnz) mean^2``, so no raw
sum of squares is subtracted.  Cross products are ``X^T X - n mean mean^T``
(sparse ``X^T X`` densified only as the ``p x p`` result), the formula
daal4py's CSR covariance uses; it loses precision for data far from the
origin, which sparse data seldom is.
"""

from __future__ import annotations

import numpy as np

from .covariance import CrossProducts
from .moments import Moments

__all__ = [
    "cov_partial",
    "dist_to_assigned",
    "first_rows",
    "lloyd_assign",
    "moments_partial",
    "nb_joint_log_likelihood",
    "nb_partial",
    "nb_predict",
    "picked_rows",
    "row_sqnorms",
]


def _colstats(X):
    n, d = X.shape
    idx, val = X.indices, X.data
    nnz = np.bincount(idx, minlength=d)
    s = np.bincount(idx, weights=val, minlength=d)
    return n, d, idx, val, nnz, s


def moments_partial(X) -> Moments:
    """:class:`~clusterml.kernels.moments.Moments` of the rows of the CSR array ``X``."""
    n, d, idx, val, nnz, s = _colstats(X)
    if n == 0:
        return Moments.empty(d)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = s / n
        dev = val - mean[idx]
        m2 = np.bincount(idx, weights=dev * dev, minlength=d) + (n - nnz) * mean * mean
        ss = np.bincount(idx, weights=val * val, minlength=d)
    mn = np.full(d, np.inf)
    mx = np.full(d, -np.inf)
    with np.errstate(invalid="ignore"):  # NaN: reported by the caller (is_finite)
        np.minimum.at(mn, idx, val)
        np.maximum.at(mx, idx, val)
    has_zero = nnz < n
    mn[has_zero] = np.minimum(mn[has_zero], 0.0)
    mx[has_zero] = np.maximum(mx[has_zero], 0.0)
    return Moments(n, mean, m2, mn, mx, s, ss)


def cov_partial(X) -> CrossProducts:
    """:class:`~clusterml.kernels.covariance.CrossProducts` of the CSR array ``X``."""
    n, d = X.shape
    if n == 0:
        return CrossProducts.empty(d)
    s = np.asarray(X.sum(axis=0)).reshape(-1)
    mean = s / n
    with np.errstate(over="ignore", invalid="ignore"):
        G = (X.T @ X).toarray()
        cp = G - n * np.outer(mean, mean)
    return CrossProducts(n, mean, cp)


def nb_partial(X, labels, n_classes: int):
    """Per-class sums of the feature counts (``n_classes x p``) of the CSR array ``X``.

    Returns ``(counts, ok)`` as :func:`clusterml.kernels.naive_bayes.partial`:
    ``ok`` is False for a label that is not an integer in range or a negative
    or non-finite value (the caller then finds the first one).
    """
    import scipy.sparse as sp

    n, p = X.shape
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    ok = bool(np.all(np.isfinite(X.data)) and (X.data.size == 0 or X.data.min() >= 0)
              and np.all((y >= 0) & (y < n_classes) & (y == np.floor(y))))
    if not ok or n == 0:
        return np.zeros((n_classes, p)), ok
    Y = sp.csr_array((np.ones(n), (y.astype(np.int64), np.arange(n))), shape=(n_classes, n))
    return np.asarray((Y @ X).toarray()), ok


def nb_joint_log_likelihood(X, log_p, log_theta) -> np.ndarray:
    """``X @ log_theta^T + log_p^T`` (``n x n_classes``) for CSR rows."""
    return np.asarray(X @ np.ascontiguousarray(log_theta.T)) + log_p.reshape(1, -1)


def nb_predict(X, log_p, log_theta, labels=True, probabilities=False, log_probabilities=False):
    """Naive Bayes labels and (log-)posteriors of CSR rows (as kernels.naive_bayes.predict)."""
    from scipy.special import logsumexp

    jll = nb_joint_log_likelihood(X, log_p, log_theta)
    logprob = jll - logsumexp(jll, axis=1, keepdims=True) if (probabilities or log_probabilities) \
        else None
    return {
        "prediction": np.argmax(jll, axis=1).astype(np.float64).reshape(-1, 1) if labels else None,
        "probabilities": np.exp(logprob) if probabilities else None,
        "logProbabilities": logprob if log_probabilities else None,
    }


def row_sqnorms(X) -> np.ndarray:
    """Squared norm of each row of the CSR array ``X``."""
    return np.asarray(X.multiply(X).sum(axis=1)).reshape(-1)


def dist_to_assigned(X, C: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Squared distance of each CSR row to ``C[labels[i]]``, from the stored values only."""
    n = X.shape[0]
    row = np.repeat(np.arange(n), np.diff(X.indptr))
    dots = np.bincount(row, weights=X.data * C[labels[row], X.indices], minlength=n)
    d2 = row_sqnorms(X) - 2.0 * dots + np.einsum("ij,ij->i", C, C)[labels]
    return np.maximum(d2, 0.0)


def lloyd_assign(X, C: np.ndarray, shift: np.ndarray, labels: np.ndarray, accumulate: bool = True):
    """One Lloyd pass over CSR rows: nearest centroid, shifted sums, counts, objective, changes.

    Distances are ``||x||^2 - 2 x.c + ||c||^2`` with ``X C^T`` a sparse-dense
    product (``n x k``); the sums are ``Y X`` for the sparse ``k x n``
    indicator ``Y``, minus ``count * shift`` (the dense kernel's convention).

    Returns
    -------
    sums : ndarray of shape (k, p)
    counts : ndarray of int64, shape (k,)
    objective : float
    changed : int
    """
    import scipy.sparse as sp

    n, p = X.shape
    k = C.shape[0]
    sums, counts = np.zeros((k, p)), np.zeros(k, dtype=np.int64)
    if n == 0:
        return sums, counts, 0.0, 0
    cc = np.einsum("ij,ij->i", C, C)
    D = np.asarray(X @ C.T) * -2.0 + cc
    new = np.argmin(D, axis=1).astype(np.int32)
    best = D[np.arange(n), new] + row_sqnorms(X)
    objective = float(np.maximum(best, 0.0).sum())
    changed = int(np.count_nonzero(new != labels))
    labels[:] = new
    if accumulate:
        counts = np.bincount(new, minlength=k).astype(np.int64)
        Y = sp.csr_array((np.ones(n), (new.astype(np.int64), np.arange(n))), shape=(k, n))
        sums = np.asarray((Y @ X).toarray()) - counts[:, None] * shift
    return sums, counts, objective, changed


def first_rows(X, offset: int, k: int) -> np.ndarray:
    """The rows of ``X`` among the first ``k`` global rows (``offset`` = global index of row 0), dense."""
    take = max(0, min(X.shape[0], k - offset))
    return X[:take].toarray()


def picked_rows(X, offset: int, picks: np.ndarray):
    """``(order, rows)``: positions in ``picks`` of the global rows held here, and those rows, dense."""
    order = np.flatnonzero((picks >= offset) & (picks < offset + X.shape[0]))
    return order, X[picks[order] - offset].toarray()
