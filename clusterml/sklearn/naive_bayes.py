"""``MultinomialNB`` fitted with clusterml's multinomial naive Bayes training (one reduction)."""

from __future__ import annotations

import warnings
from numbers import Real
from typing import ClassVar

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_non_negative, column_or_1d

from ..spmd.algorithm import Result
from ..spmd.naive_bayes import multinomial_naive_bayes_prediction, multinomial_naive_bayes_training
from ._base import COMMON_CONSTRAINTS, DistributedEstimator

__all__ = ["MultinomialNB"]

_ALL = "computeClassLabels|computeClassProbabilities|computeClassLogProbabilities"


def _union(parts):
    return np.unique(np.concatenate([np.asarray(p) for p in parts]))


class MultinomialNB(ClassifierMixin, DistributedEstimator):
    """Naive Bayes for multinomial counts (word counts, ...), fitted by one reduction.

    scikit-learn's :class:`sklearn.naive_bayes.MultinomialNB` on clusterml's
    ``multinomial_naive_bayes_training``.

    Parameters
    ----------
    alpha : float or array-like of shape (n_features,), default=1.0
        Additive smoothing (> 0; 0 is not supported).
    force_alpha : bool, default=True
        If False, alpha below 1e-10 is raised to 1e-10 (with a warning).
    fit_prior : bool, default=True
        Learn the class priors from the class frequencies; else uniform.
    class_prior : array-like of shape (n_classes,), optional
        Fixed priors.
    distributed : bool, default=False
    cluster : clusterml.Cluster, optional

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Sorted labels over all ranks (numeric when fitted distributed).
    class_count_ : ndarray of shape (n_classes,)
    class_log_prior_ : ndarray of shape (n_classes,)
    feature_log_prob_ : ndarray of shape (n_classes, n_features)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
    """

    _supervised = True
    _y_numeric = False
    _parameter_constraints: ClassVar[dict] = {
        "alpha": [Interval(Real, 0, None, closed="left"), "array-like"],
        "fit_prior": ["boolean"], "class_prior": ["array-like", None], "force_alpha": ["boolean"],
        **COMMON_CONSTRAINTS,
    }

    def __init__(self, *, alpha=1.0, force_alpha=True, fit_prior=True, class_prior=None,
                 distributed=False, cluster=None):
        self.alpha = alpha
        self.force_alpha = force_alpha
        self.fit_prior = fit_prior
        self.class_prior = class_prior
        self.distributed = distributed
        self.cluster = cluster

    def fit(self, X, y):
        """Fit on all ranks' rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), non-negative counts, or rows on engines / in files
        y : array-like of shape (n_samples,), or rows on engines / in files

        Returns
        -------
        self
        """
        return self._fit(X, y)

    def _alpha(self, p):
        alpha = np.asarray(self.alpha, dtype=np.float64)
        if alpha.ndim and alpha.shape != (p,):
            raise ValueError(f"When alpha is an array, it should contains `n_features`. Got "
                             f"{alpha.shape[0]} elements instead of {p}.")
        if np.min(alpha) < 0:
            raise ValueError(f"All values in alpha must be greater than 0, got {self.alpha!r}")
        if np.min(alpha) < 1e-10:
            if self.force_alpha:
                raise ValueError("alpha=0 is not supported by clusterml's MultinomialNB; use a "
                                 "small positive alpha (or force_alpha=False)")
            warnings.warn("alpha too small will result in numeric errors, setting alpha = 1.0e-10",
                          stacklevel=1)
            alpha = np.maximum(alpha, 1e-10)
        return np.broadcast_to(alpha, (p,)).copy()

    def _fit_arrays(self, ctx, X, y, y_1d):
        if not ctx.distributed:
            # scikit-learn's checks and messages (the SPMD path checks on every rank alike)
            check_non_negative(X, "MultinomialNB (input X)")
            y = column_or_1d(y, warn=True)
            check_classification_targets(y)
        elif not y_1d and y.shape[1] != 1:
            raise ValueError(f"y should be a 1d array, got an array of shape {np.shape(y)} instead.")
        y = np.asarray(y).ravel()
        classes = _union(ctx.allgather(np.unique, y, step="class labels"))
        if classes.size < 2:
            raise ValueError(f"MultinomialNB needs at least 2 classes in y; got {classes.size} class")
        k, p = classes.size, X.shape[1]
        codes = np.searchsorted(classes, y).astype(np.float64)
        counts = ctx.sum(lambda: np.bincount(codes.astype(np.intp), minlength=k).astype(np.float64),
                         step="class counts")
        if self.class_prior is not None:
            priors = np.asarray(self.class_prior, dtype=np.float64).ravel()
            if priors.size != k:
                raise ValueError("Number of priors must match number of classes.")
        elif self.fit_prior:
            priors = counts / counts.sum()
        else:
            priors = np.full(k, 1.0 / k)
        model = multinomial_naive_bayes_training(
            nClasses=k, priorClassEstimates=priors, alpha=self._alpha(p),
            distributed=ctx.distributed).compute(X, codes.reshape(-1, 1)).model
        self.classes_ = classes
        self.class_count_ = counts
        self.class_log_prior_ = model.LogP.ravel()
        self.feature_log_prob_ = model.LogTheta

    def _predict(self, X):
        X = self._check_X(X)
        model = Result("multinomial_naive_bayes_model", LogP=self.class_log_prior_.reshape(-1, 1),
                       LogTheta=self.feature_log_prob_)
        return multinomial_naive_bayes_prediction(
            nClasses=self.classes_.size, resultsToEvaluate=_ALL).compute(X, model)

    def predict(self, X):
        """Most probable class of each row (a handle for rows on the engines)."""
        check_is_fitted(self)
        out = self._per_row("predict", X)
        if out is not None:
            return out
        return self.classes_[self._predict(X).prediction[:, 0].astype(np.intp)]

    def predict_proba(self, X):
        """Class probabilities of each row, shape (n_samples, n_classes)."""
        check_is_fitted(self)
        out = self._per_row("predict_proba", X)
        return out if out is not None else self._predict(X).probabilities

    def predict_log_proba(self, X):
        """Log class probabilities of each row, shape (n_samples, n_classes)."""
        check_is_fitted(self)
        out = self._per_row("predict_log_proba", X)
        return out if out is not None else self._predict(X).logProbabilities

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.classifier_tags.poor_score = True  # as scikit-learn's MultinomialNB
        tags.input_tags.sparse = False
        return tags
