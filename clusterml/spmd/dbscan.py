"""``dbscan``: density-based clustering, daal4py's names, distributed by slabs with halos.

The math (and why it equals scikit-learn's DBSCAN) is in
:mod:`clusterml.kernels.dbscan`; here it is wired to collectives: two small
allgathers choose the slabs, three exchanges move rows to their slab (plus
the epsilon-wide halos), halo core flags to their holders and labels back to
the rows' ranks, and one allgather of per-cluster summaries joins clusters
that cross slabs.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError, ParameterError
from ..kernels import dbscan as db_k
from . import comm
from .algorithm import Algorithm, Result, check_choice, check_int, check_positive, register

__all__ = ["dbscan"]

_RESULTS = ("computeCoreIndices", "computeCoreObservations")


def _gather_rows(received):
    g = np.concatenate([r[0] for r in received])
    X = np.vstack([r[1] for r in received])
    owned = np.concatenate([r[2] for r in received])
    order = np.argsort(g, kind="stable")
    return g[order], X[order], owned[order]


@register
class dbscan(Algorithm):
    """DBSCAN clustering (daal4py's ``dbscan``), equal to scikit-learn's on all rows.

    Parameters
    ----------
    epsilon : float
        Neighbourhood radius (Euclidean, ``<=``), > 0.
    minObservations : int
        Rows (the row itself included) a neighbourhood needs for a core row.
    resultsToCompute : str
        ``'|'``-joined subset of ``computeCoreIndices``,
        ``computeCoreObservations`` (default: neither, as daal4py).
    memorySavingMode : bool
        Accepted for daal4py compatibility (neighbourhoods are never stored).
    method : {"defaultDense"}
    fptype : {"double", "float"}
        ``"float"``: the rows are rounded to float32 and travel between ranks
        as float32 (half the bytes); ``coreObservations`` is float32.  The
        distances between those float32 rows are computed in float64 (the
        k-d tree works in double), and so are sums of weights, so the result is
        exactly DBSCAN of the float32-rounded rows.
    distributed : bool

    Notes
    -----
    Result fields: ``assignments`` (n_local x 1 int32: this rank's rows,
    cluster numbers from 0, -1 for noise), ``nClusters`` (1 x 1 int32),
    ``coreIndices`` (global row indices of this rank's core rows, c x 1
    int32) and ``coreObservations`` (those rows, c x p), or None when not
    asked for.  Clusters are numbered in the order of their smallest row
    index (rows stacked in rank order), and a border row reachable from
    several clusters joins the one with the smallest number: exactly
    ``sklearn.cluster.DBSCAN(eps=epsilon, min_samples=minObservations)``'s
    ``labels_``, whatever the number of ranks.

    Distributed, rows are moved to slabs along the widest axis (cut at
    quantiles, so each rank holds about n / ranks rows) plus the rows within
    ``epsilon`` of its slab; data is never gathered on one rank.  Many rows
    sharing one coordinate along that axis, or an ``epsilon`` wider than the
    slabs, make the slabs or halos larger.  After a ``compute``, the
    attribute ``held_rows_`` says how many slab and halo rows this rank held.

    Examples
    --------
    >>> import numpy as np, clusterml as cml
    >>> X = np.array([[0.0, 0.0], [0.0, 0.1], [0.1, 0.0], [5.0, 5.0], [5.0, 5.1], [9.0, 9.0]])
    >>> res = cml.dbscan(epsilon=0.5, minObservations=2).compute(X)
    >>> res.assignments.ravel().tolist(), int(res.nClusters[0, 0])
    ([0, 0, 0, 1, 1, -1], 2)
    """

    # this rank's rows: the facade keeps them on the engines (they differ by design)
    per_row_fields = ("coreIndices", "coreObservations")

    def __init__(self, epsilon, minObservations, resultsToCompute="", memorySavingMode=False,
                 method="defaultDense", fptype="double", distributed=False):
        super().__init__(distributed)
        self.epsilon = check_positive("epsilon", epsilon)
        self.minObservations = check_int("minObservations", minObservations, minimum=1)
        if not isinstance(resultsToCompute, str):
            raise ParameterError(f"resultsToCompute={resultsToCompute!r} must be a string such as "
                                 f"'computeCoreIndices|computeCoreObservations'")
        flags = {f.strip() for f in resultsToCompute.split("|") if f.strip()}
        for f in flags:
            check_choice("resultsToCompute", f, _RESULTS)
        self.resultsToCompute = resultsToCompute
        self._want = flags
        if not isinstance(memorySavingMode, (bool, np.bool_)):
            raise ParameterError(f"memorySavingMode={memorySavingMode!r} must be True or False")
        self.memorySavingMode = bool(memorySavingMode)
        self.method = check_choice("method", method, ("defaultDense",))
        self.fptype = check_choice("fptype", fptype, ("double", "float"))

    def compute(self, *args, **kwargs):
        """``compute(data, weights=None)``: this rank's rows and, optionally, their weights (n x 1).

        With weights, a row is core when the total weight of the rows within
        ``epsilon`` is at least ``minObservations`` (daal4py's and
        scikit-learn's ``sample_weight`` rule).
        """
        weighted = len(args) > 1 or kwargs.get("weights") is not None
        if kwargs.get("weights", 0) is None:
            kwargs.pop("weights")
        if self.distributed:
            # every rank must load the same tables: agree on the weights first
            flags = comm.context(True).allgather(lambda: weighted, step="dbscan inputs")
            if len(set(flags)) > 1:
                given = ", ".join(str(r) for r, f in enumerate(flags) if f)
                raise ParameterError(f"dbscan.compute: weights given on rank(s) {given} only; "
                                     f"give them on every rank or on none")
        # weights are a second row-distributed table when given (not through the facade)
        self._tables = ("data", "weights") if weighted else ("data",)
        return super().compute(*args, **kwargs)

    def _local_check_fn(self, extras):
        def check(arrays):
            w = arrays.get("weights")
            if w is not None and w.shape[1] != 1:
                raise InputError(f"weights: expected one column (one weight per row), got "
                                 f"{w.shape[1]} columns")
        return check

    def _slabs(self, ctx, data):
        """The axis of widest spread and the cuts giving ranks about equal row counts."""
        lows, highs = zip(*ctx.allgather(db_k.bounds, data, step="dbscan bounds"), strict=True)
        lo, hi = np.min(lows, axis=0), np.max(highs, axis=0)
        width = np.where(np.isfinite(hi - lo), hi - lo, 0.0)
        axis = int(np.argmax(width))
        a, b = (float(lo[axis]), float(hi[axis])) if width[axis] > 0 else (0.0, 0.0)
        hist = ctx.sum(db_k.histogram, data, axis, a, b, step="dbscan histogram")
        return axis, db_k.slab_cuts(hist, a, b, ctx.size)

    def _compute(self, ctx, layout, data, weights=None):
        if self.fptype == "float":
            data = data.astype(np.float32)
            weights = None if weights is None else weights.astype(np.float32)
        eps, k, me = self.epsilon, ctx.size, ctx.rank
        axis, cuts = self._slabs(ctx, data)
        gidx = np.arange(layout.offset, layout.offset + len(data), dtype=np.int64)
        rows = data if weights is None else np.hstack([data, weights])   # weights travel along
        G, X, owned = _gather_rows(ctx.alltoall(db_k.route, rows, gidx, axis, cuts, eps, k,
                                                step="dbscan slabs"))
        W = None
        if weights is not None:
            X, W = X[:, :-1], X[:, -1]
        Xo, Go = X[owned], G[owned]
        # what this rank held (tests check that no rank gathers the data)
        self.held_rows_ = {"slab": int(owned.sum()), "halo": int((~owned).sum())}
        core_own = ctx.local(db_k.core_flags, Xo, X, eps, self.minObservations, W,
                             step="dbscan core rows")
        # every slab's core flags go to the ranks that hold its rows as halo
        halo = ctx.alltoall(db_k.halo_flags, Xo, Go, core_own, me, axis, cuts, eps, k,
                            step="dbscan halo flags")
        core = np.zeros(len(G), dtype=bool)
        core[owned] = core_own
        hg = np.concatenate([h[0] for h in halo])
        hf = np.concatenate([h[1] for h in halo]).astype(bool)
        if hg.size:
            pos = np.searchsorted(G, hg)          # G is sorted; every halo row is here
            core[pos] = hf
        comp, n_comp = ctx.local(db_k.local_components, X, core, eps, step="dbscan links")
        shared = ~owned
        shared[owned] = db_k.halo_rows(Xo, me, axis, cuts, eps)
        summaries = ctx.allgather(db_k.halo_links, me, G, comp, n_comp, shared,
                                  step="dbscan clusters")
        numbers, n_clusters = db_k.global_labels(summaries)
        label = np.where(comp >= 0, numbers[me][np.maximum(comp, 0)] if n_comp else -1, -1)
        own_label = label[owned]
        border = ~core_own
        own_label[border] = ctx.local(db_k.border_labels, Xo[border], X, label, eps,
                                      step="dbscan border rows")
        return self._back(ctx, layout, data, Go, own_label, core_own, n_clusters)

    def _back(self, ctx, layout, data, Go, own_label, core_own, n_clusters):
        """Send labels and core flags to the ranks the rows came from; build the result."""
        ends = np.cumsum(layout.counts)

        def payloads():
            origin = np.searchsorted(ends, Go, side="right")
            return [(Go[origin == r], own_label[origin == r], core_own[origin == r])
                    for r in range(ctx.size)]

        got = ctx.alltoall(payloads, step="dbscan labels back")
        assignments = np.full(len(data), -1, dtype=np.int32)
        is_core = np.zeros(len(data), dtype=bool)
        for g, lab, c in got:
            assignments[g - layout.offset] = lab
            is_core[g - layout.offset] = c
        core_rows = np.flatnonzero(is_core)
        indices = (core_rows + layout.offset).astype(np.int32).reshape(-1, 1)
        return Result("dbscan_result", assignments=assignments.reshape(-1, 1),
                      coreIndices=indices if "computeCoreIndices" in self._want else None,
                      coreObservations=(data[core_rows] if "computeCoreObservations" in self._want
                                        else None),
                      nClusters=np.array([[n_clusters]], dtype=np.int32))
