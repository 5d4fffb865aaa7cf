"""``KMeans`` on clusterml's ``kmeans_init`` and ``kmeans`` (Lloyd); ``DBSCAN`` on ``dbscan``."""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..kernels.kmeans import sqdist_rows
from ..spmd.dbscan import dbscan
from ..spmd.kmeans import kmeans, kmeans_init
from ..spmd.moments import low_order_moments
from ._base import COMMON_CONSTRAINTS, DistributedEstimator, total_rows

__all__ = ["KMeans", "DBSCAN"]

_METHODS = {"k-means++": "plusPlusDense", "random": "randomDense"}


class KMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, DistributedEstimator):
    """K-means clustering (Lloyd's algorithm) over all ranks' rows.

    scikit-learn's :class:`sklearn.cluster.KMeans` on clusterml's
    ``kmeans_init`` (k-means++ greedy with ``2 + log(k)`` trials, or random
    rows) and ``kmeans``.  A seed gives the same centres on any number of
    ranks.

    Parameters
    ----------
    n_clusters : int, default=8
    init : {"k-means++", "random"} or ndarray of shape (n_clusters, n_features), default="k-means++"
    n_init : "auto" or int, default="auto"
        Runs with different seeds; the one with the lowest inertia is kept.
        "auto": 1 for "k-means++" or an array, 10 for "random".
    max_iter : int, default=300
    tol : float, default=1e-4
        Stop when an iteration lowers the inertia by less than
        ``tol * n_samples * mean(variance of the features)`` (scikit-learn
        compares the centre shift with ``tol * mean(variance)``); 0 runs to
        convergence (no assignment changes), where both give the same centres.
    verbose : int, default=0
        Ignored.
    random_state : int, RandomState or None
        Draws the seeds of the runs (on rank 0, broadcast).
    copy_x : bool, default=True
        Ignored (the data are never modified).
    algorithm : {"lloyd", "elkan"}, default="lloyd"
        Both run Lloyd's algorithm (same result).
    distributed : bool, default=False
    cluster : clusterml.Cluster, optional

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : ndarray of shape (n_samples,)
        This rank's rows when ``distributed``; a handle to the rows on the
        engines with ``cluster=`` (``labels_.gather()`` fetches them).
    inertia_ : float
    n_iter_ : int
        Lloyd iterations (counted as daal4py counts them).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
    """

    _per_row_attrs = ("labels_",)
    _parameter_constraints: ClassVar[dict] = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"k-means++", "random"}), "array-like"],
        "n_init": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
        "copy_x": ["boolean"],
        "algorithm": [StrOptions({"lloyd", "elkan"})],
        **COMMON_CONSTRAINTS,
    }

    def __init__(self, n_clusters=8, *, init="k-means++", n_init="auto", max_iter=300, tol=1e-4,
                 verbose=0, random_state=None, copy_x=True, algorithm="lloyd", distributed=False,
                 cluster=None):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.copy_x = copy_x
        self.algorithm = algorithm
        self.distributed = distributed
        self.cluster = cluster

    def fit(self, X, y=None):
        """Cluster all ranks' rows.

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

    def _runs(self) -> int:
        explicit = not isinstance(self.init, str)
        if self.n_init == "auto":
            return 10 if (not explicit and self.init == "random") else 1
        if explicit and self.n_init != 1:
            warnings.warn(f"Explicit initial center position passed: performing only one init in "
                          f"{type(self).__name__} instead of n_init={self.n_init}.", RuntimeWarning,
                          stacklevel=3)
            return 1
        return int(self.n_init)

    def _initial_centres(self, p):
        C = np.asarray(self.init, dtype=np.float64)
        if C.shape != (self.n_clusters, p):
            raise ValueError(f"The shape of the initial centers {C.shape} does not match the number "
                             f"of clusters {self.n_clusters} and features {p}.")
        return C

    def _fit_arrays(self, ctx, X, y, y_1d):
        k, p = self.n_clusters, X.shape[1]
        n = total_rows(ctx, X)
        if n < k:
            raise ValueError(f"n_samples={n} should be >= n_clusters={k}.")
        runs = self._runs()
        seeds = ctx.bcast_from(0, lambda: check_random_state(self.random_state).randint(
            0, np.iinfo(np.int32).max, size=runs), step="kmeans seeds")
        threshold = 0.0
        if self.tol > 0 and n > 1:
            var = low_order_moments(estimatesToCompute="estimatesMeanVariance",
                                    distributed=ctx.distributed).compute(X).variance
            threshold = float(self.tol * np.mean(var) * (n - 1))
        best = None
        for seed in seeds:
            if isinstance(self.init, str):
                C0 = kmeans_init(k, method=_METHODS[self.init], nTrials=2 + int(np.log(k)),
                                 seed=int(seed), distributed=ctx.distributed).compute(X).centroids
            else:
                C0 = self._initial_centres(p)
            res = kmeans(k, self.max_iter, accuracyThreshold=threshold,
                         distributed=ctx.distributed).compute(X, C0)
            # A later run wins only if clearly better: inertias equal up to rounding (which
            # may differ with the number of ranks) keep the first, on any number of ranks.
            if best is None or res.objectiveFunction[0, 0] < best.objectiveFunction[0, 0] * (1 - 1e-9):
                best = res
        self.cluster_centers_ = best.centroids
        self.labels_ = best.assignments.ravel().astype(np.int32)
        self.inertia_ = float(best.objectiveFunction[0, 0])
        self.n_iter_ = int(best.nIterations[0, 0])

    @property
    def _n_features_out(self):
        return self.cluster_centers_.shape[0]

    def _sqdist(self, X):
        return sqdist_rows(self._check_X(X), self.cluster_centers_)

    def predict(self, X):
        """Index of the nearest centre of each row (a handle for rows on the engines)."""
        check_is_fitted(self)
        out = self._per_row("predict", X)
        return out if out is not None else np.argmin(self._sqdist(X), axis=1).astype(np.int32)

    def transform(self, X):
        """Distances of each row to every centre, shape (n_samples, n_clusters)."""
        check_is_fitted(self)
        out = self._per_row("transform", X)
        return out if out is not None else np.sqrt(self._sqdist(X))

    def score(self, X, y=None):
        """Opposite of the inertia of ``X`` on the fitted centres (rows in this process)."""
        check_is_fitted(self)
        return -float(np.min(self._sqdist(X), axis=1).sum())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64"]
        tags.input_tags.sparse = False
        return tags


class DBSCAN(ClusterMixin, DistributedEstimator):
    """Density-based clustering (DBSCAN) over all ranks' rows.

    scikit-learn's :class:`sklearn.cluster.DBSCAN` on clusterml's ``dbscan``
    (see :mod:`clusterml.spmd.dbscan`): the same clusters, numbered as
    scikit-learn numbers them, on any number of ranks.  Distributed, the rows
    are moved between ranks by slabs with ``eps``-wide halos; they are never
    gathered on one rank.

    Parameters
    ----------
    eps : float, default=0.5
        Neighbourhood radius (Euclidean distance ``<= eps``), > 0.
    min_samples : int, default=5
        Rows (the row itself included) within ``eps`` of a core row.
    metric : {"euclidean"}, default="euclidean"
        Only the Euclidean distance is supported.
    metric_params : dict or None, default=None
        Ignored (the Euclidean distance has no parameters).
    algorithm : {"auto", "ball_tree", "kd_tree", "brute"}, default="auto"
        Ignored: neighbours are always found with a k-d tree (same result).
    leaf_size : int, default=30
        Ignored.
    p : float or None, default=None
        Ignored (the metric is Euclidean).
    n_jobs : int or None, default=None
        Ignored.
    distributed : bool, default=False
    cluster : clusterml.Cluster, optional

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each row (from 0; -1 for noise).  This rank's rows when
        ``distributed``; a handle to the rows on the engines with ``cluster=``.
    core_sample_indices_ : ndarray of shape (n_core_samples,)
        Indices of the core rows, counted in all ranks' rows stacked in rank
        order.  When ``distributed``: this rank's core rows only (a handle with
        ``cluster=``; ``gather()`` gives scikit-learn's array).
    components_ : ndarray of shape (n_core_samples, n_features)
        The core rows (this rank's, as ``core_sample_indices_``).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
    """

    _per_row_attrs = ("labels_", "core_sample_indices_", "components_")
    _parameter_constraints: ClassVar[dict] = {
        "eps": [Interval(Real, 0.0, None, closed="neither")],
        "min_samples": [Interval(Integral, 1, None, closed="left")],
        "metric": [StrOptions({"euclidean"})],
        "metric_params": [dict, None],
        "algorithm": [StrOptions({"auto", "ball_tree", "kd_tree", "brute"})],
        "leaf_size": [Interval(Integral, 1, None, closed="left")],
        "p": [Interval(Real, 0.0, None, closed="left"), None],
        "n_jobs": [Integral, None],
        **COMMON_CONSTRAINTS,
    }

    def __init__(self, eps=0.5, *, min_samples=5, metric="euclidean", metric_params=None,
                 algorithm="auto", leaf_size=30, p=None, n_jobs=None, distributed=False,
                 cluster=None):
        self.eps = eps
        self.min_samples = min_samples
        self.metric = metric
        self.metric_params = metric_params
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.p = p
        self.n_jobs = n_jobs
        self.distributed = distributed
        self.cluster = cluster

    def fit(self, X, y=None, sample_weight=None):
        """Cluster all ranks' rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or the rows on engines / in files
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), optional
            Weight of each row: a row is core when the total weight within
            ``eps`` reaches ``min_samples`` (scikit-learn's rule; weights may
            be negative).  When ``distributed``, this rank's rows' weights,
            given on every rank or on none.  Not supported with ``cluster=``.

        Returns
        -------
        self
        """
        return self._fit(X, sample_weight=sample_weight)

    def fit_predict(self, X, y=None, sample_weight=None):
        """Cluster all ranks' rows; ``labels_`` (this rank's rows, or a handle with ``cluster=``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or the rows on engines / in files
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), optional
            As for :meth:`fit`.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self._fit(X, sample_weight=sample_weight).labels_

    def _fit_arrays(self, ctx, X, y, y_1d, sample_weight=None):
        inputs = [X]
        if sample_weight is not None:
            w = sample_weight
            # one weight per row, as the (n x 1) table dbscan takes; paths are loaded by dbscan
            inputs.append(np.reshape(w, (-1, 1)) if hasattr(w, "__len__") and
                          not isinstance(w, str) else w)
        res = dbscan(float(self.eps), int(self.min_samples),
                     resultsToCompute="computeCoreIndices|computeCoreObservations",
                     distributed=ctx.distributed).compute(*inputs)
        self.labels_ = res.assignments.ravel().astype(np.intp)
        self.core_sample_indices_ = res.coreIndices.ravel().astype(np.intp)
        self.components_ = np.ascontiguousarray(res.coreObservations, dtype=np.float64).reshape(
            -1, X.shape[1])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags
