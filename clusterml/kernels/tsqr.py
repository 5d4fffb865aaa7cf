"""Tall-and-skinny QR (TSQR): the R factor of a row-distributed matrix, and its SVD.

A matrix ``A`` whose rows are spread over ranks (and, on each rank, read a
block at a time) is factored without ever forming ``A^T A``:

1. on each rank, ``R`` of the rows seen so far is updated block by block,
   ``R <- R([R; B])`` (a Householder QR of a (q + m) x q matrix, BLAS-3 in
   LAPACK's blocked ``dgeqrf``), so only a q x q triangle is carried along;
2. the per-rank triangles are stacked in rank order and factored once more:
   ``[R_0; R_1; ...] = Q_s R``.  ``R`` is the R factor of the whole matrix
   (unique up to the signs of its rows), and ``R^T R = A^T A`` holds without
   the squaring of the condition number that the normal equations suffer;
3. the SVD of the small ``R = U_r diag(s) V^T`` gives the singular values and
   right singular vectors of ``A`` itself.

Only the q x q triangles ever leave a rank.  The left singular vectors, when
asked for, are formed as ``U = Q_local (Q_s[this rank's rows] U_r)`` with the
per-block Q factors kept (see :func:`local_qr` for why not ``A V diag(1/s)``).

References
----------
J. Demmel, L. Grigori, M. Hoemmen, J. Langou, "Communication-optimal parallel
and sequential QR and LU factorizations", SIAM J. Sci. Comput. 34(1), 2012.
A. R. Benson, D. F. Gleich, J. Demmel, "Direct QR factorizations for
tall-and-skinny matrices in MapReduce architectures", IEEE BigData 2013
(the direct TSQR with an explicit Q and the SVD of R used here).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
from scipy.linalg.lapack import dgemqrt, dgeqrf, dgeqrt

__all__ = ["block_rows", "r_factor", "local_r", "stack_qr", "svd_of_r", "LocalQR", "local_qr", "apply_q",
           "explicit_qr"]


def r_factor(A: np.ndarray) -> np.ndarray:
    """Upper-triangular R of ``A`` (``A`` may be overwritten).

    Parameters
    ----------
    A : ndarray of shape (m, q)
        Fortran-ordered avoids a copy.

    Returns
    -------
    ndarray of shape (min(m, q), q)
    """
    m, q = A.shape
    k = min(m, q)
    if m == 0:
        return np.zeros((0, q))
    if q >= 16:
        # dgeqrt factors a panel of nb = k columns with the recursive,
        # BLAS-3 dgeqrt3 (Elmroth & Gustavson); dgeqrf would run its
        # level-2 panel code over the whole width when q <= its block size
        # (32-64), as it does for a tall-skinny matrix.  Measured ~1.5-3x
        # faster for q >= 32.
        qr, _t, info = dgeqrt(k, A, overwrite_a=1)
    else:
        qr, _tau, _work, info = dgeqrf(A, overwrite_a=1)
    if info != 0:  # pragma: no cover - only for illegal arguments
        raise np.linalg.LinAlgError(f"QR factorisation failed with info={info}")
    return np.triu(qr[:k])


def block_rows(ncols: int) -> int:
    """Rows per block for the TSQR update ``R <- R([R; B])``.

    Measured on 8-128 columns: blocks of about 2048 rows (32 * ncols for wide
    tables, and never more than ~1M values) keep the factorisation in cache
    while the ncols extra rows of R stay a small overhead.
    """
    return max(4 * ncols, min(max(2048, 32 * ncols), (1 << 20) // max(1, ncols)))


def local_r(blocks: Iterable[np.ndarray], ncols: int) -> np.ndarray:
    """R factor of the rows of all ``blocks`` stacked, updated a block at a time.

    Parameters
    ----------
    blocks : iterable of ndarray of shape (m_b, ncols)
        Consecutive row blocks (views are fine; they are copied, once, into
        the matrix that is factored).
    ncols : int

    Returns
    -------
    R : ndarray of shape (min(total rows, ncols), ncols)
        Upper triangular; zero rows give a 0 x ncols array.
    """
    R = np.zeros((0, ncols))
    for B in blocks:
        m = B.shape[0]
        if m == 0:
            continue
        k = R.shape[0]
        A = np.empty((k + m, ncols), order="F")
        A[:k] = R
        A[k:] = B
        R = r_factor(A)
    return R


def stack_qr(Rs: Sequence[np.ndarray], want_q: bool = False):
    """Factor the per-rank R factors stacked in rank order.

    Parameters
    ----------
    Rs : sequence of ndarray of shape (k_i, q)
    want_q : bool
        Also return the orthonormal ``Q_s`` (needed for left singular vectors).

    Returns
    -------
    R : ndarray of shape (min(sum k_i, q), q)
    Q : ndarray of shape (sum k_i, min(sum k_i, q))
        Only when ``want_q``.
    """
    q = Rs[0].shape[1]
    S = np.asfortranarray(np.vstack(Rs)) if Rs else np.zeros((0, q), order="F")
    if not want_q:
        return r_factor(S)
    if S.shape[0] == 0:
        return np.zeros((0, q)), np.zeros((0, 0))
    Q, R = scipy.linalg.qr(S, mode="economic", overwrite_a=True, check_finite=False)
    return R, Q


def svd_of_r(R: np.ndarray):
    """SVD of a (possibly short) R factor, padded so every output is q-sized.

    Parameters
    ----------
    R : ndarray of shape (k, q), k <= q

    Returns
    -------
    U_r : ndarray of shape (q, q)
        Only the first ``k`` rows matter (the rest multiply zero rows).
    s : ndarray of shape (q,)
        Descending; the last ``q - k`` are exactly zero.
    Vt : ndarray of shape (q, q)
        Rows are the right singular vectors.
    """
    k, q = R.shape
    if k < q:
        R = np.vstack([R, np.zeros((q - k, q))])
    U_r, s, Vt = np.linalg.svd(R)
    return U_r, s, Vt


@dataclass
class LocalQR:
    """A rank's rows factored as ``Q_blocks . Q2 . R`` with the Q factors kept.

    Attributes
    ----------
    blocks : list of ndarray of shape (m_b, k_b)
        Q of each row block (orthonormal columns).
    q2 : ndarray of shape (sum k_b, k)
        Q of the stacked block R factors.
    r : ndarray of shape (k, ncols)
        The rank's R factor, k = min(n_local, ncols).
    store : ndarray of shape (n_local, ncols) or None
        One array holding every block's Q (``blocks`` are views of it), which
        :func:`apply_q` then overwrites with the result.
    """

    blocks: list = field(default_factory=list)
    q2: np.ndarray = None
    r: np.ndarray = None
    store: np.ndarray = None

    @property
    def n_rows(self) -> int:
        return int(sum(Q.shape[0] for Q in self.blocks))


def local_qr(blocks: Iterable[np.ndarray], ncols: int, n_rows: int | None = None,
             dtype=np.float64) -> LocalQR:
    """Two-level QR of a rank's rows, keeping the Q factors for :func:`apply_q`.

    Each block is factored on its own (``B_b = Q_b R_b``), then the stacked
    ``R_b`` are factored (``[R_1; R_2; ...] = Q2 R``).  With the cross-rank
    ``Q_s`` and the SVD ``R_global = U_r S V^T``, this rank's rows of the left
    singular matrix are ``U_local = blockdiag(Q_b) Q2 Q_s[rank] U_r``.

    Why not ``U = A V diag(1/s)``, which needs no stored Q?  Column i of that
    product carries a relative error of order ``eps * s_1 / s_i``: on an
    ill-conditioned matrix the columns stop being orthogonal, and a zero
    singular value divides by zero.  The product of Q factors above is a
    product of matrices with orthonormal columns, so ``U`` is orthonormal to
    working precision whatever the conditioning and involves no division.
    The price is keeping the block Q factors, n_local x ncols values: the
    size of ``U_local`` itself.  Given ``n_rows``, they are kept in one array
    that :func:`apply_q` overwrites with ``U_local``, so U costs no memory
    beyond them.

    Parameters
    ----------
    blocks : iterable of ndarray of shape (m_b, ncols)
    ncols : int
    n_rows : int, optional
        Total rows of the blocks: keep the Q factors in one array (``store``).
    dtype : {numpy.float64, numpy.float32}
        Type of ``store`` (and so of U, which overwrites it): float32 for
        ``fptype="float"``, so the result needs no second, converted copy.
        The factorisations themselves are float64 (LAPACK ``dgeqrt``).

    Returns
    -------
    LocalQR
    """
    store = None if n_rows is None else np.empty((n_rows, ncols), dtype=dtype)
    qs, rs = [], []
    row = 0
    for B in blocks:
        if B.shape[0] == 0:
            continue
        Q, R = explicit_qr(B)
        if store is not None:
            m, kb = Q.shape
            store[row:row + m, :kb] = Q
            Q = store[row:row + m, :kb]
            row += m
        qs.append(Q)
        rs.append(R)
    if not rs:
        return LocalQR([], np.zeros((0, 0)), np.zeros((0, ncols)), store)
    if len(rs) == 1:
        return LocalQR(qs, np.eye(rs[0].shape[0]), rs[0], store)
    Q2, R = explicit_qr(np.vstack(rs))
    return LocalQR(qs, Q2, R, store)


def explicit_qr(B: np.ndarray):
    """Economic QR ``B = Q R`` with an explicit ``Q`` (LAPACK ``dgeqrt`` + ``dgemqrt``).

    The recursive BLAS-3 ``dgeqrt`` (see :func:`r_factor`) and applying its
    compact-WY reflectors to the first columns of the identity measured
    2-8x faster than ``scipy.linalg.qr(mode="economic")`` (``dgeqrf`` +
    ``dorgqr``) on 8192 x 32 blocks, and it stays fast when BLAS threads
    compete for cores.

    Parameters
    ----------
    B : ndarray of shape (m, q), m >= 1

    Returns
    -------
    Q : ndarray of shape (m, k), k = min(m, q), orthonormal columns
    R : ndarray of shape (k, q), upper triangular
    """
    m, q = B.shape
    k = min(m, q)
    V, T, info = dgeqrt(k, np.array(B, order="F"), overwrite_a=1)
    if info != 0:  # pragma: no cover - only for illegal arguments
        raise np.linalg.LinAlgError(f"QR factorisation failed with info={info}")
    E = np.zeros((m, k), order="F")
    E[:k, :k] = np.eye(k)
    Q, info = dgemqrt(V[:, :k], T, E, side="L", trans="N", overwrite_c=1)
    if info != 0:  # pragma: no cover
        raise np.linalg.LinAlgError(f"forming Q failed with info={info}")
    return Q, np.triu(V[:k])


def apply_q(lq: LocalQR, W: np.ndarray) -> np.ndarray:
    """Rows of ``blockdiag(Q_b) Q2 W`` for this rank, a block at a time.

    Parameters
    ----------
    lq : LocalQR
    W : ndarray of shape (k, c)
        This rank's rows of ``Q_s U_r`` (k = ``lq.r.shape[0]``).

    Returns
    -------
    ndarray of shape (n_local, c)
        When ``lq`` keeps its Q factors in one array of c columns, that array,
        overwritten block by block (``lq`` is then used up).
    """
    c = W.shape[1]
    in_place = lq.store is not None and lq.store.shape[1] == c
    out = lq.store if in_place else np.empty((lq.n_rows, c))
    if lq.n_rows == 0:
        return out
    V = (lq.q2 @ W).astype(out.dtype)   # float32 U: one sgemm per block on the float32 Q factors
    row = kb0 = 0
    tmp = np.empty((max(Q.shape[0] for Q in lq.blocks), c), dtype=out.dtype) if in_place else None
    for Q in lq.blocks:
        m, kb = Q.shape
        if in_place:                   # Q is a view of these rows of out: a block-sized temporary
            np.matmul(Q, V[kb0:kb0 + kb], out=tmp[:m])
            out[row:row + m] = tmp[:m]
        else:
            np.matmul(Q, V[kb0:kb0 + kb], out=out[row:row + m])
        row += m
        kb0 += kb
    if in_place:
        lq.blocks, lq.store = [], None
    return out
