"""Low-order moments: partial, merge and finalize.

The partial of a block keeps its count, mean and *centred* sum of squares
(plus min, max and the raw sums daal4py reports).  Two partials merge with the
pairwise update of Chan, Golub & LeVeque (1979), in the form given by Pébay
(2008)::

    n = na + nb,  delta = mean_b - mean_a
    mean = mean_a + delta * nb / n
    M2   = M2_a + M2_b + delta**2 * na * nb / n

which never subtracts raw sums of squares, so data offset by 1e9 keeps its
variance.

References
----------
T. F. Chan, G. H. Golub, R. J. LeVeque, "Updating formulae and a pairwise
algorithm for computing sample variances", Stanford CS tech. report, 1979.
P. Pébay, "Formulas for robust, one-pass parallel computation of covariances
and arbitrary-order statistical moments", Sandia report SAND2008-6212, 2008.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .blocks import iter_blocks

__all__ = ["Moments", "partial", "merge", "finalize", "ESTIMATES", "chan_mean"]

#: The fields each value of ``estimatesToCompute`` produces (daal4py's names).
ESTIMATES = {
    "estimatesAll": ("minimum", "maximum", "sum", "sumSquares", "sumSquaresCentered", "mean",
                     "secondOrderRawMoment", "variance", "standardDeviation", "variation"),
    "estimatesMinMax": ("minimum", "maximum"),
    "estimatesMeanVariance": ("mean", "variance"),
}


@dataclass
class Moments:
    """Summary of a block of rows.

    Attributes
    ----------
    n : int
        Number of rows.
    mean, m2, minimum, maximum, sum, sumsq : ndarray of shape (n_features,)
        Mean, centred sum of squares, extremes, raw sum and raw sum of squares.
    """

    n: int
    mean: np.ndarray
    m2: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    sum: np.ndarray
    sumsq: np.ndarray

    @classmethod
    def empty(cls, d: int) -> "Moments":
        z = np.zeros(d)
        return cls(0, z, z.copy(), np.full(d, np.inf), np.full(d, -np.inf), z.copy(), z.copy())


def chan_mean(na: int, mean_a: np.ndarray, nb: int, mean_b: np.ndarray):
    """Merged count, mean and the correction weight of two blocks.

    Returns
    -------
    n : int
    delta : ndarray
        ``mean_b - mean_a``.
    mean : ndarray
        Mean of the union.
    weight : float
        ``na * nb / n``; the centred second moments gain ``weight * delta delta^T``.
    """
    n = na + nb
    delta = mean_b - mean_a
    mean = mean_a + delta * (nb / n)
    return n, delta, mean, na * nb / n


def _block(X: np.ndarray) -> Moments:
    n = X.shape[0]
    s = X.sum(axis=0)
    mean = s / n
    C = X - mean
    return Moments(
        n, mean, np.einsum("ij,ij->j", C, C),
        X.min(axis=0), X.max(axis=0), s, np.einsum("ij,ij->j", X, X),
    )


def partial(X: np.ndarray, block_rows: int | None = None) -> Moments:
    """Moments of the rows of ``X``, computed a block at a time.

    Parameters
    ----------
    X : ndarray of shape (n_local, n_features)
    block_rows : int, optional
        Rows per block (default: about 2 MiB of data).

    Returns
    -------
    Moments
    """
    acc = Moments.empty(X.shape[1])
    for B in iter_blocks(X, block_rows):
        acc = merge(acc, _block(B))
    return acc


def merge(a: Moments, b: Moments) -> Moments:
    """Merge the moments of two disjoint sets of rows (associative, pure)."""
    if b.n == 0:
        return a
    if a.n == 0:
        return b
    n, delta, mean, w = chan_mean(a.n, a.mean, b.n, b.mean)
    return Moments(
        n, mean, a.m2 + b.m2 + delta * delta * w,
        np.minimum(a.minimum, b.minimum), np.maximum(a.maximum, b.maximum),
        a.sum + b.sum, a.sumsq + b.sumsq,
    )


def finalize(m: Moments, estimates: str = "estimatesAll") -> dict:
    """daal4py's result fields (each of shape (1, n_features)) from merged moments.

    variance and standardDeviation divide by n - 1 (NaN when n == 1);
    variation is standardDeviation / mean.
    """
    n = m.n
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = m.m2 / (n - 1) if n > 1 else np.full_like(m.m2, np.nan)
        std = np.sqrt(variance)
        values = {
            "minimum": m.minimum,
            "maximum": m.maximum,
            "sum": m.sum,
            "sumSquares": m.sumsq,
            "sumSquaresCentered": m.m2,
            "mean": m.mean,
            "secondOrderRawMoment": m.sumsq / n,
            "variance": variance,
            "standardDeviation": std,
            "variation": std / m.mean,
        }
    return {k: np.asarray(values[k], dtype=np.float64).reshape(1, -1) for k in ESTIMATES[estimates]}
