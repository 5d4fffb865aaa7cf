"""Compiled loops of k-means seeding: per-row distances, exponential races, exact sums.

Moved out of :mod:`clusterml.kernels.fused` (which re-exports them).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["uniforms", "sqdist_into", "seed_pass", "bernoulli_pick", "exact_bins"]

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
