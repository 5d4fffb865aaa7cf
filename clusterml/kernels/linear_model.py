"""Linear and ridge regression: partial statistics, merges, solves and prediction.

Two training methods (daal4py's names):

``normEqDense``
    One reduction of the cross products of ``[1, X, Y]``.  With an intercept
    they are kept *centred* (count, means and ``C = [X Y]_c^T [X Y]_c``,
    merged with the Chan/Pébay update of :mod:`clusterml.kernels.covariance`):
    the same information as the raw Gram matrix of ``[1, X, Y]`` but without
    the cancellation that raw sums suffer when the data sits far from 0.  The
    coefficients solve ``(C_xx + diag(lambda)) beta = C_xy`` and the
    intercept is ``mean_y - mean_x beta``, so the intercept is never
    penalised (scikit-learn's ``Ridge``).  Without an intercept the raw Gram
    matrix of ``[X, Y]`` is used.  Forming ``X^T X`` squares the condition
    number: relative error of order ``eps * cond(X)**2``.
``qrDense``
    A TSQR (:mod:`clusterml.kernels.tsqr`) of ``[1, X, Y]``: with
    ``R = [[R11, R12], [0, R22]]`` (R11 for ``[1, X]``), ``R12 = Q1^T Y`` and
    ``beta = R11^{-1} R12``.  Relative error of order ``eps * cond(X)``
    (plus a residual term), so it stays accurate where the normal equations
    fail.

``Beta`` follows daal4py: responses x (features + 1), column 0 the intercept
(0 when there is none).

References
----------
G. H. Golub, C. F. Van Loan, *Matrix Computations*, 4th ed., §5.3 (normal
equations vs QR for least squares), §6.1 (ridge / Tikhonov).
A. E. Hoerl, R. W. Kennard, "Ridge regression: biased estimation for
nonorthogonal problems", Technometrics 12(1), 1970.
J. Demmel et al., "Communication-optimal parallel and sequential QR and LU
factorizations", SIAM J. Sci. Comput. 34(1), 2012 (TSQR).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from . import covariance as cov_k
from . import tsqr
from .blocks import block_rows as _block_rows
from .blocks import iter_blocks

__all__ = ["Gram", "gram_partial", "gram_merge", "solve_normal_equations", "qr_partial",
           "solve_qr", "predict"]


@dataclass
class Gram:
    """Cross products of ``[X, Y]`` over a set of rows.

    Attributes
    ----------
    centred : bool
        True: ``mean`` and ``cp`` are the mean and centred cross products
        (intercept models); False: ``cp`` is the raw Gram matrix and
        ``mean`` is unused (zeros).
    n : int
    mean : ndarray of shape (p + r,)
    cp : ndarray of shape (p + r, p + r)
    """

    centred: bool
    n: int
    mean: np.ndarray
    cp: np.ndarray


def _paired_blocks(X, Y, rows=None):
    rows = rows or _block_rows(X.shape[1] + Y.shape[1] + 1)
    return zip(iter_blocks(X, rows), iter_blocks(Y, rows), strict=True)


def gram_partial(X: np.ndarray, Y: np.ndarray, centred: bool, block_rows=None, dtype=None) -> Gram:
    """Cross products of ``[X, Y]`` in one read of X and Y (:func:`covariance.partial`).

    No stacked ``[X, Y]`` copy is made and the responses take no separate
    pass: per cache-sized block, one GEMM per pair of ``X`` / ``Y``.

    Parameters
    ----------
    X : ndarray of shape (n_local, p), float32 or float64
    Y : ndarray of shape (n_local, r), float32 or float64
    centred : bool
        Keep mean and centred cross products (for an intercept) or the raw Gram.
    dtype : {numpy.float64, numpy.float32}, optional
        Precision of the per-block products; they are accumulated in float64
        (see :func:`clusterml.kernels.covariance.partial`), and the merges and
        the solve are float64 whatever ``dtype``.

    Returns
    -------
    Gram
    """
    c = cov_k.partial(X, Y, block_rows=block_rows, centre=centred, dtype=dtype)
    return Gram(centred, c.n, c.mean if centred else np.zeros(c.mean.shape), c.cp)


def gram_merge(a: Gram, b: Gram) -> Gram:
    """Merge two disjoint sets of rows (associative, pure)."""
    if a.centred:
        m = cov_k.merge(cov_k.CrossProducts(a.n, a.mean, a.cp), cov_k.CrossProducts(b.n, b.mean, b.cp))
        return Gram(True, m.n, m.mean, m.cp)
    return Gram(False, a.n + b.n, a.mean, a.cp + b.cp)


def _spd_solve(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``A x = B`` for symmetric positive semi-definite ``A``.

    The system is equilibrated (``D^-1/2 A D^-1/2``, as LAPACK ``dposvx``
    does) so that features on different scales do not defeat Cholesky; a
    singular system (collinear or constant features, fewer rows than
    features) falls back to the minimum-norm least-squares solution, as
    scikit-learn's ``lstsq`` would give.
    """
    d = np.sqrt(np.diag(A))
    d = np.where(d > 0, d, 1.0)
    As = A / np.outer(d, d)
    Bs = B / d[:, None]
    try:
        c = scipy.linalg.cho_factor(As, check_finite=False)
        x = scipy.linalg.cho_solve(c, Bs, check_finite=False)
        if not np.all(np.isfinite(x)):
            raise np.linalg.LinAlgError("non-finite solution")
    except np.linalg.LinAlgError:
        x = scipy.linalg.lstsq(As, Bs, check_finite=False)[0]
    return x / d[:, None]


