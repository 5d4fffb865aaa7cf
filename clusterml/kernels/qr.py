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

References
----------
J. Demmel, L. Grigori, M. Hoemmen, J. Langou, "Communication-optimal parallel
and sequential QR and LU factorizations", SIAM J. Sci. Comput. 34(1), 2012.
A. R. Benson, D. F. Gleich, J. Demmel, "Direct QR factorizations for
tall-and-skinny matrices in MapReduce architectures", IEEE BigData 2013.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import tsqr

__all__ = ["finalize", "local_qr", "merge_local", "q_rows"]

local_qr = tsqr.local_qr


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
    R, Q_s = tsqr.stack_qr(Rs, want_q=True)
    sign = np.where(np.diag(R) < 0, -1.0, 1.0)
    R = R * sign[:, None]
    Q_s = Q_s * sign[None, :]
    bounds = np.cumsum([0] + [r.shape[0] for r in Rs])
    return {"matrixR": R, "q_factors": [Q_s[a:b] for a, b in zip(bounds[:-1], bounds[1:])]}


def merge_local(parts: Sequence[tsqr.LocalQR]):
    """Combine the :class:`~clusterml.kernels.tsqr.LocalQR` of several chunks of one part.

    Returns ``(R, Ws)``: the part's R factor and a function of this part's
    q-factor (k x c) giving one W per chunk for :func:`q_rows` -- i.e. one
    more level of the TSQR tree (used by the streaming mode).
    """
    q = parts[0].r.shape[1]
    Rs = [p.r for p in parts]
    if sum(r.shape[0] for r in Rs) == 0:
        return np.zeros((0, q)), lambda W: [np.zeros((0, W.shape[1])) for _ in parts]
    Q3, R = tsqr.explicit_qr(np.vstack(Rs))
    bounds = np.cumsum([0] + [r.shape[0] for r in Rs])

    def split(W):
        V = Q3 @ W
        return [V[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    return R, split


def q_rows(lq: tsqr.LocalQR, W: np.ndarray) -> np.ndarray:
    """This part's rows of Q (n_i x q) from its kept local factors and its q-factor ``W``."""
    return tsqr.apply_q(lq, W)
