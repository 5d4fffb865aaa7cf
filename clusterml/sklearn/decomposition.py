"""``PCA`` fitted with clusterml's ``covariance`` (one reduction) and a small eigendecomposition."""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..spmd.decomposition import pca_transform
from ..spmd.moments import covariance
from ._base import COMMON_CONSTRAINTS, DistributedEstimator, total_rows

__all__ = ["PCA"]


def _eigen(cov: np.ndarray):
    """Eigenpairs of a covariance matrix, descending, signs as scikit-learn's ``svd_flip``.

    Each component's largest-magnitude entry is made positive.
    """
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1]
    evals = np.clip(evals[order], 0.0, None)
    V = evecs[:, order].T.copy()
    signs = np.sign(V[np.arange(V.shape[0]), np.argmax(np.abs(V), axis=1)])
    signs[signs == 0] = 1.0
    return evals, V * signs[:, None]


class PCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, DistributedEstimator):
    """Principal component analysis on the covariance matrix of all ranks' rows.

    scikit-learn's :class:`sklearn.decomposition.PCA` with its
    ``covariance_eigh`` solver: one reduction of clusterml's ``covariance``
    over all rows, then the eigendecomposition of the ``p x p`` matrix (on
    rank 0, broadcast).  Exact, like ``svd_solver="full"``; suited to data
    with many more rows than features.

    Parameters
    ----------
    n_components : int, float in (0, 1) or None, default=None
        Components to keep: all (``min(n_samples, n_features)``) if None; the
        fewest whose explained variance exceeds the fraction if a float.
    copy : bool, default=True
        Accepted for compatibility (the data are never modified).
    whiten : bool, default=False
        Scale the projections to unit variance.
    svd_solver : {"auto", "full", "covariance_eigh"}, default="auto"
        All three mean the covariance eigendecomposition described above.
    random_state : None
        Accepted for compatibility; nothing is random.
    distributed : bool, default=False
    cluster : clusterml.Cluster, optional

    Attributes
    ----------
    components_ : ndarray of shape (`n_components_`, n_features)
    explained_variance_ : ndarray of shape (`n_components_`,)
    explained_variance_ratio_ : ndarray of shape (`n_components_`,)
    singular_values_ : ndarray of shape (`n_components_`,)
    mean_ : ndarray of shape (n_features,)
    n_components_ : int
    n_samples_ : int
    noise_variance_ : float
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_components": [Interval(Integral, 0, None, closed="left"),
                         Interval(Real, 0, 1, closed="neither"), None],
        "copy": ["boolean"],
        "whiten": ["boolean"],
        "svd_solver": [StrOptions({"auto", "full", "covariance_eigh"})],
        "random_state": ["random_state"],
        **COMMON_CONSTRAINTS,
    }

    def __init__(self, n_components=None, *, copy=True, whiten=False, svd_solver="auto",
                 random_state=None, distributed=False, cluster=None):
        self.n_components = n_components
        self.copy = copy
        self.whiten = whiten
        self.svd_solver = svd_solver
        self.random_state = random_state
        self.distributed = distributed
        self.cluster = cluster

    def fit(self, X, y=None):
        """Fit the model on all rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or the rows on engines / in files
        y : None
            Ignored.

        Returns
        -------
        self
        """
        return self._fit(X)

    def _n_kept(self, evals, n, p) -> int:
        limit = min(n, p)
        nc = self.n_components
        if nc is None:
            return limit
        if isinstance(nc, Integral) and not isinstance(nc, bool):
            if nc > limit:
                raise ValueError(f"n_components={nc} must be between 0 and min(n_samples, "
                                 f"n_features)={limit} with svd_solver={self.svd_solver!r}")
            return int(nc)
        ratio = np.cumsum(evals / evals.sum()) if evals.sum() > 0 else np.ones_like(evals)
        return int(min(np.searchsorted(ratio, nc, side="right") + 1, limit))

    def _fit_arrays(self, ctx, X, y, y_1d):
        n = total_rows(ctx, X)
        p = X.shape[1]
        if n < 2:
            raise ValueError(f"PCA needs at least 2 samples in total, got n_samples={n}")
        res = covariance(distributed=ctx.distributed).compute(X)
        evals, V = ctx.bcast_from(0, _eigen, res.covariance, step="pca eigen")
        k = self._n_kept(evals, n, p)
        total = evals.sum()
        limit = min(n, p)
        self.mean_ = res.mean.ravel()
        self.n_samples_ = n
        self.n_components_ = k
        self.components_ = V[:k]
        self.explained_variance_ = evals[:k]
        self.explained_variance_ratio_ = evals[:k] / total if total > 0 else np.zeros(k)
        self.singular_values_ = np.sqrt(evals[:k] * (n - 1))
        self.noise_variance_ = float(evals[k:limit].mean()) if k < limit else 0.0

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def transform(self, X):
        """Project rows on the components (a handle for rows on the engines).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or rows on the engines

        Returns
        -------
        ndarray of shape (n_samples, n_components_)
        """
        check_is_fitted(self)
        out = self._per_row("transform", X)
        if out is not None:
            return out
        X = self._check_X(X)
        extra = {"mean": self.mean_}
        if self.whiten:
            extra["eigenvalue"] = self.explained_variance_
        return pca_transform().compute(X, self.components_, extra).transformedData

    def inverse_transform(self, X):
        """Map projections back to the feature space."""
        check_is_fitted(self)
        out = self._per_row("inverse_transform", X)
        if out is not None:
            return out
        X = np.asarray(X, dtype=np.float64)
        W = self.components_
        if self.whiten:
            W = np.sqrt(self.explained_variance_)[:, None] * W
        return X @ W + self.mean_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags
