"""``EmpiricalCovariance`` fitted with clusterml's ``covariance``."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import linalg
from sklearn.covariance import EmpiricalCovariance as _SkEmpiricalCovariance
from sklearn.utils.validation import check_is_fitted

from ..spmd.moments import covariance
from ._base import COMMON_CONSTRAINTS, DistributedEstimator, total_rows

__all__ = ["EmpiricalCovariance"]


class EmpiricalCovariance(DistributedEstimator, _SkEmpiricalCovariance):
    """Maximum likelihood covariance estimator, fitted by one reduction over all rows.

    scikit-learn's :class:`sklearn.covariance.EmpiricalCovariance` (whose
    ``score``, ``mahalanobis``, ``error_norm`` and ``get_precision`` it keeps),
    fitted with clusterml's ``covariance`` algorithm.

    Parameters
    ----------
    store_precision : bool, default=True
        Also compute ``precision_`` (the pseudo-inverse of ``covariance_``).
    assume_centered : bool, default=False
        Use ``X^T X / n`` around 0 instead of the covariance around the mean.
    distributed : bool, default=False
        Fit SPMD on this rank's rows; every rank ends with the same attributes.
    cluster : clusterml.Cluster, optional
        Fit on the cluster's engines.

    Attributes
    ----------
    location_ : ndarray of shape (n_features,)
    covariance_ : ndarray of shape (n_features, n_features)
        Divided by n (maximum likelihood), as scikit-learn's.
    precision_ : ndarray of shape (n_features, n_features) or None
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
    """

    _parameter_constraints: ClassVar[dict] = {**_SkEmpiricalCovariance._parameter_constraints,
                                              **COMMON_CONSTRAINTS}

    def __init__(self, *, store_precision=True, assume_centered=False, distributed=False, cluster=None):
        self.store_precision = store_precision
        self.assume_centered = assume_centered
        self.distributed = distributed
        self.cluster = cluster

    def fit(self, X, y=None):
        """Fit the maximum likelihood covariance of ``X`` (all ranks' rows).

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

    def _fit_arrays(self, ctx, X, y, y_1d):
        n = total_rows(ctx, X)
        res = covariance(distributed=ctx.distributed).compute(X)
        mean = res.mean.ravel()
        p = mean.size
        cov = np.zeros((p, p)) if n < 2 else res.covariance * ((n - 1) / n)
        if self.assume_centered:
            cov = cov + np.outer(mean, mean)
            mean = np.zeros(p)
        self.location_ = mean
        self.covariance_ = cov
        # pinvh runs once and is broadcast: every rank holds the same bits.
        self.precision_ = (ctx.bcast_from(0, linalg.pinvh, cov, check_finite=False, step="precision")
                           if self.store_precision else None)

    def mahalanobis(self, X):
        """Squared Mahalanobis distances of rows (a handle for rows on the engines).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or rows on the engines

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        out = self._per_row("mahalanobis", X)
        return out if out is not None else super().mahalanobis(X)
