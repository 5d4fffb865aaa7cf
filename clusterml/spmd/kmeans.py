"""``kmeans_init`` and ``kmeans``: the k-means kernels wired to guarded collectives.

The math, and the reasons the same seed gives the same centroids on any
number of ranks, are in :mod:`clusterml.kernels.kmeans`; here each rank wraps
its rows in a :class:`~clusterml.kernels.kmeans.Rows` (with its global offset)
and hands the kernels a team whose ``allgather`` is the guarded
``ctx.allgather`` and whose ``root`` is ``ctx.bcast_from(0, ...)``.  The
decisions between collectives are taken from gathered values only, so every
rank takes the same branch and ends with the same bits.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..errors import InputError, ParameterError
from ..kernels import kmeans as km_k
from .algorithm import Algorithm, Result, check_choice, check_int, check_memory, check_positive, register
from .inputs import Partition, check_finite, is_sparse, load_local
from .moments import csr_kernel

__all__ = ["kmeans_init", "kmeans"]

_RESULTS = ("computeCentroids", "computeAssignments", "computeExactObjectiveFunction")
_DEFAULT_RESULTS = "|".join(_RESULTS)
# daal4py's CSR initialisation methods that take sparse rows here, and their dense twins
_CSR_INIT = {"deterministicCSR": "deterministicDense", "randomCSR": "randomDense"}


class _RankTeam:
    """The ranks of a context, as the kernels' team: this rank's rows plus collectives."""

    def __init__(self, ctx, rows):
        self.ctx = ctx
        self.rows = rows

    def allgather(self, fn, *args, step=None):
        return self.ctx.allgather(fn, self.rows, *args, step=step)

    def root(self, fn, *args, step=None):
        return self.ctx.bcast_from(0, fn, *args, step=step)

    def fold(self, fn, merge, *args, step=None):
        return self.ctx.fold(fn, merge, self.rows, *args, step=step)


def _check_clusters(n_clusters: int, layout) -> None:
    if n_clusters > layout.total:
        raise InputError(f"nClusters={n_clusters} but only {layout.total} rows in total; "
                         f"k-means needs at least one row per cluster")


def _check_clusters_memory(n_clusters: int) -> int:
    # centroids and per-cluster sums: nClusters x features float64 each
    check_memory(f"nClusters={n_clusters} (16 bytes per cluster and feature, at least)",
                 16.0 * n_clusters)
    return n_clusters


def _check_seed(seed) -> int:
    seed = check_int("seed", seed, 0)
    if seed >= 1 << 64:
        raise ParameterError(f"seed={seed} must be < 2**64")
    return seed


@register
class kmeans_init(Algorithm):
    """Initial centroids for k-means (daal4py's ``kmeans_init``).

    Parameters
    ----------
    nClusters : int
        Number of centroids, at most the total number of rows.
    method : {"defaultDense", "deterministicDense", "randomDense", "plusPlusDense", "parallelPlusDense"}
        ``defaultDense`` = ``deterministicDense``: the first nClusters rows in
        rank order (also when rank 0 holds fewer).  ``randomDense``:
        nClusters distinct rows, uniformly.  ``plusPlusDense``: k-means++
        (Arthur & Vassilvitskii 2007).  ``parallelPlusDense``: k-means||
        (Bahmani et al. 2012) reduced with weighted k-means++.
    nTrials : int
        Candidates per k-means++ step; > 1 is the greedy variant (it keeps
        the candidate that lowers the potential most).
    oversamplingFactor : float
        k-means||: expected new candidates per round = oversamplingFactor * nClusters.
    nRounds : int
        k-means|| rounds.
    seed : int
        Every draw is a function of (seed, step, global row index), so a seed
        picks the same centroids on any number of ranks and in one process.
    nRowsTotal, offset : int
        Accepted for daal4py scripts, ignored: clusterml computes both from
        the ranks' row counts.
    engine : None
        daal4py engines are not supported; use ``seed``.
    fptype : {"double", "float"}
        Accepted; computations are in double.
    distributed : bool

    Notes
    -----
    Collectives: one for the first rows or the random rows; one per centre
    for k-means++ (two when nTrials > 1); two per round for k-means||, then
    one for the candidate weights and a broadcast of the reduced centroids
    computed on rank 0.

    Examples
    --------
    >>> import numpy as np, clusterml as cml
    >>> X = np.arange(20.0).reshape(10, 2)
    >>> cml.kmeans_init(3).compute(X).centroids
    array([[0., 1.],
           [2., 3.],
           [4., 5.]])
    """

    def __init__(self, nClusters, method="defaultDense", nTrials=1, oversamplingFactor=0.5,
                 nRounds=5, seed=km_k.DEFAULT_SEED, nRowsTotal=0, offset=0, engine=None,
                 fptype="double", distributed=False):
        super().__init__(distributed)
        self.nClusters = _check_clusters_memory(check_int("nClusters", nClusters, 1))
        self.method = check_choice("method", method, km_k.INIT_METHODS + tuple(_CSR_INIT))
        self.nTrials = check_int("nTrials", nTrials, 1)
        self.oversamplingFactor = check_positive("oversamplingFactor", oversamplingFactor)
        self.nRounds = check_int("nRounds", nRounds, 1)
        self.seed = _check_seed(seed)
        self.nRowsTotal = check_int("nRowsTotal", nRowsTotal, 0)
        self.offset = check_int("offset", offset, 0)
        if engine is not None:
            raise ParameterError(f"engine={engine!r} is not supported; pass seed=... instead")
        self.engine = None
        self.fptype = check_choice("fptype", fptype, ("double", "float"))

    def _check_global(self, layout, extras):
        _check_clusters(self.nClusters, layout)

    _accepts_sparse = True

    @property
    def _streams(self):
        """First and random rows are read from a large file as needed; the ++ seedings load it."""
        return _CSR_INIT.get(self.method, self.method) in (
            "defaultDense", "deterministicDense", "randomDense")

    def _compute(self, ctx, layout, data):
        method = _CSR_INIT.get(self.method, self.method)
        if is_sparse(data) and method not in ("defaultDense",) + tuple(_CSR_INIT.values()):
            raise InputError(f"kmeans_init: method={self.method!r} does not take sparse input; for "
                             f"sparse CSR data use {', '.join(map(repr, _CSR_INIT))} (or the "
                             f"same methods' Dense names)")
        if not is_sparse(data) and self.method in _CSR_INIT:
            raise InputError(f"kmeans_init: method={self.method!r} needs sparse CSR input (a "
                             f"scipy.sparse matrix or a .npz file); the data is dense")
        team = _RankTeam(ctx, km_k.Rows(data, layout.offset))
        centroids = km_k.init_centroids(
            team, method, self.nClusters, seed=self.seed, n_trials=self.nTrials,
            oversampling_factor=self.oversamplingFactor, n_rounds=self.nRounds,
            total=layout.total)
        return Result("kmeans_init_result", centroids=centroids)


@register
class kmeans(Algorithm):
    """k-means clustering by Lloyd's algorithm (daal4py's ``kmeans``).

    ``compute(data, inputCentroids)``: ``inputCentroids`` (nClusters x
    features, e.g. ``kmeans_init(...).compute(data).centroids``) must be the
    same on every rank.

    Parameters
    ----------
    nClusters : int
    maxIterations : int
        At most this many iterations; 0 only assigns rows to
        ``inputCentroids`` (prediction).
    accuracyThreshold : float
        As daal4py: stop once the objective changes by less than this
        (absolute) between iterations; 0 disables the test.  Independently,
        the loop ends as soon as an iteration changes no assignment (the
        centroids could not move again), as scikit-learn's does.
    gamma : float
        daal4py's weight of categorical features; accepted, unused (all
        features are numeric).
    distanceType : {"euclidean"}
    resultsToEvaluate : str
        ``|``-separated subset of ``computeCentroids``, ``computeAssignments``,
        ``computeExactObjectiveFunction``.
    assignFlag : bool
        Assignments are returned if this is True and ``computeAssignments``
        is requested.
    method : {"defaultDense", "lloydDense"}
    fptype : {"double", "float"}
    distributed : bool

    Returns
    -------
    Result with fields
        ``centroids`` (nClusters x features), ``assignments`` (n_local x 1
        int32, this rank's rows, or None), ``objectiveFunction`` (1 x 1, the
        sum of squared distances of rows to their centroid), ``nIterations``
        (1 x 1 int32, counted as distributed daal4py counts them: when the
        centroids stop moving, the iteration that finds the objective
        unchanged counts too, so it is scikit-learn's ``n_iter_ + 1``, at most
        ``maxIterations``).

    Notes
    -----
    Each iteration computes distances a block of rows at a time with BLAS
    (``||x||^2 - 2 x.c + ||c||^2``, never the whole n x k matrix) and makes
    one reduction carrying the per-cluster sums, counts, the objective and
    the number of changed assignments.  An empty cluster takes the row
    farthest from its centroid (largest first, ties to the smaller global row
    index), which leaves its old cluster, as in scikit-learn; this costs one
    more small collective in that iteration.  Assignments and objective are
    those of the returned centroids.

    Examples
    --------
    >>> import numpy as np, clusterml as cml
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 10.0], [10.0, 11.0]])
    >>> res = cml.kmeans(2, maxIterations=10).compute(X, X[[0, 2]])
    >>> res.centroids
    array([[ 0. ,  0.5],
           [10. , 10.5]])
    >>> res.assignments.ravel().tolist()
    [0, 0, 1, 1]
    """

    _extras = ("inputCentroids",)

    def __init__(self, nClusters, maxIterations, accuracyThreshold=0.0, gamma=1.0,
                 distanceType="euclidean", resultsToEvaluate=_DEFAULT_RESULTS, assignFlag=True,
                 method="defaultDense", fptype="double", distributed=False):
        super().__init__(distributed)
        self.nClusters = _check_clusters_memory(check_int("nClusters", nClusters, 1))
        self.maxIterations = check_int("maxIterations", maxIterations, 0)
        self.accuracyThreshold = check_positive("accuracyThreshold", accuracyThreshold,
                                                allow_zero=True)
        self.gamma = check_positive("gamma", gamma, allow_zero=True)
        self.distanceType = check_choice("distanceType", distanceType, ("euclidean",))
        if not isinstance(resultsToEvaluate, str):
            raise ParameterError(f"resultsToEvaluate={resultsToEvaluate!r} must be a string "
                                 f"such as {_DEFAULT_RESULTS!r}")
        flags = [f.strip() for f in resultsToEvaluate.split("|") if f.strip()]
        for f in flags:
            check_choice("resultsToEvaluate", f, _RESULTS)
        self.resultsToEvaluate = resultsToEvaluate
        if not isinstance(assignFlag, (bool, np.bool_)):
            raise ParameterError(f"assignFlag={assignFlag!r} must be True or False")
        self.assignFlag = bool(assignFlag)
        self._assign = self.assignFlag and "computeAssignments" in flags
        self.method = check_choice("method", method, ("defaultDense", "lloydDense", "lloydCSR"))
        self.fptype = check_choice("fptype", fptype, ("double", "float"))

    _accepts_sparse = True
    _streams = True   # Lloyd reads a large file once per pass, block by block

    def _check_global(self, layout, extras):
        _check_clusters(self.nClusters, layout)

    def _load_centroids(self, spec, n_features, box):
        """Load, check and fingerprint this rank's copy of the initial centroids."""
        if spec is None:
            raise InputError("inputCentroids: missing; kmeans.compute(data, inputCentroids) needs "
                             "the initial centroids (e.g. kmeans_init(...).compute(data).centroids)")
        if isinstance(spec, Result) and "centroids" in spec.fields():
            spec = spec.centroids
        if isinstance(spec, Partition):
            raise InputError("inputCentroids: read_partition splits a file between ranks; the "
                             "initial centroids must be the whole table on every rank")
        C, _ = load_local(spec, 0, 1, "inputCentroids")
        if C is None:
            raise InputError("inputCentroids: the file is empty")
        expected = (self.nClusters, n_features)
        if C.shape != expected:
            raise InputError(f"inputCentroids has shape {C.shape}; expected {expected} "
                             f"(nClusters={self.nClusters} rows, one column per data column)")
        check_finite(C, "inputCentroids")
        box["C"] = np.ascontiguousarray(C, dtype=np.float64)
        return hashlib.sha256(box["C"].tobytes()).hexdigest()

    def _compute(self, ctx, layout, data, inputCentroids):
        box = {}
        digests = ctx.allgather(self._load_centroids, inputCentroids, layout.ncols["data"], box,
                                step="inputCentroids")
        if len(set(digests)) > 1:
            groups = {}
            for r, dg in enumerate(digests):
                groups.setdefault(dg, []).append(r)
            detail = "; ".join("ranks " + ", ".join(map(str, rs)) for rs in groups.values())
            raise InputError(f"inputCentroids differ between ranks ({detail} agree); every rank "
                             f"must pass the same initial centroids")
        csr_kernel(self, data, None, None)  # lloydCSR needs sparse rows
        rows = km_k.Rows(data, layout.offset)
        info = {"fixed_point": False}
        centroids, objective, n_iter = km_k.lloyd(_RankTeam(ctx, rows), box["C"],
                                                  self.maxIterations, self.accuracyThreshold, self.dtype,
                                                  info)
        if info["fixed_point"]:
            # daal4py counts the iteration that finds the objective unchanged (measured on
            # daal4py 2024.7 distributed: one more than scikit-learn's n_iter_, at most maxIterations)
            n_iter = min(n_iter + 1, self.maxIterations)
        assignments = rows.labels.reshape(-1, 1) if self._assign else None
        return Result("kmeans_result", centroids=centroids, assignments=assignments,
                      objectiveFunction=np.array([[objective]]),
                      nIterations=np.array([[n_iter]], dtype=np.int32))
