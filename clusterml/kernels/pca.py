"""Principal component analysis on the correlation matrix, and the PCA transform.

Two ways to the same eigenpairs (those of the correlation matrix, as daal4py):

- ``correlationDense``: the merged centred cross products of
  :mod:`clusterml.kernels.covariance` give the correlation matrix ``C``;
  its symmetric eigendecomposition (LAPACK ``dsyevd`` via ``numpy.linalg.eigh``)
  gives the eigenpairs.
- ``svdDense``: the rows are standardised with the merged mean and standard
  deviation (:mod:`clusterml.kernels.moments`), ``Z = (X - mean) / sd``;
  a TSQR of ``Z`` (:mod:`clusterml.kernels.tsqr`) gives ``R`` with
  ``R^T R = Z^T Z = (n - 1) C``, so the SVD ``R = U diag(s) V^T`` gives the
  eigenvalues ``s**2 / (n - 1)`` and the eigenvectors ``V`` without forming
  ``C`` (better conditioned: the eigenvalues' relative accuracy is that of
  ``s``, not of ``s**2``).

A constant column has correlation 0 with the others and 1 with itself in
``correlationDense`` (so it adds an eigenvalue 1); in ``svdDense`` its
standardised values are all 0 (an eigenvalue 0).

The deterministic sign convention ("sign flip", ``isDeterministic=True``)
makes the component of largest magnitude of every eigenvector positive (the
first such component on a tie).

References
----------
I. T. Jolliffe, *Principal Component Analysis*, 2nd ed., Springer 2002, §2-3.
oneDAL developer guide, "Principal Component Analysis" (correlation and SVD
methods, sign flip) and "Principal Components Analysis Transform".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import covariance as cov_k
from . import moments as mom_k
from . import tsqr
from .blocks import iter_blocks
from .moments import Moments

__all__ = ["RESULTS", "parse_results", "sign_flip", "from_crossproducts", "standardiser",
           "standardised_blocks", "from_r_factors", "transform", "centred_r_partial",
           "centred_r_merge", "from_centred_r"]

#: Flags of ``resultsToCompute`` and the ``dataForTransform`` key each one fills.
RESULTS = {"mean": "mean", "variance": "variance", "eigenvalue": "eigenvalue"}


def parse_results(spec: str) -> tuple:
    """Split ``"mean|variance|eigenvalue"`` into flags; ``"none"`` or ``""`` gives ()."""
    if not isinstance(spec, str):
        raise TypeError(f"resultsToCompute={spec!r} must be a string such as 'mean|variance|eigenvalue'")
    flags = tuple(f.strip() for f in spec.split("|") if f.strip() and f.strip() != "none")
    bad = [f for f in flags if f not in RESULTS]
    if bad:
        raise ValueError(f"resultsToCompute={spec!r}: unknown flag(s) {', '.join(map(repr, bad))}; "
                         f"expected any of 'mean', 'variance', 'eigenvalue' joined by '|'")
    return flags


def sign_flip(V: np.ndarray) -> np.ndarray:
    """Flip rows of ``V`` so each row's largest-magnitude entry is positive (in place)."""
    if V.size:
        idx = np.argmax(np.abs(V), axis=1)
        neg = V[np.arange(V.shape[0]), idx] < 0
        V[neg] *= -1.0
    return V


def _pack(eigenvalues, eigenvectors, mean, variances, n_components, deterministic, flags):
    k = n_components or eigenvectors.shape[0]
    vals = np.asarray(eigenvalues[:k], dtype=np.float64).reshape(1, -1).copy()
    vecs = np.ascontiguousarray(eigenvectors[:k], dtype=np.float64)
    if deterministic:
        sign_flip(vecs)
    means = np.asarray(mean, dtype=np.float64).reshape(1, -1).copy()
    variances = np.asarray(variances, dtype=np.float64).reshape(1, -1).copy()
    full = {"mean": means, "variance": variances, "eigenvalue": vals}
    return {
        "eigenvalues": vals,
        "eigenvectors": vecs,
        "means": means,
        "variances": variances,
        "dataForTransform": {f: full[f].copy() for f in flags},
    }


def from_crossproducts(cp: cov_k.CrossProducts, n_components: int = 0, deterministic: bool = False,
                       flags: tuple = tuple(RESULTS)) -> dict:
    """PCA result fields from merged cross products (``correlationDense``).

    Parameters
    ----------
    cp : CrossProducts
        Merged over all rows (n >= 2).
    n_components : int
        Number of leading components to keep; 0 keeps all p.
    deterministic : bool
        Apply :func:`sign_flip`.
    flags : tuple of str
        Keys of ``dataForTransform`` to fill.

    Returns
    -------
    dict
        eigenvalues (1 x k, descending), eigenvectors (k x p, rows), means
        (1 x p), variances (1 x p, divided by n - 1), dataForTransform.
    """
    fin = cov_k.finalize(cp)
    w, v = np.linalg.eigh(fin["correlation"])
    # eigh is ascending; a correlation matrix is positive semi-definite, so
    # rounding-level negative eigenvalues are clipped to 0.
    w = np.clip(w[::-1], 0.0, None)
    return _pack(w, v[:, ::-1].T, fin["mean"], np.diag(fin["covariance"]), n_components,
                 deterministic, flags)


def standardiser(m: Moments):
    """Mean and scale (sample standard deviation; 1 for a constant column) from merged moments.

    Returns
    -------
    mean : ndarray of shape (p,)
    scale : ndarray of shape (p,)
    variance : ndarray of shape (p,)
        Divided by n - 1.
    """
    variance = m.m2 / (m.n - 1)
    sd = np.sqrt(variance)
    return m.mean.copy(), np.where(sd > 0, sd, 1.0), variance


