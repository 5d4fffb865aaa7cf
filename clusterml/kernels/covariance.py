"""Covariance and correlation: partial, merge and finalize.

The partial of a rank's rows keeps its count, mean and centred cross-product
matrix ``C = (X - mean)^T (X - mean)`` (BLAS ``dsyrk`` on cache-sized
blocks).  Partials merge with the multivariate form of the
Chan/Pébay update (see :mod:`clusterml.kernels.moments`)::

    C = C_a + C_b + (na * nb / n) * delta delta^T

References
----------
P. Pébay, "Formulas for robust, one-pass parallel computation of covariances
and arbitrary-order statistical moments", Sandia report SAND2008-6212, 2008.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg.blas import dsyrk

from .blocks import block_rows as block_rows_for
from .fused import shift_and_sum
from .moments import as_plain, chan_mean, shift_for

__all__ = ["CrossProducts", "partial", "merge", "finalize", "is_finite", "correlation_from_covariance"]


@dataclass
class CrossProducts:
    """Count, mean and centred cross-product matrix of a set of rows.

    Attributes
    ----------
    n : int
    mean : ndarray of shape (n_features,)
    cp : ndarray of shape (n_features, n_features)
        Symmetric, centred sums of cross products.
    """

    n: int
    mean: np.ndarray
    cp: np.ndarray

    @classmethod
    def empty(cls, d: int) -> "CrossProducts":
        return cls(0, np.zeros(d), np.zeros((d, d)))


def partial(X: np.ndarray, *more: np.ndarray, block_rows: int | None = None,
            centre: bool = True) -> CrossProducts:
    """Centred cross products of the rows of ``[X, *more]``, a block at a time.

    Each block is shifted by a value near the column means (one fused pass
    that also sums the shifted columns, into a reused block-sized buffer) and
    its Gram matrix is accumulated with BLAS ``dsyrk``.  The centred matrix is
    ``G - s s^T / n`` for the shifted Gram ``G`` and sums ``s``: with the
    shift near the mean the subtraction loses only a few ulps, so data offset
    by 1e9 keeps its covariance.

    Parameters
    ----------
    X : ndarray of shape (n_local, p)
    *more : ndarray of shape (n_local, r)
        Further columns (regression responses, for instance), taken as if
        stacked beside ``X`` -- without making that stacked copy.
    block_rows : int, optional
        Rows per block (default: about 2 MiB of data).
    centre : bool
        False: ``cp`` is the raw Gram matrix ``[X, *more]^T [X, *more]``
        (no shift), for models without an intercept.

    Returns
    -------
    CrossProducts
        NaN or infinity in the data shows as non-finite values (see :func:`is_finite`).
    """
    cols = [as_plain(a) for a in (X,) + more]
    n = X.shape[0]
    widths = [a.shape[1] for a in cols]
    d = sum(widths)
    if n == 0:
        return CrossProducts.empty(d)
    shift = np.concatenate([shift_for(a) for a in cols]) if centre else np.zeros(d)
    offsets = np.cumsum([0] + widths)
    rows = block_rows or block_rows_for(d)
    buf = np.empty((min(rows, n), d))
    gram = np.zeros((d, d), order="F")
    total = np.zeros(d)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        m = stop - start
        for a, lo, hi in zip(cols, offsets[:-1], offsets[1:]):
            total[lo:hi] += shift_and_sum(a[start:stop], shift[lo:hi], buf[:m, lo:hi])
        # buf[:m] is C-ordered, so its transpose is Fortran-ordered: dsyrk reads it in place
        gram = dsyrk(1.0, buf[:m].T, beta=1.0, c=gram, trans=0, lower=0, overwrite_c=1)
    upper = np.triu(gram)
    cp = upper + np.triu(upper, 1).T
    if centre:
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite data: see is_finite
            cp -= np.outer(total, total) / n
    return CrossProducts(n, shift + total / n, cp)


def is_finite(c: CrossProducts) -> bool:
    """False if the rows behind ``c`` held NaN or infinity (or their products overflow)."""
    return bool(np.all(np.isfinite(c.mean)) and np.all(np.isfinite(np.diag(c.cp))))


def merge(a: CrossProducts, b: CrossProducts) -> CrossProducts:
    """Merge the cross products of two disjoint sets of rows (associative, pure)."""
    if b.n == 0:
        return a
    if a.n == 0:
        return b
    n, delta, mean, w = chan_mean(a.n, a.mean, b.n, b.mean)
    return CrossProducts(n, mean, a.cp + b.cp + w * np.outer(delta, delta))


def correlation_from_covariance(cov: np.ndarray) -> np.ndarray:
    """Correlation matrix; a constant column gets 0 correlations and 1 on the diagonal."""
    sd = np.sqrt(np.diag(cov))
    safe = np.where(sd > 0, sd, 1.0)
    corr = cov / np.outer(safe, safe)
    zero = sd == 0
    corr[zero, :] = 0.0
    corr[:, zero] = 0.0
    np.fill_diagonal(corr, 1.0)
    return corr


def finalize(c: CrossProducts) -> dict:
    """daal4py's fields: covariance (divides by n - 1), correlation, mean (1 x n_features)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = c.cp / (c.n - 1) if c.n > 1 else np.full_like(c.cp, np.nan)
    return {
        "covariance": cov,
        "correlation": correlation_from_covariance(cov) if c.n > 1 else np.full_like(cov, np.nan),
        "mean": c.mean.reshape(1, -1).copy(),
    }
