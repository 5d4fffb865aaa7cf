"""Covariance and correlation: partial, merge and finalize.

The partial of a block keeps its count, mean and centred cross-product matrix
``C = (X - mean)^T (X - mean)`` (computed with BLAS ``dsyrk`` on a
cache-sized block).  Partials merge with the multivariate form of the
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

from .blocks import iter_blocks
from .moments import chan_mean

__all__ = ["CrossProducts", "partial", "merge", "finalize", "correlation_from_covariance"]


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


def _centred_gram(C: np.ndarray) -> np.ndarray:
    """Full symmetric C^T C through dsyrk (C is a C-ordered block, so C.T is Fortran-ordered)."""
    upper = dsyrk(1.0, C.T, trans=0, lower=0)
    return np.triu(upper) + np.triu(upper, 1).T


def partial(X: np.ndarray, block_rows: int | None = None) -> CrossProducts:
    """Centred cross products of the rows of ``X``, a block at a time.

    Parameters
    ----------
    X : ndarray of shape (n_local, n_features)

    Returns
    -------
    CrossProducts
    """
    d = X.shape[1]
    n, mean, cp = 0, np.zeros(d), np.zeros((d, d))
    for B in iter_blocks(X, block_rows):
        nb = B.shape[0]
        mb = B.sum(axis=0) / nb
        C = np.subtract(B, mb, order="C")
        cpb = _centred_gram(C)
        if n == 0:
            n, mean, cp = nb, mb, cpb
            continue
        n, delta, mean, w = chan_mean(n, mean, nb, mb)
        cp += cpb
        cp += w * np.outer(delta, delta)
    return CrossProducts(n, mean, cp)


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
