"""Covariance and correlation: partial, merge and finalize.

The partial of a rank's rows keeps its count, mean and centred cross-product
matrix ``C = (X - mean)^T (X - mean)`` (BLAS GEMM on cache-sized blocks,
accumulated in float64 whatever the input precision).  Partials merge with the multivariate form of the
Chan/Pébay update (see :mod:`clusterml.kernels.moments`)::

    C = C_a + C_b + (na * nb / n) * delta delta^T

References
----------
P. Pébay, "Formulas for robust, one-pass parallel computation of covariances
and arbitrary-order statistical moments", Sandia report SAND2008-6212, 2008.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .blocks import block_rows as block_rows_for
from .fused import column_sums, shift_and_sum
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
    def empty(cls, d: int) -> CrossProducts:
        return cls(0, np.zeros(d), np.zeros((d, d)))


# In-place (raw) cross products are used when every column's squared mean is at
# most this multiple of its variance (estimated on the first rows): centring
# the raw Gram matrix afterwards then loses at most log2(1 + ratio) bits.
_RAW_RATIO = 4.0


def _raw_is_safe(cols, n: int) -> bool:
    """True if centring raw cross products afterwards loses at most ~2 bits per column."""
    with np.errstate(over="ignore", invalid="ignore"):
        for a in cols:
            head = np.asarray(a[: min(n, 1024)], dtype=np.float64)
            mean = head.mean(axis=0)
            var = head.var(axis=0)
            if not np.all(mean * mean <= _RAW_RATIO * var):   # NaN and constant columns: False
                return False
    return True


def _cancelled(gram: np.ndarray, total: np.ndarray, n: int) -> bool:
    """True if centring the raw Gram matrix would cancel more than ~6 bits of some column.

    ``G_jj / C_jj = 1 + mean_j**2 / var_j``: the first rows promised at most
    ``1 + _RAW_RATIO``; data whose later rows drift far from the first ones
    break that promise, and are then summed again around a shift.
    """
    g = np.diag(gram)
    with np.errstate(over="ignore", invalid="ignore"):
        c = g - total * total / n
        return bool(np.any(g > 64.0 * c))        # NaN (non-finite data): False, reported later


def _gram_blocks(cols, rows: int, dtype, gram, shift=None):
    """Accumulate the Gram matrix of ``[*cols]`` into ``gram`` (float64), a block at a time.

    With ``shift`` (float64, one value per column) each block is first written
    minus the shift into a block-sized buffer of ``dtype`` (one fused pass that
    also sums it, converting float32 <-> float64 on the way); without, the
    blocks are read in place -- the GEMMs see ``X``'s and ``Y``'s rows where
    they lie, one GEMM per pair of inputs, with the block still in cache for
    the second -- and only summed.  Each block's products are formed in
    ``dtype`` (BLAS ``dgemm`` / ``sgemm``: on a tall block GEMM ran as fast as
    ``dsyrk`` and twice as fast as ``ssyrk`` here) and added to the float64
    ``gram``, so single precision rounds within a block only.

    Returns
    -------
    ndarray of shape (d,), float64
        Column sums (of the shifted values when ``shift`` is given).
    """
    n = cols[0].shape[0]
    widths = [a.shape[1] for a in cols]
    offsets = np.cumsum([0] + widths)
    d = int(offsets[-1])
    total = np.zeros(d)
    spans = list(itertools.pairwise(offsets))
    if shift is not None:
        buf = np.empty((min(rows, n), d), dtype=dtype)
        tmp = np.empty((d, d), dtype=dtype)
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            for a, (lo, hi) in zip(cols, spans, strict=True):
                total[lo:hi] += shift_and_sum(a[start:stop], shift[lo:hi], buf[: stop - start, lo:hi])
            B = buf[: stop - start]
            gram += np.matmul(B.T, B, out=tmp)
        return total
    # one contiguous product per pair of inputs (i <= j): the upper block triangle
    pairs = [(i, j) for i in range(len(cols)) for j in range(i, len(cols))]
    tmps = {(i, j): np.empty((widths[i], widths[j]), dtype=dtype) for i, j in pairs}
    for start in range(0, n, rows):
        blocks = [a[start:start + rows] for a in cols]
        for (lo, hi), b in zip(spans, blocks, strict=True):
            total[lo:hi] += column_sums(b)
        for i, j in pairs:
            (lo, hi), (lo2, hi2) = spans[i], spans[j]
            gram[lo:hi, lo2:hi2] += np.matmul(blocks[i].T, blocks[j], out=tmps[i, j])
    return total


def _accumulate(cols, rows, dtype, gram, centre, in_place):
    """The pass (or, rarely, two) behind :func:`partial`: returns the column sums and the shift."""
    n, d = cols[0].shape[0], gram.shape[0]
    if in_place:
        shift = np.zeros(d)
        total = _gram_blocks(cols, rows, dtype, gram)
    else:
        shift = np.concatenate([shift_for(a) for a in cols]) if centre else np.zeros(d)
        total = _gram_blocks(cols, rows, dtype, gram, shift)
    if centre and _cancelled(gram, total, n):
        # the first rows misled the estimate: a second pass around the true means
        shift = shift + total / n
        gram[:] = 0.0
        total = _gram_blocks(cols, rows, dtype, gram, shift)
    return total, shift


def partial(X: np.ndarray, *more: np.ndarray, block_rows: int | None = None,
            centre: bool = True, dtype=None) -> CrossProducts:
    """Centred cross products of the rows of ``[X, *more]``, one read of the data.

    When the columns' means are small against their spread (the usual case;
    decided on the first rows, see ``_RAW_RATIO``) the blocks of ``X`` and
    ``more`` are read in place: per block one GEMM per pair of inputs and a
    column sum, and the centred matrix is ``G - s s^T / n`` for the raw Gram
    ``G`` and sums ``s`` (losing at most ~2 bits; if the whole data turn out
    to lose more than ~6, see :func:`_cancelled`, they are read again the
    other way).  Otherwise each block is first shifted by a value near the
    column means into a reused cache-sized buffer, so data offset by 1e9
    keeps its covariance.

    Parameters
    ----------
    X : ndarray of shape (n_local, p), float32 or float64
    *more : ndarray of shape (n_local, r)
        Further columns (regression responses, for instance), taken as if
        stacked beside ``X`` -- without making that stacked copy.
    block_rows : int, optional
        Rows per block (default: about 2 MiB of data).
    centre : bool
        False: ``cp`` is the raw Gram matrix ``[X, *more]^T [X, *more]``
        (no shift), for models without an intercept.
    dtype : {numpy.float64, numpy.float32}, optional
        Precision of the per-block products (default: float32 if every input
        is float32, else float64).  Inputs of another type are converted a
        block at a time into the buffer; nothing is converted as a whole.
        Sums, the accumulated Gram matrix and the result are float64 in
        either case: in single precision the rounding error of an entry is
        that of a sum over one block (a few thousand rows), not over all rows.

    Returns
    -------
    CrossProducts
        float64.  NaN or infinity in the data shows as non-finite values
        (see :func:`is_finite`).
    """
    cols = [as_plain(a) for a in (X,) + more]
    if dtype is None:
        dtype = np.float32 if all(a.dtype == np.float32 for a in cols) else np.float64
    dtype = np.dtype(dtype)
    n = X.shape[0]
    d = sum(a.shape[1] for a in cols)
    if n == 0:
        return CrossProducts.empty(d)
    rows = block_rows or block_rows_for(d)
    gram = np.zeros((d, d))
    in_place = all(a.dtype == dtype for a in cols) and (not centre or _raw_is_safe(cols, n))
    with np.errstate(over="ignore", invalid="ignore"):   # non-finite data: see is_finite
        total, shift = _accumulate(cols, rows, dtype, gram, centre, in_place)
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