def solve_normal_equations(g: Gram, p: int, ridge=None) -> np.ndarray:
    """Coefficients from merged cross products.

    Parameters
    ----------
    g : Gram
        Over all rows; ``g.centred`` says whether there is an intercept.
    p : int
        Number of features (the first p columns of ``[X, Y]``).
    ridge : ndarray of shape (r,), optional
        Ridge parameter of each response (not applied to the intercept).

    Returns
    -------
    Beta : ndarray of shape (r, p + 1)
        Column 0 is the intercept (0 without one).
    """
    A = g.cp[:p, :p]
    B = g.cp[:p, p:]
    r = B.shape[1]
    if ridge is None:
        coef = _spd_solve(A, B)
    else:
        ridge = np.broadcast_to(np.asarray(ridge, dtype=np.float64).ravel(), (r,))
        coef = np.empty((p, r))
        # One solve per distinct ridge parameter (usually one for all responses).
        for lam in np.unique(ridge):
            cols = np.flatnonzero(ridge == lam)
            coef[:, cols] = _spd_solve(A + lam * np.eye(p), B[:, cols])
    beta = np.zeros((r, p + 1))
    beta[:, 1:] = coef.T
    if g.centred:
        beta[:, 0] = g.mean[p:] - g.mean[:p] @ coef
    return beta


def qr_partial(X: np.ndarray, Y: np.ndarray, intercept: bool, block_rows=None) -> np.ndarray:
    """R factor of this rank's ``[1, X, Y]`` (``[X, Y]`` without an intercept), block by block.

    Returns
    -------
    ndarray of shape (min(n_local, q), q), q = intercept + p + r
    """
    q = int(intercept) + X.shape[1] + Y.shape[1]

    def blocks():
        for bx, by in _paired_blocks(X, Y, block_rows or tsqr.block_rows(q)):
            parts = ([np.ones((bx.shape[0], 1))] if intercept else []) + [bx, by]
            yield np.hstack(parts)

    return tsqr.local_r(blocks(), q)


def solve_qr(Rs: Sequence[np.ndarray], p: int, intercept: bool) -> np.ndarray:
    """Coefficients from the per-rank R factors of ``[1, X, Y]`` (in rank order).

    ``beta = R11^{-1} R12`` by back substitution; if ``R11`` is numerically
    singular (exactly collinear features) the minimum-norm solution of
    ``R11 beta = R12`` is returned instead.

    Returns
    -------
    Beta : ndarray of shape (r, p + 1)
    """
    R = tsqr.stack_qr(Rs)
    p1 = p + int(intercept)
    R11 = R[:p1, :p1]
    R12 = R[:p1, p1:]
    r = R12.shape[1]
    d = np.abs(np.diag(R11))
    if R11.shape[0] < p1 or d.min() <= d.max() * p1 * np.finfo(float).eps:
        full = np.zeros((p1, p1 + r))
        full[: R.shape[0]] = R[:p1]
        coef = scipy.linalg.lstsq(full[:, :p1], full[:, p1:], check_finite=False)[0]
    else:
        coef = scipy.linalg.solve_triangular(R11, R12, check_finite=False)
    beta = np.zeros((r, p + 1))
    if intercept:
        beta[:, 0] = coef[0]
        beta[:, 1:] = coef[1:].T
    else:
        beta[:, 1:] = coef.T
    return beta


def predict(X: np.ndarray, beta: np.ndarray, block_rows=None, dtype=np.float64) -> np.ndarray:
    """``X beta[:, 1:]^T + beta[:, 0]``, a block at a time.

    Parameters
    ----------
    X : ndarray of shape (n_local, p), float32 or float64
    beta : ndarray of shape (r, p + 1)
    dtype : {numpy.float64, numpy.float32}
        Precision of the products and of the result; a block of ``X`` of the
        other type is converted on its own.

    Returns
    -------
    ndarray of shape (n_local, r), ``dtype``
    """
    W = np.ascontiguousarray(beta[:, 1:].T, dtype=dtype)
    b0 = beta[:, 0].astype(dtype)
    out = np.empty((X.shape[0], beta.shape[0]), dtype=dtype)
    row = 0
    for B in iter_blocks(X, block_rows):
        m = B.shape[0]
        np.matmul(B if B.dtype == dtype else B.astype(dtype), W, out=out[row:row + m])
        out[row:row + m] += b0
        row += m
    return out

