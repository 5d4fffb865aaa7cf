"""Distributed QR decomposition by TSQR: ``A = Q R`` with Q's rows kept where A's rows are.

Each rank factors its rows a block at a time keeping the Q factors
(:func:`clusterml.kernels.tsqr.local_qr`); the per-rank R triangles are
stacked in rank order and factored once more, ``[R_0; R_1; ...] = Q_s R``.
Then this rank's rows of Q are ``Q_local Q_s[this rank's rows]``
(:func:`clusterml.kernels.tsqr.apply_q`): a product of matrices with
orthonormal columns built from Householder reflections, so ``Q^T Q = I`` to
working precision whatever the conditioning of ``A`` (no Gram-Schmidt, no
``A R^{-1}``).  Only the q x q triangles leave a rank.

The signs are fixed so that R has a non-negative diagonal (the factor is then
unique for full-rank ``A``), which makes the result independent of the
number of ranks up to rounding.

Precision follows the data: float64 rows use LAPACK's ``dgeqrt``/``dgemqrt``
(:mod:`clusterml.kernels.tsqr`); float32 rows are factored by single-precision
LAPACK (``sgeqrf``/``sorgqr``), with every product and the stacked-R step in
float32 too (no float64 accumulation anywhere), so the residual and the loss
of orthogonality are a modest multiple of float32's epsilon (1.2e-7) instead
of float64's.

References
----------
J. Demmel, L. Grigori, M. Hoemmen, J. Langou, "Communication-optimal parallel
and sequential QR and LU factorizations", SIAM J. Sci. Comput. 34(1), 2012.
A. R. Benson, D. F. Gleich, J. Demmel, "Direct QR factorizations for
tall-and-skinny matrices in MapReduce architectures", IEEE BigData 2013.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.linalg

from . import tsqr

__all__ = ["finalize", "local_qr", "merge_local", "q_rows", "explicit_qr"]


def explicit_qr(B: np.ndarray):
    """Economic QR ``B = Q R`` in the precision of ``B`` (float64 or float32).

    Parameters
    ----------
    B : ndarray of shape (m, q), m >= 1

    Returns
    -------
    Q : ndarray of shape (m, k), k = min(m, q), orthonormal columns, ``B.dtype``
    R : ndarray of shape (k, q), upper triangular, ``B.dtype``
    """
    if B.dtype == np.float64:
        return tsqr.explicit_qr(B)
    # single-precision LAPACK (sgeqrf + sorgqr): scipy keeps float32 in and out
    return scipy.linalg.qr(np.array(B, order="F"), mode="economic", overwrite_a=True,
                           check_finite=False)


def local_qr(blocks: Iterable[np.ndarray], ncols: int, n_rows: int | None = None,
             dtype=np.float64) -> tsqr.LocalQR:
    """Two-level QR of a part's rows in ``dtype``, keeping the Q factors.

    float64: :func:`clusterml.kernels.tsqr.local_qr`.  float32: the same two
    levels (each block factored, then the stacked block R factors) in single
    precision; the Q factors are kept per block (no shared ``store``).

    Parameters
    ----------
    blocks : iterable of ndarray of shape (m_b, ncols)
    ncols : int
    n_rows : int, optional
        Total rows (float64 only: lets :func:`q_rows` overwrite the factors).
    dtype : {numpy.float64, numpy.float32}

    Returns
    -------
    LocalQR
    """
    if np.dtype(dtype) == np.float64:
        return tsqr.local_qr(blocks, ncols, n_rows=n_rows)
    qs, rs = [], []
    for B in blocks:
        if B.shape[0]:
            Q, R = explicit_qr(np.asarray(B, dtype=dtype))
            qs.append(Q)
            rs.append(R)
    if not rs:
        return tsqr.LocalQR([], np.zeros((0, 0), dtype), np.zeros((0, ncols), dtype), None)
    if len(rs) == 1:
        return tsqr.LocalQR(qs, np.eye(rs[0].shape[0], dtype=dtype), rs[0], None)
    Q2, R = explicit_qr(np.vstack(rs))
    return tsqr.LocalQR(qs, Q2, R, None)


def finalize(Rs: Sequence[np.ndarray]) -> dict:
    """The global R and, for every part, the matrix that turns its local Q into its rows of Q.

    Parameters
    ----------
    Rs : sequence of ndarray of shape (k_i, q)
        Per-part R factors in row order (``k_i = min(n_i, q)``, 0 for an
        empty part); their rows sum to at least q.

    Returns
    -------
    dict
        ``matrixR`` (q x q, upper triangular, diagonal >= 0) and
        ``q_factors``: one (k_i x q) array per part.
    """
    R, Q_s = tsqr.stack_qr(Rs, want_q=True)      # scipy's QR keeps the dtype of ``Rs``
    sign = np.where(np.diag(R) < 0, -1.0, 1.0).astype(R.dtype)
    R = R * sign[:, None]
    Q_s = Q_s * sign[None, :]
    bounds = np.cumsum([0] + [r.shape[0] for r in Rs])
    return {"matrixR": R, "q_factors": [Q_s[a:b] for a, b in itertools.pairwise(bounds)]}


def merge_local(parts: Sequence[tsqr.LocalQR]):
    """Combine the :class:`~clusterml.kernels.tsqr.LocalQR` of several chunks of one part.

    Returns ``(R, Ws)``: the part's R factor and a function of this part's
    q-factor (k x c) giving one W per chunk for :func:`q_rows` -- i.e. one
    more level of the TSQR tree (used by the streaming mode).
    """
    q = parts[0].r.shape[1]
    Rs = [p.r for p in parts]
    dt = Rs[0].dtype
    if sum(r.shape[0] for r in Rs) == 0:
        return np.zeros((0, q), dt), lambda W: [np.zeros((0, W.shape[1]), dt) for _ in parts]
    Q3, R = explicit_qr(np.vstack(Rs))
    bounds = np.cumsum([0] + [r.shape[0] for r in Rs])

    def split(W):
        V = Q3 @ W
        return [V[a:b] for a, b in itertools.pairwise(bounds)]

    return R, split


def q_rows(lq: tsqr.LocalQR, W: np.ndarray) -> np.ndarray:
    """This part's rows of Q (n_i x q) from its kept local factors and its q-factor ``W``.

    In the dtype of the factors (float32 factors: float32 products).
    """
    dt = lq.r.dtype
    if dt == np.float64:
        return tsqr.apply_q(lq, W)
    W = np.asarray(W, dtype=dt)
    if lq.n_rows == 0:
        return np.zeros((0, W.shape[1]), dt)
    V = lq.q2 @ W
    bounds = np.cumsum([0] + [Q.shape[1] for Q in lq.blocks])
    return np.vstack([Q @ V[a:b] for Q, a, b in zip(lq.blocks, bounds[:-1], bounds[1:], strict=True)])