def standardised_blocks(X: np.ndarray, mean: np.ndarray, scale: np.ndarray, block_rows=None):
    """Yield ``(B - mean) / scale`` for each row block ``B`` of ``X`` (block-sized temporaries)."""
    for B in iter_blocks(X, block_rows or tsqr.block_rows(X.shape[1])):
        Z = B - mean
        Z /= scale
        yield Z


def from_r_factors(Rs: Sequence[np.ndarray], n: int, mean: np.ndarray, variance: np.ndarray,
                   n_components: int = 0, deterministic: bool = False,
                   flags: tuple = tuple(RESULTS)) -> dict:
    """PCA result fields from the per-rank R factors of the standardised rows (``svdDense``).

    Parameters
    ----------
    Rs : sequence of ndarray of shape (k_i, p)
        R factors of each rank's standardised rows, in rank order.
    n : int
        Total number of rows (>= 2).
    mean, variance : ndarray of shape (p,)
    n_components, deterministic, flags
        As in :func:`from_crossproducts`.

    Returns
    -------
    dict
        As :func:`from_crossproducts`; eigenvalues are ``s**2 / (n - 1)``.
    """
    R = tsqr.stack_qr(Rs)
    _, s, Vt = tsqr.svd_of_r(R)
    return _pack(s * s / (n - 1), Vt, mean, variance, n_components, deterministic, flags)


def transform(X: np.ndarray, eigenvectors: np.ndarray, n_components: int = 0, mean=None,
              variance=None, eigenvalue=None, block_rows=None, dtype=np.float64) -> np.ndarray:
    """Project rows on the leading principal components (oneDAL's PCA transform).

    ``Y = ((X - mean) / sqrt(variance)) T_k^T / sqrt(eigenvalue_k)``, each
    step applied only when its vector is given: centring (mean),
    normalisation (variance) and whitening (eigenvalue).  A zero variance
    leaves its column unscaled and a zero eigenvalue gives a zero column
    (never inf or NaN).

    Parameters
    ----------
    X : ndarray of shape (n_local, p)
    eigenvectors : ndarray of shape (k, p)
        Rows are components.
    n_components : int
        Leading components to use (0: all k).
    mean, variance : ndarray of shape (p,) or (1, p), optional
    eigenvalue : ndarray of shape (>= n_components,) or (1, ...), optional
    dtype : {numpy.float64, numpy.float32}
        Precision of the projection GEMM and of the result (the centring is
        done in float64 on each block, then rounded).

    Returns
    -------
    ndarray of shape (n_local, n_components), ``dtype``
    """
    k = n_components or eigenvectors.shape[0]
    T = eigenvectors[:k]
    p = T.shape[1]
    shift = np.zeros(p) if mean is None else np.asarray(mean, dtype=np.float64).ravel()
    scale = np.ones(p)
    if variance is not None:
        sd = np.sqrt(np.asarray(variance, dtype=np.float64).ravel())
        scale = np.where(sd > 0, sd, 1.0)
    # Fold the per-column scale and the whitening into the projection matrix:
    # one GEMM per block instead of three passes over it.
    P = (T / scale).T  # (p, k)
    if eigenvalue is not None:
        ev = np.asarray(eigenvalue, dtype=np.float64).ravel()[:k]
        root = np.sqrt(np.clip(ev, 0.0, None))
        P = P * np.where(root > 0, 1.0 / np.where(root > 0, root, 1.0), 0.0)
    P = P.astype(dtype)
    out = np.empty((X.shape[0], k), dtype=dtype)
    row = 0
    for B in iter_blocks(X, block_rows):
        m = B.shape[0]
        # Centre before projecting (not x P - m P): data far from the origin
        # would otherwise lose its digits to cancellation.
        Z = B - shift if mean is not None else B
        np.matmul(Z if Z.dtype == dtype else Z.astype(dtype), P, out=out[row:row + m])
        row += m
    return out


# -- one-pass svdDense (streaming): merge (moments, R of the centred rows) pairs ------------

def centred_r_partial(X: np.ndarray):
    """Moments of a chunk and the R factor of its rows centred on the chunk's own mean.

    Returns
    -------
    (Moments, ndarray of shape (min(n, p), p))
    """
    m = mom_k.partial(X)
    p = X.shape[1]
    return m, tsqr.local_r(standardised_blocks(X, m.mean, np.ones(p)), p)


def centred_r_merge(a, b):
    """Merge two :func:`centred_r_partial` of disjoint rows (associative, pure).

    The TSQR form of the pairwise update of Chan, Golub & LeVeque (1979): the
    centred rows of the union have the same Gram matrix as
    ``[R_a; R_b; sqrt(n_a n_b / n) (mean_b - mean_a)]``, so its R factor is
    the union's, without forming a Gram matrix or shifting by a guess.
    """
    (ma, Ra), (mb, Rb) = a, b
    if ma.n == 0 or mb.n == 0:
        return (mb, Rb) if ma.n == 0 else (ma, Ra)
    w = np.sqrt(ma.n * mb.n / (ma.n + mb.n))
    return mom_k.merge(ma, mb), tsqr.stack_qr([Ra, Rb, w * (mb.mean - ma.mean)[None, :]])


def from_centred_r(total, n_components: int = 0, deterministic: bool = False,
                   flags: tuple = tuple(RESULTS)) -> dict:
    """PCA result fields from merged :func:`centred_r_partial` (``svdDense`` in one pass)."""
    m, R = total
    mean, scale, variance = standardiser(m)
    return from_r_factors([R / scale], m.n, mean, variance, n_components, deterministic, flags)
