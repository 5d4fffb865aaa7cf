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

__all__ = ["moments_pass", "shift_and_sum", "column_sums", "first_bad_value", "assign_accumulate", "class_sums"]


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
    # sum_j ((B[i, j] - shift[j]) - C[c, j])**2, vectorised over j (see _sqdist).
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


# --------------------------------------------------------------------------
# k-means seeding: per-row distances, exponential races, exact sums
#
# Every value that decides a random draw must have the same bits for a row
# wherever the row sits (which rank, which block), so these loops compute each
# row on its own with one fixed sequence of operations: no BLAS (whose edge
# kernels round rows at some offsets differently), and of the fast-math flags
# only "reassoc" on the per-row distance (see _sqdist).

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_U1, _U11, _U27, _U30, _U31 = (np.uint64(v) for v in (1, 11, 27, 30, 31))
_TWO_M53 = 2.0 ** -53
# -log(u) >= 1 - u: a row whose bound already loses by this factor is skipped
# without its logarithm (a wide margin over the few ulps of rounding).
_RACE_MARGIN = 1.0 + 1e-6
# Pruning by the triangle inequality skips a centre only when it is farther
# than this margin beyond the bound, so rounding never decides a skip alone.
_PRUNE_MARGIN = 1.0 + 1e-6


@njit(cache=True, nogil=True, inline="always")
def _uniform1(key, g):
    # clusterml.kernels.random.uniform for one index, bit for bit.
    z = key + (np.uint64(g) + _U1) * _GOLDEN
    z = (z ^ (z >> _U30)) * _MIX1
    z = (z ^ (z >> _U27)) * _MIX2
    z = z ^ (z >> _U31)
    return (np.float64(z >> _U11) + 0.5) * _TWO_M53


@njit(cache=True, nogil=True)
def uniforms(key, g):
    """:func:`clusterml.kernels.random.uniform` compiled: ``key`` uint64, ``g`` int64 array."""
    out = np.empty(g.shape[0])
    for i in range(g.shape[0]):
        out[i] = _uniform1(key, g[i])
    return out


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _sqdist(X, i, C, c):
    # sum_j (X[i, j] - C[c, j])**2.  "reassoc" lets LLVM vectorise the sum
    # over j: the order of additions then follows the vector width, which is
    # fixed for the loop, so every row is still computed by the same
    # instructions wherever it sits (tested bit for bit across splits).
    d = X.shape[1]
    a = 0.0
    for j in range(d):
        t = X[i, j] - C[c, j]
        a += t * t
    return a


@njit(cache=True, nogil=True)
def sqdist_into(X, C, out):
    """``out[i, c] = ||X[i] - C[c]||^2``, each row computed on its own (same bits anywhere)."""
    for i in range(X.shape[0]):
        for c in range(C.shape[0]):
            out[i, c] = _sqdist(X, i, C, c)


@njit(cache=True, nogil=True, inline="always")
def _race_row(i, g, w, keys, best_key, best_g, best_row, plain_key, plain_g, plain_row):
    for t in range(keys.shape[0]):
        u = _uniform1(keys[t], g)
        bound = 1.0 - u                           # <= -log(u)
        e = -1.0
        pk = plain_key[t]
        if not (bound > pk * _RACE_MARGIN):
            e = -np.log(u)
            if e < pk or (e == pk and g < plain_g[t]):
                plain_key[t] = e
                plain_g[t] = g
                plain_row[t] = i
        if w > 0.0:
            bk = best_key[t]
            if not (bound > bk * w * _RACE_MARGIN):
                if e < 0.0:
                    e = -np.log(u)
                s = e / w
                if s < bk or (s == bk and g < best_g[t]):
                    best_key[t] = s
                    best_g[t] = g
                    best_row[t] = i


