"""Fused one-pass loops compiled with numba, where NumPy would make many passes.

NumPy's column reductions on a tall, narrow block (``X.sum(axis=0)``,
``X.min(axis=0)``, ...) each read the whole block, and several of them are
slower per byte than one BLAS call. Low-order moments need seven of them. The
loops below read each value once and update every statistic of its column,
with the inner loop over contiguous columns so LLVM vectorises it. Measured on
1,000,000 x 32 float64 with one thread (AMD EPYC Zen 4): low-order moments in
8 ms against 6 ms for a bare read of the block, vs 1.2 s for the NumPy passes.
They accept float32 or float64 blocks as they are and accumulate in float64.

Compiled on first use and cached on disk (``cache=True``), so later
processes (every MPI rank, every engine) load the machine code instead of
compiling it again.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# The k-means seeding loops moved to seeding.py; importing them from here still works.
from .seeding import bernoulli_pick, exact_bins, seed_pass, sqdist_into, uniforms  # noqa: F401

__all__ = ["moments_pass", "shift_and_sum", "column_sums", "first_bad_value", "assign_accumulate",
           "class_sums"]


# Column statistics of a C-ordered block: the loops below take the rows 8 at a
# time and keep each column's partial results in registers across those 8 rows,
# then update the per-column accumulators once.  Updating the accumulator arrays
# for every row instead (load and store per value) ran at a third of the memory
# read speed; in this form the passes run within 1.4x of a bare read of the block
# (1,000,000 x 32, one thread, float64 and float32; benchmarks/kernels.py).
_CHUNK = 8


@njit(cache=True, nogil=True)
def _moments_pass(X, shift, mn, mx, cs, css):
    n, d = X.shape
    top = n - n % _CHUNK
    for i in range(0, top, _CHUNK):
        for j in range(d):
            s = shift[j]
            x = np.float64(X[i, j])
            lo = x
            hi = x
            y = x - s
            c1 = y
            c2 = y * y
            for r in range(1, _CHUNK):
                x = np.float64(X[i + r, j])
                lo = min(lo, x)
                hi = max(hi, x)
                y = x - s
                c1 += y
                c2 += y * y
            mn[j] = min(mn[j], lo)
            mx[j] = max(mx[j], hi)
            cs[j] += c1
            css[j] += c2
    for i in range(top, n):
        for j in range(d):
            x = np.float64(X[i, j])
            mn[j] = min(mn[j], x)
            mx[j] = max(mx[j], x)
            y = x - shift[j]
            cs[j] += y
            css[j] += y * y


def moments_pass(X: np.ndarray, shift: np.ndarray):
    """Column minimum, maximum, sum, sum of squares, and shifted sum / sum of squares.

    One pass that accumulates only the extremes and the sums of ``y = x -
    shift`` and ``y**2`` (in float64); the raw sums follow exactly in
    algebra, ``sum x = cs + n shift`` and ``sum x**2 = css + 2 shift cs +
    n shift**2``, with a rounding error of a few ulps of their own size.

    Parameters
    ----------
    X : ndarray of shape (n, d), C-contiguous float32 or float64
        Read as it is (no conversion); every statistic is accumulated in
        float64, so float32 data loses nothing beyond its own rounding.
    shift : ndarray of shape (d,)
        A value near the column means (for example the mean of the first
        rows). The centred sum of squares is ``css - cs**2 / n``; with the
        shift near the mean this loses no more than a few ulps even for
        data offset by 1e9.

    Returns
    -------
    mn, mx, s, ss, cs, css : ndarray of shape (d,), float64
    """
    n, d = X.shape
    shift = np.ascontiguousarray(shift, dtype=np.float64)
    mn, mx = np.full(d, np.inf), np.full(d, -np.inf)
    cs, css = np.zeros(d), np.zeros(d)
    _moments_pass(X, shift, mn, mx, cs, css)
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite data: the caller checks
        s = cs + n * shift
        ss = css + 2.0 * shift * cs + n * shift * shift
    return mn, mx, s, ss, cs, css


@njit(cache=True, nogil=True)
def _shift_and_sum(B, shift, out, colsum):
    # Row by row (the chunked form above slowed the strided stores down).
    n, d = B.shape
    for i in range(n):
        for j in range(d):
            y = B[i, j] - shift[j]
            out[i, j] = y
            colsum[j] += y


def shift_and_sum(B: np.ndarray, shift: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Write ``B - shift`` into ``out[:len(B)]`` and return its column sums (one pass).

    Parameters
    ----------
    B : ndarray of shape (m, d), C-contiguous float32 or float64
    shift : ndarray of shape (d,)
    out : ndarray of shape (>= m, d), C-contiguous, reused between blocks
        float32 or float64: a block of another type is converted here, a
        cache-sized piece at a time (the column sums stay float64).

    Returns
    -------
    ndarray of shape (d,), float64
    """
    colsum = np.zeros(B.shape[1])
    _shift_and_sum(B, shift, out, colsum)
    return colsum


@njit(cache=True, nogil=True)
def _column_sums(B, colsum):
    n, d = B.shape
    top = n - n % _CHUNK
    for i in range(0, top, _CHUNK):
        for j in range(d):
            acc = np.float64(B[i, j])
            for r in range(1, _CHUNK):
                acc += np.float64(B[i + r, j])
            colsum[j] += acc
    for i in range(top, n):
        for j in range(d):
            colsum[j] += B[i, j]


def column_sums(B: np.ndarray) -> np.ndarray:
    """Column sums of ``B`` accumulated in float64 (one pass, any float input type).

    Parameters
    ----------
    B : ndarray of shape (m, d), C-contiguous float32 or float64

    Returns
    -------
    ndarray of shape (d,), float64
    """
    colsum = np.zeros(B.shape[1])
    _column_sums(B, colsum)
    return colsum


@njit(cache=True, nogil=True)
def _finite_summary(X, z, m):
    # z[j] stays 0 unless a NaN/inf passes through x * 0; m[j] is max |x|.
    # Branch-free, 8 rows at a time in registers (see _CHUNK): at read speed.
    n, d = X.shape
    top = n - n % _CHUNK
    for i in range(0, top, _CHUNK):
        for j in range(d):
            zz = 0.0
            mm = m[j]
            for r in range(_CHUNK):
                x = np.float64(X[i + r, j])
                zz += x * 0.0
                mm = max(mm, abs(x))
            z[j] += zz
            m[j] = mm
    for i in range(top, n):
        for j in range(d):
            x = np.float64(X[i, j])
            z[j] += x * 0.0
            m[j] = max(m[j], abs(x))


@njit(cache=True, nogil=True)
def _locate(X, limit):
    n, d = X.shape
    for i in range(n):
        for j in range(d):
            x = X[i, j]
            if not np.isfinite(x) or abs(x) > limit:
                return i * d + j
    return -1


def first_bad_value(X: np.ndarray, limit: float):
    """``(row, column)`` of the first NaN, infinity or value beyond ``limit`` in ``X``, or None.

    One vectorised pass; only when it finds something is the data searched
    again for the first offending position.
    """
    d = X.shape[1]
    z, m = np.zeros(d), np.zeros(d)
    _finite_summary(X, z, m)
    if np.all(z == 0.0) and np.all(m <= limit):
        return None
    k = _locate(X, limit)
    return None if k < 0 else divmod(int(k), d)


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _sqdist_from(B, i, shift, C, c):
    # sum_j ((B[i, j] - shift[j]) - C[c, j])**2, vectorised over j (see seeding._sqdist).
    a = 0.0
    for j in range(B.shape[1]):
        t = (B[i, j] - shift[j]) - C[c, j]
        a += t * t
    return a


@njit(cache=True, nogil=True)
def _assign_accumulate(B, shift, G, cc, Cs, labels, sums, counts, accumulate, objective_too):
    m, d = B.shape
    k = G.shape[1]
    objective = 0.0
    changed = 0
    for i in range(m):
        best = 0
        bv = G[i, 0] + cc[0]
        for c in range(1, k):
            v = G[i, c] + cc[c]
            if v < bv:  # strict: ties go to the lower index, as numpy.argmin
                bv = v
                best = c
        if labels[i] != best:
            changed += 1
            labels[i] = best
        if objective_too:
            objective += _sqdist_from(B, i, shift, Cs, best)
        if accumulate:
            counts[best] += 1
            for j in range(d):
                sums[best, j] += B[i, j] - shift[j]
    return objective, changed


def assign_accumulate(B, shift, G, cc, Cs, labels, sums, counts, accumulate=True, objective=True):
    """The Lloyd step after the GEMM, in one pass over a block's rows.

    For each row: the nearest centroid by ``cc + G`` (``||c - s||^2 - 2
    (x - s).(c - s)`` up to a per-row constant), whether its label changed
    (``labels`` is updated in place), and -- with ``accumulate`` -- its
    contribution to the cluster's sum (of ``x - s``) and count; the squared
    distance to the chosen centroid is computed from the difference (no
    cancellation) and summed into the objective (if ``objective``:
    iterations whose objective nobody reads skip it).

    Parameters
    ----------
    B : ndarray of shape (m, d)
        Rows, ``shift`` not yet subtracted (or already, with ``shift`` zeros).
    shift : ndarray of shape (d,)
    G : ndarray of shape (m, k)
        ``-2 B Cs^T``.
    cc : ndarray of shape (k,)
        ``||Cs||^2 + 2 shift.Cs`` (just ``||Cs||^2`` with ``shift`` zeros).
    Cs : ndarray of shape (k, d)
        Centroids minus the shift.
    labels : ndarray of int32, shape (m,)
    sums : ndarray of shape (k, d), updated in place
    counts : ndarray of int64, shape (k,), updated in place

    Returns
    -------
    objective : float
        0 when not asked for.
    changed : int
    """
    return _assign_accumulate(B, shift, G, cc, Cs, labels, sums, counts, accumulate, objective)


@njit(cache=True, nogil=True, inline="always")
def _label(v, n_classes):
    # the class of label v, or -1 if v is not an integer in [0, n_classes) (NaN too)
    if not (v >= 0.0 and v < n_classes):
        return -1
    c = int(v)
    return c if c == v else -1


@njit(cache=True, nogil=True)
def _class_sums(X, y, n_classes, limit, out, mn, mx):
    # One pass: per-class sums of the rows (a row at a time, vectorised over
    # the columns), and each column's extremes over 8 rows at a time kept in
    # registers (see _CHUNK) while those rows are still in L1; they reveal
    # negative and huge values, and NaN/inf turn the sums non-finite.  A label
    # that is not an integer in [0, n_classes) stops the pass.
    n, d = X.shape
    top = n - n % _CHUNK
    for i0 in range(0, top, _CHUNK):
        for r in range(_CHUNK):
            c = _label(y[i0 + r], n_classes)
            if c < 0:
                return i0 + r
            for j in range(d):
                out[c, j] += X[i0 + r, j]
        for j in range(d):
            lo = mn[j]
            hi = mx[j]
            for r in range(_CHUNK):
                x = np.float64(X[i0 + r, j])
                lo = min(lo, x)
                hi = max(hi, x)
            mn[j] = lo
            mx[j] = hi
    for i in range(top, n):
        c = _label(y[i], n_classes)
        if c < 0:
            return i
        for j in range(d):
            x = np.float64(X[i, j])
            out[c, j] += x
            mn[j] = min(mn[j], x)
            mx[j] = max(mx[j], x)
    for c in range(out.shape[0]):
        for j in range(d):
            if not np.isfinite(out[c, j]):
                return n
    for j in range(d):
        if not (mn[j] >= 0.0) or not (mx[j] <= limit):
            return n
    return -1


def class_sums(X: np.ndarray, y: np.ndarray, n_classes: int, limit: float):
    """Per-class column sums of ``X`` in one pass, checking the data on the way.

    Parameters
    ----------
    X : ndarray of shape (n, d), C-contiguous float32 or float64
        Counts: finite, non-negative, at most ``limit``.  Read as it is;
        the sums are accumulated in float64.
    y : ndarray of shape (n,), float32 or float64
        Class labels, integers in ``[0, n_classes)``.
    n_classes : int
    limit : float

    Returns
    -------
    sums : ndarray of shape (n_classes, d)
    ok : bool
        False if some label or value broke the rules above (the caller then
        searches the data for a precise message); ``sums`` is then partial.
    """
    d = X.shape[1]
    out = np.zeros((n_classes, d))
    mn, mx = np.full(d, np.inf), np.full(d, -np.inf)
    bad = _class_sums(X, y, n_classes, limit, out, mn, mx)
    return out, bad < 0

