"""k-means: initialisation (first rows, random rows, k-means++, k-means||) and Lloyd.

Everything here is a function of one block of rows (:class:`Rows`) plus a
*team*: any object with

``team.allgather(fn, *args, step=...)``
    ``[fn(rows_c, *args) for every chunk c]``, in chunk (rank) order;
``team.root(fn, *args, step=...)``
    ``fn(*args)`` computed once and shared by every chunk;
``team.fold(fn, merge, *args, step=...)``
    the ``allgather`` merged with ``merge`` (in a fixed order; a tree of
    ranks for MPI, so it costs O(log p) per rank).

:class:`Chunks` is the team of several blocks held by one process (tests,
and the k-means|| reduction); :mod:`clusterml.spmd.kmeans` supplies the team
of MPI ranks.  The drivers (:func:`init_centroids`, :func:`lloyd`) only
merge what ``allgather`` returns, in chunk order, so every rank takes the same
decisions from the same numbers, and one process splitting its rows into 7
chunks runs exactly what 7 ranks run.

Same centroids whatever the number of ranks
-------------------------------------------
Random draws come from :mod:`clusterml.kernels.random`: a pure function of
(seed, step, *global* row index), never of how the rows are split.  Sums of
floating-point numbers do depend on the split (rounding follows the order of
additions), so no random decision here depends on a floating-point sum
computed in pieces:

* **k-means++ draws by an exponential race.**  Row ``i`` with weight
  ``w_i = D(x_i)^2`` gets the key ``E_i / w_i`` where ``E_i = -log(u_i)`` is a
  standard exponential of its own uniform ``u_i``; the row with the smallest
  key wins, and ``P(i wins) = w_i / sum(w)`` exactly (the minimum of
  independent exponentials with rates ``w_i``; equivalently Efraimidis &
  Spirakis' ``u_i**(1/w_i)``, maximised).  Each rank sends its local winner
  (key, global index, row) in one small allgather and everyone keeps the
  minimum of (key, global index): a comparison, never a sum, so the winner
  is the same row for every split.  The brief's alternative, a cumulative
  sum searched for ``u * total``, depends on the rounding of the partial sums
  and hence on the split.
* **Per-row values are computed per row.**  Squared distances used for
  draws come from compiled loops (:mod:`clusterml.kernels.fused`) that
  compute each row on its own with a fixed order of operations, the same
  instructions wherever the row sits; BLAS ``dgemm`` does *not* guarantee
  that: OpenBLAS's edge kernels round some rows differently at other
  offsets, as measured.  A chosen row's weight is set to exactly 0 so it is
  never drawn twice.
* **One pass per centre.**  The pass that lowers each row's ``D(x)^2`` with
  the newest centre also runs the race
  (:func:`clusterml.kernels.seeding.seed_pass`), and it skips the logarithm of
  a row whose bound ``-log(u) >= 1 - u`` already loses to the best key so far
  (almost every row, after the first few): the pass costs little more than
  reading the rows.
* **Sums that decide are exact.**  The k-means|| cost ``phi`` and the
  potentials of greedy k-means++ trials are summed with :class:`ExactSum`
  (integer accumulation of mantissas by exponent), rounded once at the end:
  the same float for every split.

Lloyd, which is deterministic, uses the fast ``||x||^2 - 2 x.c + ||c||^2``
form with BLAS ``dgemm`` for ``X C^T`` and ordinary sums; its result equals
the single-process one within floating-point tolerance.

References
----------
D. Arthur, S. Vassilvitskii, "k-means++: the advantages of careful seeding",
SODA 2007.
B. Bahmani, B. Moseley, A. Vattani, R. Kumar, S. Vassilvitskii, "Scalable
k-means++", PVLDB 5(7), 2012.
P. S. Efraimidis, P. G. Spirakis, "Weighted random sampling with a
reservoir", Information Processing Letters 97(5), 2006.
S. P. Lloyd, "Least squares quantization in PCM", IEEE Trans. Inf. Theory
28(2), 1982.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import numpy as np

from . import sparse as sparse_k
from .blocks import block_rows as default_block_rows
from .fused import assign_accumulate, bernoulli_pick, exact_bins, seed_pass, shift_and_sum, sqdist_into
from .moments import as_plain
from .random import stream_key


def _issparse(X) -> bool:
    return not isinstance(X, np.ndarray) and hasattr(X, "indptr")

__all__ = [
    "INIT_METHODS",
    "DEFAULT_SEED",
    "ExactSum",
    "Rows",
    "Chunks",
    "sqdist_rows",
    "init_centroids",
    "first_rows",
    "random_rows",
    "random_picks",
    "plusplus",
    "parallel_plusplus",
    "LloydPartial",
    "lloyd_pass",
    "lloyd",
]

INIT_METHODS = ("defaultDense", "deterministicDense", "randomDense", "plusPlusDense",
                "parallelPlusDense")
DEFAULT_SEED = 777777
_LLOYD_BLOCK_BYTES = 256 * 1024

# Stream domains: every random decision has its own stream key
# stream_key(seed, domain, step, trial), so no two decisions share draws.
_RANDOM, _PLUSPLUS, _PAR_FIRST, _PAR_ROUND, _PAR_REDUCE, _PAR_FILL = 1, 2, 3, 4, 5, 6


# --------------------------------------------------------------------------
# Exact sums


@dataclass(frozen=True)
class ExactSum:
    """The exact sum of float64 values, ``mantissa * 2**exponent`` (Python ints).

    Each value contributes its 53-bit integer significand to the bin of its
    exponent, in int64 halves that cannot overflow for 2**36 values
    (:func:`clusterml.kernels.seeding.exact_bins`, one compiled pass); the
    bins are then combined in Python's unbounded integers.  Merging two sums
    is exact, hence associative and independent of how the values were
    split: ``float(s)`` is the correctly rounded sum of all values.
    """

    mantissa: int = 0
    exponent: int = 0

    _CHUNK = 1 << 24

    @classmethod
    def of(cls, values) -> ExactSum:
        v = np.ascontiguousarray(np.ravel(np.asarray(values, dtype=np.float64)))
        if v.size == 0:
            return cls()
        hi = np.zeros(2048, dtype=np.int64)
        lo = np.zeros(2048, dtype=np.int64)
        if v.size >= (1 << 36) or not exact_bins(v, hi, lo):
            return cls._of_numpy(v)
        used = np.flatnonzero((hi != 0) | (lo != 0))
        if used.size == 0:
            return cls()
        e0 = int(used[0])
        total = 0
        for e in used:
            total += ((int(hi[e]) << 26) + int(lo[e])) << (int(e) - e0)
        return cls(total, e0 - 1075)

    @classmethod
    def _of_numpy(cls, v: np.ndarray) -> ExactSum:
        # Vectorised NumPy version (also handles non-finite values, oddly but
        # without failing): frexp, then integer mantissas binned by exponent.
        frac, exp = np.frexp(v)
        whole = np.ldexp(frac, 53)                 # integer valued, |whole| < 2**53
        hi = np.trunc(whole * 2.0 ** -26)          # |hi| < 2**27
        lo = whole - hi * 2.0 ** 26                # |lo| < 2**26, exact
        emin = int(exp.min())
        idx = (exp - emin).astype(np.intp)
        total = 0
        for s in range(0, v.size, cls._CHUNK):
            sl = slice(s, s + cls._CHUNK)
            H = np.bincount(idx[sl], weights=hi[sl])
            L = np.bincount(idx[sl], weights=lo[sl])
            for b in np.flatnonzero((H != 0) | (L != 0)):
                total += ((int(H[b]) << 26) + int(L[b])) << int(b)
        return cls(total, emin - 53)

    def __add__(self, other: ExactSum) -> ExactSum:
        if other.mantissa == 0:
            return self
        if self.mantissa == 0:
            return other
        e = min(self.exponent, other.exponent)
        m = (self.mantissa << (self.exponent - e)) + (other.mantissa << (other.exponent - e))
        return ExactSum(m, e)

    def __float__(self) -> float:
        m, e = self.mantissa, self.exponent
        if m == 0:
            return 0.0
        if e >= 0:
            try:
                return float(m << e)
            except OverflowError:
                return float("inf") if m > 0 else float("-inf")
        return m / (1 << -e)  # int / int is correctly rounded in CPython


def _exact_total(parts) -> float:
    return float(reduce(lambda a, b: a + b, parts, ExactSum()))


# --------------------------------------------------------------------------
# Rows of one chunk and teams


class Rows:
    """One chunk of rows and what the algorithms keep about them between steps.

    Parameters
    ----------
    X : ndarray of shape (n_local, n_features)
        The rows (used in place, never copied).
    offset : int
        Global index of ``X[0]`` (an exclusive scan of the row counts).
    gidx : ndarray of int, shape (n_local,), optional
        Explicit global indices (the k-means|| candidates); overrides offset.
    weights : ndarray of shape (n_local,), optional
        Multiplicity of each row (the k-means|| candidates' weights).
    block_rows : int, optional
        Rows per block; temporaries are ``block_rows x max(k, n_features)``.

    Attributes
    ----------
    d2 : ndarray of shape (n_local,) or None
        Squared distance of each row to the nearest chosen centre (init).
    nearest : ndarray of int64, shape (n_local,) or None
        Index of the nearest k-means|| candidate (not kept by k-means++).
    labels : ndarray of int32, shape (n_local,) or None
        Lloyd's assignments.
    """

    def __init__(self, X, offset=0, gidx=None, weights=None, block_rows=None):
        self.X = X
        self.offset = int(offset)
        self._gidx = None if gidx is None else np.asarray(gidx, dtype=np.int64)
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        self.block_rows = int(block_rows or default_block_rows(max(1, X.shape[1])))
        self.d2 = None
        self.nearest = None
        self.labels = None

    @property
    def n(self) -> int:
        return self.X.shape[0]

    def blocks(self):
        """Yield ``(start, stop, X[start:stop])`` block by block."""
        for start in range(0, self.n, self.block_rows):
            stop = min(self.n, start + self.block_rows)
            yield start, stop, self.X[start:stop]

    def gidx(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.n if stop is None else stop
        if self._gidx is not None:
            return self._gidx[start:stop]
        return np.arange(self.offset + start, self.offset + stop, dtype=np.int64)

    def local_positions(self, g: np.ndarray) -> np.ndarray:
        """Local row numbers of the global indices ``g`` held by this chunk (-1 if not held)."""
        g = np.asarray(g, dtype=np.int64)
        if self._gidx is not None:          # a few candidates: a dictionary is enough
            where = {int(v): i for i, v in enumerate(self._gidx)}
            return np.array([where.get(int(v), -1) for v in g], dtype=np.int64)
        loc = g - self.offset
        return np.where((loc >= 0) & (loc < self.n), loc, -1)


class Chunks:
    """A team of several chunks in one process: what MPI ranks do, without MPI."""

    def __init__(self, rows_list):
        self.chunks = list(rows_list)

    @classmethod
    def split(cls, X, counts, block_rows=None) -> Chunks:
        """Chunks of ``X`` with the given row counts, in order (a simulated rank layout)."""
        if sum(counts) != len(X):
            raise ValueError(f"counts {counts} do not add up to {len(X)} rows")
        out, start = [], 0
        for c in counts:
            out.append(Rows(X[start:start + c], offset=start, block_rows=block_rows))
            start += c
        return cls(out)

    def allgather(self, fn, *args, step=None):
        return [fn(rows, *args) for rows in self.chunks]

    def root(self, fn, *args, step=None):
        return fn(*args)

    def fold(self, fn, merge, *args, step=None):
        return reduce(merge, self.allgather(fn, *args, step=step))


# --------------------------------------------------------------------------
# Distances


def sqdist_rows(Bs: np.ndarray, Cs: np.ndarray) -> np.ndarray:
    """Squared distances of rows to centres, each row computed on its own.

    ``sum_j (x_j - c_j)**2`` in a compiled loop with a fixed order of
    operations (:func:`clusterml.kernels.seeding.sqdist_into`), so a row's
    distances do not depend on where the row sits; from the differences,
    so data far from the origin keeps its precision.

    Parameters
    ----------
    Bs : ndarray of shape (m, n_features)
    Cs : ndarray of shape (c, n_features)

    Returns
    -------
    ndarray of shape (m, c)
    """
    out = np.empty((Bs.shape[0], Cs.shape[0]))
    sqdist_into(as_plain(Bs), as_plain(np.asarray(Cs, dtype=np.float64)), out)
    return out


@dataclass
class NewCentres:
    """Centres just chosen, as every chunk absorbs them.

    Attributes
    ----------
    gidx : ndarray of int64, shape (m,)
        Their global row indices.
    X : ndarray of shape (m, n_features)
    base : int
        Index of the first of them among all centres chosen so far (what
        ``Rows.nearest`` records).
    CC : ndarray of shape (base + m, m)
        Squared distances from every centre so far to each new one: a row
        whose nearest centre ``j`` has ``CC[j, c] > 4 d2`` cannot be closer to
        ``c`` (triangle inequality), so its distance is not computed.
    """

    gidx: np.ndarray
    X: np.ndarray
    base: int
    CC: np.ndarray
    track: bool = True

    @classmethod
    def after(cls, previous, gidx, X, track: bool = True) -> NewCentres:
        """New centres ``X`` following the centres ``previous`` (a list of rows or an array).

        ``track``: keep ``Rows.nearest`` up to date (k-means|| needs it for
        the candidates' weights; k-means++ does not, and skips that traffic).
        """
        X = np.ascontiguousarray(np.atleast_2d(X), dtype=np.float64)
        prev = np.empty((0, X.shape[1])) if previous is None or len(previous) == 0 else np.vstack(previous)
        CC = sqdist_rows(np.vstack([prev, X]), X) if track else np.zeros((1, len(X)))
        return cls(np.asarray(gidx, dtype=np.int64), X, len(prev), CC, track)


def _zero_own_centres(rows: Rows, new: NewCentres) -> None:
    """A row that is itself a centre is at distance exactly 0 (never drawn again)."""
    pos = rows.local_positions(new.gidx)
    mine = pos >= 0
    rows.d2[pos[mine]] = 0.0
    if new.track:
        rows.nearest[pos[mine]] = new.base + np.flatnonzero(mine)


_NONE_I = np.empty(0, dtype=np.int64)
_NONE_F = np.empty(0)


def _seed(rows: Rows, new: NewCentres | None, keys):
    """Absorb the new centres into d2 (and nearest), run one race per key: one compiled pass.

    Returns the per-key winners: arrays ``(key, gidx, row)`` of the weighted
    race and of the unweighted one (gidx -1: no entrant).
    """
    nk = len(keys)
    best = (np.full(nk, np.inf), np.full(nk, -1, np.int64), np.full(nk, -1, np.int64))
    plain = (np.full(nk, np.inf), np.full(nk, -1, np.int64), np.full(nk, -1, np.int64))
    d = rows.X.shape[1]
    C, CC, base, track = np.empty((0, d)), np.zeros((1, 0)), 0, False
    if new is not None and len(new.gidx):
        if rows.d2 is None:
            rows.d2 = np.full(rows.n, np.inf)
        track = new.track
        if track and rows.nearest is None:
            rows.nearest = np.zeros(rows.n, dtype=np.int64)
        _zero_own_centres(rows, new)            # absorbing only lowers d2: the zeros stay
        C, CC, base = new.X, new.CC, new.base
    if rows.n == 0:
        return best, plain
    use_d2 = rows.d2 is not None
    seed_pass(as_plain(rows.X), C, CC, base, rows.d2 if use_d2 else _NONE_F,
              rows.nearest if track else _NONE_I, use_d2,
              _NONE_F if rows.weights is None else rows.weights,
              _NONE_I if rows._gidx is None else rows._gidx, rows.offset,
              np.array(keys, dtype=np.uint64), *best, *plain)
    return best, plain


def _draw(rows: Rows, new: NewCentres | None, keys):
    """Absorb new centres into ``d2``, then run one race per key over this chunk's rows.

    Returns, per key, ``(key, gidx, row, fkey, fgidx, frow)``: the winner with
    weights ``d2 * weights`` and the winner of the unweighted race (used only
    when every weight is 0, i.e. every row coincides with a centre).  ``gidx``
    is -1 where a race had no entrant.  One pass over the rows.
    """
    (bk, bg, br), (pk, pg, pr) = _seed(rows, new, keys)
    out = []
    for t in range(len(keys)):
        out.append((float(bk[t]), int(bg[t]), rows.X[br[t]].copy() if bg[t] >= 0 else None,
                    float(pk[t]), int(pg[t]), rows.X[pr[t]].copy() if pg[t] >= 0 else None))
    return out


def _merge_draws(parts):
    """The winners over all chunks: smallest (key, gidx); unweighted race if all weights are 0."""
    winners = []
    for t in range(len(parts[0])):
        weighted = [(p[t][0], p[t][1], p[t][2]) for p in parts if p[t][1] >= 0]
        if weighted:
            key, g, row = min(weighted, key=lambda x: (x[0], x[1]))
            if np.isfinite(key):
                winners.append((g, row))
                continue
        key, g, row = min(((p[t][3], p[t][4], p[t][5]) for p in parts if p[t][4] >= 0),
                          key=lambda x: (x[0], x[1]))
        winners.append((g, row))
    return winners


def _potentials(rows: Rows, cands: np.ndarray):
    """Per candidate, the exact sum over this chunk of ``weight * min(d2, d(x, cand)^2)``."""
    sums = [ExactSum() for _ in range(len(cands))]
    for start, stop, B in ([] if rows.n == 0 else rows.blocks()):
        D = sqdist_rows(B, cands)
        np.minimum(D, rows.d2[start:stop, None], out=D)
        if rows.weights is not None:
            D *= rows.weights[start:stop, None]
        for t in range(len(cands)):
            sums[t] = sums[t] + ExactSum.of(D[:, t])
    return sums


# --------------------------------------------------------------------------
# Initialisation methods


def first_rows(team, n_clusters: int) -> np.ndarray:
    """``defaultDense`` / ``deterministicDense``: the first ``n_clusters`` rows in rank order.

    Works when the first chunks hold fewer rows than that (or none): each
    chunk gives the rows of its own that fall among the first global ones.
    One collective.
    """
    def local(rows, k):
        if _issparse(rows.X):
            return sparse_k.first_rows(rows.X, rows.offset, k)
        take = max(0, min(rows.n, k - rows.offset))
        return rows.X[:take].copy()

    parts = team.allgather(local, n_clusters, step="kmeans_init first rows")
    return np.vstack(parts)[:n_clusters]


def random_picks(total: int, n_clusters: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """The global row indices ``randomDense`` picks: ``n_clusters`` distinct ones of ``total``."""
    gen = np.random.Generator(np.random.Philox(key=stream_key(seed, _RANDOM)))
    return gen.choice(total, size=n_clusters, replace=False)


def random_rows(team, n_clusters: int, seed: int = DEFAULT_SEED, total: int | None = None) -> np.ndarray:
    """``randomDense``: ``n_clusters`` distinct rows drawn uniformly (without replacement).

    The global indices are drawn directly, from a generator keyed by
    ``seed`` and the total number of rows only (``total``, or one small
    collective of row counts), so the draw is O(n_clusters) and the same
    however the rows are split; the chunks holding the chosen rows then send
    just those rows.
    """
    if total is None:
        total = int(sum(team.allgather(lambda rows: rows.n, step="kmeans_init random rows: counts")))
    picks = random_picks(int(total), n_clusters, seed)

    def local(rows, picks):
        first = rows.offset  # data rows are contiguous in the global index
        if _issparse(rows.X):
            return sparse_k.picked_rows(rows.X, first, picks)
        order = np.flatnonzero((picks >= first) & (picks < first + rows.n))
        if rows.n == 0:
            return order, np.empty((0, rows.X.shape[1]))
        return order, rows.X[picks[order] - first]

    parts = team.allgather(local, picks, step="kmeans_init random rows")
    C = np.empty((n_clusters, parts[0][1].shape[1]))
    for order, X in parts:
        C[order] = X
    return C


def plusplus(team, n_clusters: int, seed: int = DEFAULT_SEED, n_trials: int = 1,
             domain: int = _PLUSPLUS, start=None) -> np.ndarray:
    """``plusPlusDense``: k-means++ seeding (Arthur & Vassilvitskii 2007).

    The first centre is a uniformly random row; each next one is a row drawn
    with probability proportional to ``D(x)^2``, its squared distance to the
    nearest centre chosen so far (times the row's weight, if any), by an
    exponential race (see the module docstring): one allgather of each
    chunk's winner (key, global index, row) per centre.

    With ``n_trials > 1`` this is the greedy variant (as scikit-learn's): each
    step draws ``n_trials`` candidates independently and keeps the one that
    most lowers the potential ``sum D(x)^2``, summed exactly; a second small
    allgather per centre.

    Parameters
    ----------
    team : Chunks or the spmd team
    n_clusters : int
    seed : int
    n_trials : int
    domain : int
        Stream domain (distinct draws for distinct uses of k-means++).
    start : list of ndarray, optional
        Centres already chosen (their distances already in every chunk's d2).

    Returns
    -------
    ndarray of shape (n_clusters, n_features)
    """
    centres = [] if start is None else list(start)
    new = None
    step = len(centres)
    while len(centres) < n_clusters:
        trials = 1 if (step == 0 and start is None) else n_trials
        keys = [stream_key(seed, domain, step, t) for t in range(trials)]
        parts = team.allgather(_draw, new, keys, step="k-means++ draw")
        cands = _merge_draws(parts)
        best = 0
        if len(cands) > 1:
            rows = np.vstack([c[1] for c in cands])
            pots = team.allgather(_potentials, rows, step="k-means++ trials")
            totals = [_exact_total(p[t] for p in pots) for t in range(len(cands))]
            best = int(np.argmin(totals))   # first minimum: ties go to the earlier trial
        g, row = cands[best]
        new = NewCentres.after(centres, [g], row, track=False)
        centres.append(row)
        step += 1
    return np.vstack(centres)


def _par_absorb_cost(rows: Rows, new: NewCentres | None) -> ExactSum:
    if new is not None and len(new.gidx):
        _seed(rows, new, [])
    return ExactSum.of(rows.d2 if rows.d2 is not None else np.empty(0))


def _par_sample(rows: Rows, phi: float, ell: float, key: int):
    if rows.n == 0:
        return np.empty(0, np.int64), np.empty((0, rows.X.shape[1]))
    # P(row chosen) = min(1, ell * d2 / phi); compared without dividing.
    keep = bernoulli_pick(rows.d2, _NONE_I if rows._gidx is None else rows._gidx, rows.offset,
                          np.uint64(key), float(phi), float(ell))
    g = rows._gidx[keep] if rows._gidx is not None else rows.offset + keep
    return g, rows.X[keep]


def _par_weights(rows: Rows, new: NewCentres | None, n_cands: int) -> np.ndarray:
    _par_absorb_cost(rows, new)
    if rows.n == 0:
        return np.zeros(n_cands, dtype=np.int64)
    return np.bincount(rows.nearest, minlength=n_cands).astype(np.int64)


def _reduce_candidates(Y, G, w, n_clusters, seed, n_trials):
    team = Chunks([Rows(Y, gidx=G, weights=w.astype(np.float64))])
    return plusplus(team, n_clusters, seed, n_trials, domain=_PAR_REDUCE)


def parallel_plusplus(team, n_clusters: int, seed: int = DEFAULT_SEED,
                      oversampling_factor: float = 0.5, n_rounds: int = 5,
                      n_trials: int = 1) -> np.ndarray:
    """``parallelPlusDense``: k-means|| seeding (Bahmani et al. 2012).

    1. One uniformly random row is the first candidate.
    2. Each of ``n_rounds`` rounds computes the cost ``phi = sum D(x)^2``
       (exactly) and keeps every row independently with probability
       ``min(1, ell * D(x)^2 / phi)``, ``ell = oversampling_factor * n_clusters``;
       the new candidates are gathered (in global row order) by every chunk.
    3. Each candidate is weighted by the number of rows nearest to it.
    4. Weighted k-means++ (``n_trials`` as in :func:`plusplus`) reduces the
       candidates to ``n_clusters`` centres, on the first chunk (rank 0), and
       the result is shared (``team.root``).

    Two small collectives per round.  If the rounds yield no more than
    ``n_clusters`` candidates, they are all kept and k-means++ over the rows
    adds the missing ones.

    Returns
    -------
    ndarray of shape (n_clusters, n_features)
    """
    parts = team.allgather(_draw, None, [stream_key(seed, _PAR_FIRST)], step="k-means|| first")
    g0, row0 = _merge_draws(parts)[0]
    cand_g = [np.array([g0], dtype=np.int64)]
    cand_x = [row0[None, :]]
    new, n_cands = NewCentres.after(None, cand_g[0], cand_x[0]), 1
    ell = float(oversampling_factor) * n_clusters
    for r in range(n_rounds):
        phi = _exact_total(team.allgather(_par_absorb_cost, new, step="k-means|| cost"))
        new = None
        if phi == 0.0:      # every row coincides with a candidate
            break
        picked = team.allgather(_par_sample, phi, ell, stream_key(seed, _PAR_ROUND, r),
                                step="k-means|| sample")
        g = np.concatenate([p[0] for p in picked])
        if len(g):
            x = np.vstack([p[1] for p in picked])
            new = NewCentres.after(cand_x, g, x)
            cand_g.append(g)
            cand_x.append(x)
            n_cands += len(g)
    counts = team.allgather(_par_weights, new, n_cands, step="k-means|| weights")
    w = reduce(np.add, counts)
    G = np.concatenate(cand_g)
    Y = np.vstack(cand_x)
    if n_cands <= n_clusters:
        return plusplus(team, n_clusters, seed, n_trials, domain=_PAR_FILL, start=list(Y))
    return team.root(_reduce_candidates, Y, G, w, n_clusters, seed, n_trials,
                     step="k-means|| reduce")


def init_centroids(team, method: str, n_clusters: int, seed: int = DEFAULT_SEED,
                   n_trials: int = 1, oversampling_factor: float = 0.5,
                   n_rounds: int = 5, total: int | None = None) -> np.ndarray:
    """Initial centroids by daal4py's method name (see :data:`INIT_METHODS`).

    ``total``: the number of rows, if known (saves ``randomDense`` a collective).

    Returns
    -------
    ndarray of shape (n_clusters, n_features)
    """
    if method in ("defaultDense", "deterministicDense"):
        return first_rows(team, n_clusters)
    if method == "randomDense":
        return random_rows(team, n_clusters, seed, total)
    if method == "plusPlusDense":
        return plusplus(team, n_clusters, seed, n_trials)
    if method == "parallelPlusDense":
        return parallel_plusplus(team, n_clusters, seed, oversampling_factor, n_rounds, n_trials)
    raise ValueError(f"method={method!r} is not one of {INIT_METHODS}")


# --------------------------------------------------------------------------
# Lloyd


@dataclass
class LloydPartial:
    """What one Lloyd pass reduces: per-cluster sums and counts, objective, changes.

    Attributes
    ----------
    sums : ndarray of shape (k, n_features)
        Sums of the (shifted) rows of each cluster.
    counts : ndarray of int64, shape (k,)
    objective : float
        Sum of squared distances of rows to their assigned centroid.
    changed : int
        Rows whose assignment differs from the previous pass.
    """

    sums: np.ndarray
    counts: np.ndarray
    objective: float
    changed: int

    def __add__(self, other: LloydPartial) -> LloydPartial:
        return LloydPartial(self.sums + other.sums, self.counts + other.counts,
                            self.objective + other.objective, self.changed + other.changed)


# Beyond this many centroid spreads from the origin, the rows are shifted
# (copied) before the GEMM; nearer, the GEMM reads them in place and the
# rounding of x.c is at most a few times that of (x - s).(c - s).
_SHIFT_RATIO = 4.0


def _needs_shifted_copy(C: np.ndarray, shift: np.ndarray) -> bool:
    """True if the centroids sit far from the origin compared with their spread."""
    spread = np.sqrt(((C - shift) ** 2).sum(axis=1).max()) if len(C) > 1 else 0.0
    return bool(np.sqrt((shift ** 2).sum()) > _SHIFT_RATIO * spread)


def lloyd_pass(rows: Rows, C: np.ndarray, shift: np.ndarray, accumulate: bool = True,
               with_objective: bool = True, dtype=np.float64) -> LloydPartial:
    """Assign each row to its nearest centroid; accumulate sums, counts and the objective.

    A block at a time: ``X_b C^T`` by BLAS ``dgemm`` (the ``n x k`` matrix never
    exists whole, only ``block_rows x k``), the nearest centroid by
    ``argmin ||c||^2 - 2 x.c``, and the objective from the differences to the
    chosen centroid (no cancellation).  Distances are taken around ``shift``
    (the mean of the starting centroids): when the centroids sit far from the
    origin compared with their spread, each block is first copied minus the
    shift, so data far from the origin keeps its precision; otherwise the GEMM
    reads the rows in place (the copy costs 15% of a pass).

    Parameters
    ----------
    rows : Rows
        Its ``labels`` are updated in place.
    C : ndarray of shape (k, n_features)
    shift : ndarray of shape (n_features,)
    accumulate : bool
        Also accumulate per-cluster sums and counts (not needed by a final,
        assign-only pass).
    with_objective : bool
        Also sum the squared distances (0 otherwise).
    dtype : {numpy.float64, numpy.float32}
        Precision of the GEMM (``sgemm`` for float32).  Rows of the other
        type go through the block buffer (converted a block at a time, never
        as a whole).  Cluster sums, counts and the objective are float64
        either way: a float32 distance only decides the nearest centroid.

    Returns
    -------
    LloydPartial
    """
    k, d = C.shape
    if rows.labels is None:
        rows.labels = np.full(rows.n, -1, dtype=np.int32)
    if _issparse(rows.X):  # lloydCSR: kernels/sparse.py
        return LloydPartial(*sparse_k.lloyd_assign(rows.X, C, shift, rows.labels, accumulate))
    Cs = np.ascontiguousarray(C - shift)
    cc = np.einsum("ij,ij->i", Cs, Cs)
    m2CsT = (-2.0 * Cs.T).astype(dtype)             # G = -2 B Cs^T in one GEMM, no extra pass
    if rows.labels is None:
        rows.labels = np.full(rows.n, -1, dtype=np.int32)
    sums = np.zeros((k, d))
    counts = np.zeros(k, dtype=np.int64)
    objective, changed = 0.0, 0
    # Small blocks: the block and G stay in L2 between the GEMM and the pass
    # that follows it (8192-row blocks measured 1.5x slower).
    br = max(1, min(_LLOYD_BLOCK_BYTES // (8 * max(d, k)), rows.block_rows, rows.n))
    G = np.empty((br, k), dtype=dtype)
    xdtype = getattr(rows.X, "dtype", np.dtype(np.float64))  # a table read in blocks: float64 blocks
    if _needs_shifted_copy(C, shift) or xdtype != dtype:
        buf, zero = np.empty((br, d), dtype=dtype), np.zeros(d)
    else:
        # (x - s).(c - s) = x.(c - s) - s.(c - s): the GEMM reads the rows in place and
        # the per-centroid constant moves into cc.
        buf, zero = None, None
        cc = cc + 2.0 * (Cs @ shift)
    for at, X in _chunks(rows.X):
        for start in range(0, X.shape[0], br):
            stop = min(X.shape[0], start + br)
            m = stop - start
            if buf is not None:
                B, s = buf[:m], zero
                shift_and_sum(X[start:stop], shift, B)
            else:
                B, s = X[start:stop], shift
            Gm = np.dot(B, m2CsT, out=G[:m])           # BLAS dgemm
            obj, ch = assign_accumulate(B, s, Gm, cc, Cs, rows.labels[at + start:at + stop], sums,
                                        counts, accumulate, with_objective)
            objective += obj
            changed += ch
        del X               # before the next block of an out-of-core table is read
    return LloydPartial(sums, counts, objective, changed)


def _chunks(X):
    """``(first row, rows)``: the whole array at once, or the blocks of a table read in blocks
    (any object with ``blocks(rows)`` and ``shape``, e.g. an out-of-core file)."""
    if isinstance(X, np.ndarray):
        yield 0, as_plain(X)
        return
    at, blocks = 0, X.blocks()   # the table's own block size
    while (B := next(blocks, None)) is not None:
        m = B.shape[0]
        yield at, as_plain(B)
        del B               # one block in memory at a time
        at += m


def _farthest(rows: Rows, C: np.ndarray, shift: np.ndarray, n: int):
    """This chunk's ``n`` rows farthest from their assigned centroid.

    Returns ``(dist2, gidx, rows, labels)``, sorted by decreasing distance,
    ties to the smaller global index.  Distances are computed row by row.
    """
    if _issparse(rows.X):
        lab = rows.labels.astype(np.int64)
        d2 = sparse_k.dist_to_assigned(rows.X, C, lab)
        g = rows.gidx()
        keep = np.lexsort((g, -d2))[:n]
        return d2[keep], g[keep], rows.X[keep].toarray(), lab[keep]
    Cs = C - shift
    d2 = np.empty(0)
    g = np.empty(0, np.int64)
    pos = np.empty(0, np.int64)
    for start, stop, B in ([] if rows.n == 0 else rows.blocks()):
        diff = (B - shift) - Cs[rows.labels[start:stop]]
        db = np.einsum("ij,ij->i", diff, diff)
        d2 = np.concatenate([d2, db])
        g = np.concatenate([g, rows.gidx(start, stop)])
        pos = np.concatenate([pos, np.arange(start, stop)])
        keep = np.lexsort((g, -d2))[:n]
        d2, g, pos = d2[keep], g[keep], pos[keep]
    return d2, g, rows.X[pos], rows.labels[pos].astype(np.int64)


def _update_centroids(team, C, shift, total: LloydPartial):
    """New centroids from reduced sums; empty clusters take the farthest rows.

    Empty clusters (in increasing order) receive the rows farthest from their
    assigned centroid (largest first, ties to the smaller global index), as
    daal4py and scikit-learn do; such a row leaves its old cluster's sum and
    count (as in scikit-learn).  A cluster left with no row keeps its
    previous centroid.  Returns the centroids and the sum of the moved rows'
    squared distances (daal4py subtracts it from the objective).
    """
    sums = total.sums.copy()
    counts = total.counts.copy()
    C_new = C.copy()
    empty = np.flatnonzero(counts == 0)
    moved = np.zeros(len(C), dtype=bool)
    gain = 0.0
    if len(empty):
        parts = team.allgather(_farthest, C, shift, len(empty), step="kmeans empty clusters")
        d2 = np.concatenate([p[0] for p in parts])
        g = np.concatenate([p[1] for p in parts])
        X = np.vstack([p[2] for p in parts])
        lab = np.concatenate([p[3] for p in parts])
        order = np.lexsort((g, -d2))[:len(empty)]
        for j, i in zip(empty, order, strict=False):
            C_new[j] = X[i]
            moved[j] = True
            sums[lab[i]] -= X[i] - shift
            counts[lab[i]] -= 1
            gain += float(d2[i])
    fill = (counts > 0) & ~moved
    C_new[fill] = shift + sums[fill] / counts[fill, None]
    return C_new, gain


def _plus(a, b):
    return a + b


def lloyd(team, C0: np.ndarray, max_iterations: int, accuracy_threshold: float = 0.0,
          dtype=np.float64, info: dict | None = None):
    """Lloyd's algorithm from the centroids ``C0``; assignments stay in each chunk's ``labels``.

    One reduction per iteration carries the per-cluster sums, counts, the
    objective and the number of changed assignments; every stop decision is
    taken from those reduced values, identically on every chunk.

    Iteration ``t`` assigns the rows to ``C_t`` and computes ``C_{t+1}``.  The
    loop stops after ``max_iterations`` iterations; or, as in daal4py, when
    ``accuracy_threshold > 0`` and the objective changed by less than it
    (absolute); or, as scikit-learn, when an iteration changed no assignment
    and left no cluster empty (its centroids could not move again).  A final
    pass assigns the rows to the returned centroids, so assignments and
    objective always match them.  ``max_iterations == 0`` only assigns
    (prediction).  ``dtype`` is the precision of the distance GEMM (see
    :func:`lloyd_pass`); centroids, sums and the objective stay float64.

    Returns
    -------
    centroids : ndarray of shape (k, n_features)
    objective : float
        Sum of squared distances of the rows to their assigned centroid.
    n_iterations : int
        Iterations performed (scikit-learn's ``n_iter_``).

    When ``info`` is a dict, ``info["fixed_point"]`` tells whether the loop
    ended because an iteration changed no assignment (daal4py, which has no
    such test, runs one more iteration to see the objective stand still).
    """
    C = np.array(C0, dtype=np.float64)
    shift = C.mean(axis=0)
    n_iter, previous = 0, 0.0
    final = max_iterations == 0
    while True:
        # An iteration's objective is read only by the accuracy test (and at the end).
        with_objective = final or accuracy_threshold > 0
        total = team.fold(lloyd_pass, _plus, C, shift, not final, with_objective, dtype,
                          step="kmeans iteration")
        if final:
            return C, total.objective, n_iter
        if n_iter > 0 and total.changed == 0 and total.counts.all():
            if info is not None:
                # ... unless its accuracy test stops it at this very iteration
                info["fixed_point"] = not (accuracy_threshold > 0 and with_objective and
                                           abs(previous - total.objective) < accuracy_threshold)
            if with_objective:
                return C, total.objective, n_iter + 1
            n_iter += 1             # converged: one assign-only pass for the objective
            final = True
            continue
        C, gain = _update_centroids(team, C, shift, total)
        n_iter += 1
        objective = total.objective - gain
        final = n_iter >= max_iterations or (
            accuracy_threshold > 0 and abs(previous - objective) < accuracy_threshold)
        previous = objective