@njit(cache=True, nogil=True)
def seed_pass(X, C, CC, base, d2, nearest, use_d2, weights, gidx, offset, keys,
              best_key, best_g, best_row, plain_key, plain_g, plain_row):
    """One pass of k-means++ / k-means|| seeding over a chunk's rows.

    Lowers ``d2[i]`` to the distance to the new centres ``C`` (strictly:
    ties keep the earlier centre) and, unless ``nearest`` is empty, records
    ``nearest[i] = base + c``.  With several new centres (and ``nearest``)
    it skips a centre when ``CC[nearest[i], c] > 4 d2[i]``: then it cannot be
    closer, by the triangle inequality (``CC`` holds the squared distances
    from every centre so far to each new one).  With one new centre the pass
    streams the rows at memory speed anyway, and skipping scattered rows
    only breaks the stream (measured slower), so it does not prune.

    Then, for each stream key, it runs two exponential races: weighted by
    ``d2 * weights`` (score ``-log(u) / w``) and unweighted (``-log(u)``).
    The winners are the smallest (score, global index); ``best_*`` and
    ``plain_*`` (one entry per key) are updated in place.  ``weights`` and
    ``gidx`` may be empty (weight 1; global index ``offset + i``).
    """
    n = X.shape[0]
    nc = C.shape[0]
    has_w = weights.shape[0] > 0
    has_g = gidx.shape[0] > 0
    track = nearest.shape[0] > 0
    if use_d2 and nc == 1 and not track:
        for i in range(n):                      # the k-means++ step: lean loop
            cur = min(d2[i], _sqdist(X, i, C, 0))
            d2[i] = cur
            w = cur * weights[i] if has_w else cur
            _race_row(i, gidx[i] if has_g else offset + i, w, keys,
                      best_key, best_g, best_row, plain_key, plain_g, plain_row)
        return
    prune = track and nc > 1
    for i in range(n):
        w = 1.0
        if use_d2:
            cur = d2[i]
            near = nearest[i] if track else 0
            for c in range(nc):
                if prune and CC[near, c] > 4.0 * _PRUNE_MARGIN * cur:   # cur = inf: never skipped
                    continue
                dist = _sqdist(X, i, C, c)
                if dist < cur:
                    cur = dist
                    near = base + c
            d2[i] = cur
            if track:
                nearest[i] = near
            w = cur
        if has_w:
            w = w * weights[i]
        _race_row(i, gidx[i] if has_g else offset + i, w, keys,
                  best_key, best_g, best_row, plain_key, plain_g, plain_row)


@njit(cache=True, nogil=True)
def bernoulli_pick(d2, gidx, offset, key, phi, ell):
    """Local rows kept by a k-means|| round: ``uniform(key, g) * phi < ell * d2``."""
    n = d2.shape[0]
    has_g = gidx.shape[0] > 0
    keep = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        g = gidx[i] if has_g else offset + i
        if _uniform1(key, g) * phi < ell * d2[i]:
            keep[m] = i
            m += 1
    return keep[:m]


_MANT = np.uint64((1 << 52) - 1)
_HIDDEN = np.int64(1 << 52)
_U52, _U63 = np.uint64(52), np.uint64(63)
_EXPMASK = np.uint64(0x7FF)


@njit(cache=True, nogil=True)
def exact_bins(v, hi, lo):
    """Accumulate float64 values exactly, binned by exponent.

    Value ``v = s * m * 2**(e - 1075)`` (``e`` the biased exponent, 1 for
    subnormals; ``m`` the 53-bit integer significand) adds ``s * m``, split
    as ``hi * 2**26 + lo`` with ``0 <= lo < 2**26``, to ``hi[e]`` and
    ``lo[e]`` (int64 arrays of 2048): both stay exact for 2**36 values.
    Returns False (and stops) at a NaN or infinity.
    """
    bits = v.view(np.uint64)
    for i in range(bits.shape[0]):
        b = bits[i]
        e = np.int64((b >> _U52) & _EXPMASK)
        if e == 2047:
            return False
        m = np.int64(b & _MANT)
        if e == 0:
            e = 1
        else:
            m += _HIDDEN
        if (b >> _U63) != 0:
            m = -m
        h = m >> 26                                # floor division: lo is in [0, 2**26)
        hi[e] += h
        lo[e] += m - (h << 26)
    return True
