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

from .fused import moments_pass

__all__ = ["Moments", "partial", "merge", "finalize", "is_finite", "ESTIMATES", "chan_mean",
           "shift_for", "as_plain"]

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
    def empty(cls, d: int) -> Moments:
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


def shift_for(X: np.ndarray) -> np.ndarray:
    """A per-column value near the mean (the mean of the first rows), to centre sums around."""
    if not len(X):
        return np.zeros(X.shape[1])
    with np.errstate(over="ignore", invalid="ignore"):  # huge values are reported by the caller
        return X[: min(len(X), 1024)].mean(axis=0)


def as_plain(X: np.ndarray) -> np.ndarray:
    """``X`` as a C-contiguous base-class ndarray (a view when it already is one; memmaps too)."""
    X = X.view(np.ndarray) if type(X) is not np.ndarray else X
    return np.ascontiguousarray(X)


def partial(X: np.ndarray) -> Moments:
    """Moments of the rows of ``X`` in one fused pass over the data.

    Sums are accumulated around a shift near the column means
    (:func:`shift_for`), and the centred sum of squares is
    ``sum((x - shift)**2) - sum(x - shift)**2 / n``, which loses only a few
    ulps when the shift is within a few standard deviations of the mean; data
    offset by 1e9 keeps its variance.  If the first rows were unrepresentative
    (more than ~6 bits would cancel), the block is summed again around the
    mean the first pass found.  Float32 blocks are read as they are and
    accumulated in float64.

    Parameters
    ----------
    X : ndarray of shape (n_local, n_features)

    Returns
    -------
    Moments
        NaN or infinity in ``X`` shows as a non-finite ``sum``
        (see :func:`is_finite`).
    """
    n, d = X.shape
    if n == 0:
        return Moments.empty(d)
    X = as_plain(X)
    shift = shift_for(X)
    mn, mx, s, ss, cs, css = moments_pass(X, shift)
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite data: see is_finite
        if np.any(css > 64.0 * (css - cs * cs / n)):
            # the first rows were far from the mean: ~6 bits would cancel; again around it
            shift = shift + cs / n
            mn, mx, s, ss, cs, css = moments_pass(X, shift)
        m2 = np.maximum(css - cs * cs / n, 0.0)
        mean = shift + cs / n
    return Moments(n, mean, m2, mn, mx, s, ss)


def is_finite(m: Moments) -> bool:
    """False if the rows behind ``m`` held NaN or infinity, or their squares overflow."""
    return bool(np.all(np.isfinite(m.sum)) and np.all(np.isfinite(m.sumsq)))


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
