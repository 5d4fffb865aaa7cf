"""``StandardScaler`` fitted with clusterml's ``low_order_moments``."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..spmd.moments import low_order_moments
from ._base import COMMON_CONSTRAINTS, DistributedEstimator, total_rows

__all__ = ["StandardScaler"]


class StandardScaler(OneToOneFeatureMixin, TransformerMixin, DistributedEstimator):
    """Standardize features by removing the mean and scaling to unit variance.

    scikit-learn's :class:`sklearn.preprocessing.StandardScaler`, fitted by
    one reduction of clusterml's ``low_order_moments`` over all rows.

    Parameters
    ----------
    copy : bool, default=True
        ``transform`` always returns a new array (accepted for compatibility).
    with_mean : bool, default=True
        Centre the data.
    with_std : bool, default=True
        Scale the data to unit variance.
    distributed : bool, default=False
        Fit SPMD on this rank's rows (under ``mpiexec``); every rank ends with
        the same attributes.
    cluster : clusterml.Cluster, optional
        Fit on the cluster's engines (data: a path with ``{}``, a
        ``cluster.scatter`` handle, a ``cluster.ref`` name or an array).

    Attributes
    ----------
    scale_ : ndarray of shape (n_features,) or None
        ``sqrt(var_)``; 1 for constant features.
    mean_ : ndarray of shape (n_features,) or None
    var_ : ndarray of shape (n_features,) or None
        Population variance (divided by n, as scikit-learn's).
    n_samples_seen_ : int
        Rows over all ranks.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        When fitted on a DataFrame with string column names.
    """

    _parameter_constraints: ClassVar[dict] = {"copy": ["boolean"], "with_mean": ["boolean"],
                                              "with_std": ["boolean"], **COMMON_CONSTRAINTS}

    def __init__(self, *, copy=True, with_mean=True, with_std=True, distributed=False, cluster=None):
        self.copy = copy
        self.with_mean = with_mean
        self.with_std = with_std
        self.distributed = distributed
        self.cluster = cluster

    def fit(self, X, y=None):
        """Compute the mean and standard deviation of every feature over all rows.

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
        m = low_order_moments(estimatesToCompute="estimatesMeanVariance",
                              distributed=ctx.distributed).compute(X)
        mean = m.mean.ravel()
        var = np.zeros_like(mean) if n < 2 else m.variance.ravel() * ((n - 1) / n)
        self.n_samples_seen_ = n
        self.mean_ = mean if (self.with_mean or self.with_std) else None
        if self.with_std:
            # scikit-learn's test for a constant feature (its _is_constant_feature)
            eps = np.finfo(np.float64).eps
            constant = var <= n * eps * var + (n * mean * eps) ** 2
            self.var_ = var
            self.scale_ = np.where(constant, 1.0, np.sqrt(var))
        else:
            self.var_ = None
            self.scale_ = None

    def transform(self, X, copy=None):
        """Standardize rows: ``(X - mean_) / scale_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or rows on the engines
        copy : bool, optional
            Ignored: a new array is returned.

        Returns
        -------
        ndarray of shape (n_samples, n_features), or a handle to the rows on the engines
        """
        check_is_fitted(self)
        out = self._per_row("transform", X)
        if out is not None:
            return out
        X = self._check_X(X)
        if self.with_mean:
            X = X - self.mean_
        if self.with_std:
            X = X / self.scale_
        return X

    def inverse_transform(self, X, copy=None):
        """Undo :meth:`transform`: ``X * scale_ + mean_``."""
        check_is_fitted(self)
        out = self._per_row("inverse_transform", X)
        if out is not None:
            return out
        X = self._check_X(X)
        if self.with_std:
            X = X * self.scale_
        if self.with_mean:
            X = X + self.mean_
        return X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags
