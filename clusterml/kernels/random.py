"""Counter-based random numbers keyed by the *global* row index.

A distributed algorithm that draws from a per-rank generator gets different
draws when the rows are split differently.  Here every random number is a
pure function of ``(seed, stream, global row index)``, so row 1234 receives
the same uniform on 1, 2, 3 or 7 ranks and in a single process, and
"the same seed picks the same rows whatever the number of ranks" follows by
construction.

The function is SplitMix64 (Steele, Lea & Flood 2014), the generator Java's
``SplittableRandom`` is built on: the ``i``-th output for a key is
``mix64(key + (i + 1) * GOLDEN)``, where ``mix64`` is Stafford's "variant 13"
64-bit finaliser.  It passes BigCrush as a sequence, costs a handful of
vectorised integer operations per row, and being a bijection of the counter
it never repeats within a stream.  Streams (one per algorithm step) get keys
by hashing ``(seed, stream...)`` with the same finaliser.

Only integer operations and one correctly rounded conversion are involved,
so the values are identical bit for bit on every machine.

References
----------
G. L. Steele Jr., D. Lea, C. H. Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014.
D. Stafford, "Better bit mixing - improving on MurmurHash3's 64-bit
finalizer", 2011.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GOLDEN", "mix64", "stream_key", "bits", "uniform", "MASK64"]

MASK64 = (1 << 64) - 1
#: 2**64 / golden ratio, odd: SplitMix64's counter increment.
GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _mix64_int(z: int) -> int:
    z &= MASK64
    z = ((z ^ (z >> 30)) * _M1) & MASK64
    z = ((z ^ (z >> 27)) * _M2) & MASK64
    return z ^ (z >> 31)


def mix64(z: np.ndarray) -> np.ndarray:
    """Stafford's variant-13 finaliser of SplitMix64, elementwise on uint64 (wrapping)."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def stream_key(seed: int, *stream: int) -> int:
    """The 64-bit key of one stream: a hash of ``seed`` and the stream's integers.

    ``stream_key(777777, 2, 5, 0)`` is, for instance, the key of trial 0 of
    step 5 of k-means++.  Different tuples give unrelated keys.
    """
    k = _mix64_int(int(seed) + GOLDEN)
    for s in stream:
        k = _mix64_int(k ^ _mix64_int(int(s) * GOLDEN + 0x632BE59BD9B4E019))
    return k


def bits(key: int, index: np.ndarray) -> np.ndarray:
    """64 random bits for each global index: SplitMix64's ``index``-th output for ``key``.

    Parameters
    ----------
    key : int
        A stream key from :func:`stream_key`.
    index : ndarray of int, shape (m,)
        Global row indices (>= 0).

    Returns
    -------
    ndarray of uint64, shape (m,)
    """
    idx = np.asarray(index, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        state = np.uint64(key) + (idx + np.uint64(1)) * np.uint64(GOLDEN)
        return mix64(state)


def uniform(key: int, index: np.ndarray) -> np.ndarray:
    """A uniform in the open interval (0, 1) for each global index.

    The top 53 bits of :func:`bits`, centred in their cell:
    ``((b >> 11) + 0.5) * 2**-53``, so 0 and 1 never occur (``log`` is safe).

    Returns
    -------
    ndarray of float64, shape (m,)
    """
    b = bits(key, index) >> np.uint64(11)
    return (b.astype(np.float64) + 0.5) * (2.0 ** -53)
