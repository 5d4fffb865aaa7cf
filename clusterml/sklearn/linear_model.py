"""``LinearRegression`` and ``Ridge`` fitted with clusterml's regression training (one reduction)."""

from __future__ import annotations

from numbers import Real
from typing import ClassVar

import numpy as np
from sklearn.base import MultiOutputMixin, RegressorMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ..spmd.algorithm import Result
from ..spmd.linear_model import (
    linear_regression_prediction,
    linear_regression_training,
    ridge_regression_training,
)
from ._base import COMMON_CONSTRAINTS, DistributedEstimator, total_rows

__all__ = ["LinearRegression", "Ridge"]


class _LinearModel(MultiOutputMixin, RegressorMixin, DistributedEstimator):
    _supervised = True

    def fit(self, X, y):
        """Fit the model on all ranks' rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or the rows on engines / in files
        y : array-like of shape (n_samples,) or (n_samples, n_targets), or rows on engines / in files

        Returns
        -------
        self
        """
        return self._fit(X, y)

    def _training(self, distributed):  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit_arrays(self, ctx, X, y, y_1d):
        n = total_rows(ctx, X)
        p = X.shape[1]
        needed = p + int(self.fit_intercept)
        if n < needed:
            raise ValueError(f"{type(self).__name__} in clusterml needs at least n_features"
                             f"{' + 1' if self.fit_intercept else ''} = {needed} samples in total, "
                             f"got n_samples={n}")
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        beta = self._training(ctx.distributed).compute(X, Y).model.Beta
        if y_1d:
            self.coef_ = beta[0, 1:].copy()
            self.intercept_ = float(beta[0, 0])
        else:
            self.coef_ = beta[:, 1:].copy()
            self.intercept_ = beta[:, 0].copy()
        if not self.fit_intercept:
            self.intercept_ = 0.0  # a scalar, as scikit-learn's

    def predict(self, X):
        """Predict targets (a handle for rows on the engines).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or rows on the engines

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_targets)
        """
        check_is_fitted(self)
        out = self._per_row("predict", X)
        if out is not None:
            return out
        X = self._check_X(X)
        coef = np.atleast_2d(self.coef_)
        beta = np.column_stack([np.ravel(self.intercept_) * np.ones(coef.shape[0]), coef])
        model = Result("linear_regression_model", Beta=beta)
        pred = linear_regression_prediction().compute(X, model).prediction
        return pred[:, 0] if np.ndim(self.coef_) == 1 else pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


class LinearRegression(_LinearModel):
    """Ordinary least squares, fitted by one reduction of the cross products of all rows.

    scikit-learn's :class:`sklearn.linear_model.LinearRegression` on
    clusterml's ``linear_regression_training`` (normal equations, equilibrated
    Cholesky; the minimum-norm solution when the design is singular).

    Parameters
    ----------
    fit_intercept : bool, default=True
    copy_X : bool, default=True
        Accepted for compatibility (the data are never modified).
    distributed : bool, default=False
    cluster : clusterml.Cluster, optional

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
    intercept_ : float or ndarray of shape (n_targets,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
    """

    _parameter_constraints: ClassVar[dict] = {"fit_intercept": ["boolean"], "copy_X": ["boolean"],
                                              **COMMON_CONSTRAINTS}

    def __init__(self, *, fit_intercept=True, copy_X=True, distributed=False, cluster=None):
        self.fit_intercept = fit_intercept
        self.copy_X = copy_X
        self.distributed = distributed
        self.cluster = cluster

    def _training(self, distributed):
        # interceptFlag always explicit: its default differs between versions (SPEC §2).
        return linear_regression_training(method="normEqDense", interceptFlag=bool(self.fit_intercept),
                                          distributed=distributed)


class Ridge(_LinearModel):
    """Linear least squares with l2 regularisation (the intercept is not penalised).

    scikit-learn's :class:`sklearn.linear_model.Ridge` on clusterml's
    ``ridge_regression_training`` (one reduction, then a Cholesky solve).

    Parameters
    ----------
    alpha : float or array-like of shape (n_targets,), default=1.0
        Regularisation strength (>= 0), one for all targets or one per target.
    fit_intercept : bool, default=True
    copy_X : bool, default=True
        Accepted for compatibility.
    distributed : bool, default=False
    cluster : clusterml.Cluster, optional

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
    intercept_ : float or ndarray of shape (n_targets,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
    """

    _parameter_constraints: ClassVar[dict] = {"alpha": [Interval(Real, 0, None, closed="left"), np.ndarray],
                              "fit_intercept": ["boolean"], "copy_X": ["boolean"], **COMMON_CONSTRAINTS}

    def __init__(self, alpha=1.0, *, fit_intercept=True, copy_X=True, distributed=False, cluster=None):
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.copy_X = copy_X
        self.distributed = distributed
        self.cluster = cluster

    def _fit_arrays(self, ctx, X, y, y_1d):
        alpha = np.ravel(np.asarray(self.alpha, dtype=np.float64))
        r = 1 if y.ndim == 1 else y.shape[1]
        if alpha.size not in (1, r) or np.any(alpha < 0):
            raise ValueError(f"Number of targets and number of penalties do not correspond: "
                             f"{alpha.size} != {r}" if alpha.size not in (1, r)
                             else f"alpha={self.alpha!r} must be >= 0")
        self._alpha = alpha
        super()._fit_arrays(ctx, X, y, y_1d)
        del self._alpha

    def _training(self, distributed):
        return ridge_regression_training(ridgeParameters=self._alpha,
                                         interceptFlag=bool(self.fit_intercept), distributed=distributed)
