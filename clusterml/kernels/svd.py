"""Singular value decomposition of a row-distributed tall matrix, through TSQR.

``A = U diag(s) V^T`` with ``A`` (n x p, n >= p) spread over ranks: each rank
computes the R factor of its rows (:func:`clusterml.kernels.tsqr.local_r`, or
:func:`~clusterml.kernels.tsqr.local_qr` when U is wanted), the triangles are
stacked in rank order and factored, ``R = U_r diag(s) V^T`` is the SVD of the
small p x p triangle, and each rank's rows of ``U`` are its Q factors times
its slice of ``Q_s U_r``.

References
----------
A. R. Benson, D. F. Gleich, J. Demmel, "Direct QR factorizations for
tall-and-skinny matrices in MapReduce architectures", IEEE BigData 2013, §4
(the SVD from a TSQR).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from . import tsqr

__all__ = ["finalize"]


def finalize(Rs: Sequence[np.ndarray], want_u: bool) -> dict:
    """Singular values, right singular vectors and each rank's slice of ``Q_s U_r``.

    Parameters
    ----------
    Rs : sequence of ndarray of shape (k_i, p)
        Per-rank R factors in rank order (``k_i = min(n_i, p)``, 0 for an
        empty rank); their rows sum to at least p.
    want_u : bool
        Also return, for every rank, the k_i x p matrix that turns its local
        Q factors into its rows of U.

    Returns
    -------
    dict
        ``singularValues`` (1 x p, descending), ``rightSingularMatrix``
        (p x p, rows are the right singular vectors, i.e. ``V^T`` as daal4py
        returns it), and with ``want_u``, ``u_factors``: a list with one
        (k_i x p) array per rank.
    """
    out = {}
    if want_u:
        R, Q_s = tsqr.stack_qr(Rs, want_q=True)
    else:
        R = tsqr.stack_qr(Rs)
    U_r, s, Vt = tsqr.svd_of_r(R)
    out["singularValues"] = s.reshape(1, -1)
    out["rightSingularMatrix"] = Vt
    if want_u:
        k = R.shape[0]
        W = Q_s @ U_r[:k]
        bounds = np.cumsum([0] + [r.shape[0] for r in Rs])
        out["u_factors"] = [W[a:b] for a, b in itertools.pairwise(bounds)]
    return out
