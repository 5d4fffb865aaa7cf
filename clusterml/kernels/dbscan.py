"""DBSCAN on rows spread over parts, by a slab partition with epsilon-wide halos.

The clusters equal ``sklearn.cluster.DBSCAN(eps, min_samples)`` on all rows
stacked, label numbers included:

* a row is *core* when at least ``min_obs`` rows (itself included) lie within
  distance ``eps`` (``<=``);
* clusters are the connected components of the core rows, two core rows
  being linked when within ``eps``; they are numbered 0, 1, ... in the order
  of their smallest global row index (scikit-learn's order: it grows clusters
  from the core rows in row order);
* a *border* row (not core, but within ``eps`` of a core row) joins the
  adjacent cluster with the smallest number -- in scikit-learn the first
  cluster grown takes it and keeps it; every other row is noise (-1).

Distributed, nothing is gathered on one part.  The rows are re-partitioned
into ``k`` slabs along the axis of widest spread, cut at quantiles of a
global histogram so the slabs hold about equal numbers of rows.  Each part
receives its slab's rows plus a *halo*: the rows of other slabs within
``eps`` of its slab along that axis.  Every neighbour of a slab row lies in
slab + halo (its axis coordinate differs by at most ``eps``), so core flags
and cluster links found on a part are exact.  Only halo rows are copied, so
a part holds about ``n / k`` rows plus its halo.  Clusters crossing slabs are
joined through the halo core rows (a union-find over ``(part, local
cluster)`` pairs, small: one entry per cluster).

References
----------
M. Ester, H.-P. Kriegel, J. Sander, X. Xu, "A density-based algorithm for
discovering clusters in large spatial databases with noise", KDD 1996.
M. M. A. Patwary et al., "A new scalable parallel DBSCAN algorithm using the
disjoint-set data structure", SC 2012 (spatial partition + halo + union-find).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = ["bounds", "histogram", "slab_cuts", "near_slab", "route", "halo_flags", "core_flags",
           "local_components", "halo_rows", "halo_links", "global_labels", "border_labels",
           "relabel", "dbscan"]

_BINS = 4096


def bounds(X: np.ndarray):
    """Column minima and maxima of a part's rows (``+inf``/``-inf`` for no rows)."""
    p = X.shape[1]
    if len(X) == 0:
        return np.full(p, np.inf), np.full(p, -np.inf)
    return X.min(axis=0), X.max(axis=0)


def histogram(X: np.ndarray, axis: int, lo: float, hi: float) -> np.ndarray:
    """Counts of a part's rows in ``_BINS`` equal bins of ``[lo, hi]`` along ``axis``."""
    if len(X) == 0 or not hi > lo:
        h = np.zeros(_BINS, dtype=np.int64)
        h[0] = len(X)
        return h
    return np.histogram(X[:, axis], bins=_BINS, range=(lo, hi))[0].astype(np.int64)


def slab_cuts(hist: np.ndarray, lo: float, hi: float, parts: int) -> np.ndarray:
    """``parts - 1`` increasing cut values splitting the histogrammed rows about evenly.

    Slab ``s`` holds the rows with ``cuts[s-1] <= x < cuts[s]`` along the axis.
    """
    if parts == 1:
        return np.zeros(0)
    edges = np.linspace(lo, hi, _BINS + 1)
    cum = np.cumsum(hist)
    targets = cum[-1] * np.arange(1, parts) / parts
    idx = np.searchsorted(cum, targets, side="left")
    return edges[np.minimum(idx + 1, _BINS)]


def _slabs(cuts: np.ndarray):
    """Lower and upper bounds of every slab: slab ``s`` is ``[lo[s], hi[s])``."""
    return np.concatenate([[-np.inf], cuts]), np.concatenate([cuts, [np.inf]])


def near_slab(x: np.ndarray, s: int, cuts: np.ndarray, eps: float) -> np.ndarray:
    """Mask of the coordinates ``x`` within ``eps`` of slab ``s`` (inside it included)."""
    lo, hi = _slabs(cuts)
    # a hair wider than eps: a halo row too many is harmless (distances are exact
    # later), one too few would lose a neighbour to the rounding of lo - eps
    pad = eps * (1 + 1e-9)
    return (x >= lo[s] - pad) & (x < hi[s] + pad)


def route(X: np.ndarray, gidx: np.ndarray, axis: int, cuts: np.ndarray, eps: float, parts: int):
    """Where each row goes: its slab (as owned) and every other slab within ``eps`` (as halo).

    Returns
    -------
    list of (gidx, rows, owned), one per destination part
        ``owned`` is a bool mask: True for rows of the destination's slab.
    """
    x = X[:, axis] if len(X) else np.zeros(0)
    owner = np.searchsorted(cuts, x, side="right")
    out = []
    for s in range(parts):
        mine = owner == s
        take = mine | near_slab(x, s, cuts, eps)
        out.append((gidx[take], X[take], mine[take]))
    return out


def halo_flags(X: np.ndarray, gidx: np.ndarray, flags: np.ndarray, part: int, axis: int,
               cuts: np.ndarray, eps: float, parts: int):
    """Per destination part: ``(gidx, flags)`` of this slab's rows that are its halo rows."""
    x = X[:, axis] if len(X) else np.zeros(0)
    out = []
    for s in range(parts):
        m = near_slab(x, s, cuts, eps) if s != part else np.zeros(len(x), dtype=bool)
        out.append((gidx[m], flags[m]))
    return out


def core_flags(own: np.ndarray, everything: np.ndarray, eps: float, min_obs: float,
               weights: np.ndarray | None = None) -> np.ndarray:
    """True for each row of ``own`` with at least ``min_obs`` rows of ``everything`` within ``eps``.

    ``everything`` must hold every row within ``eps`` of ``own`` (own + halo).
    With ``weights`` (one per row of ``everything``), the rows' total weight
    counts instead of their number (scikit-learn's ``sample_weight``); the
    total is accumulated in float64 whatever the weights' dtype.  Distances
    are computed in float64 (``cKDTree``) also for float32 rows.
    """
    if len(own) == 0:
        return np.zeros(0, dtype=bool)
    tree = cKDTree(everything)
    if weights is None:
        return np.asarray(tree.query_ball_point(own, eps, return_length=True)) >= min_obs
    lists = tree.query_ball_point(own, eps)
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    idx = np.fromiter((i for x in lists for i in x), dtype=np.int64, count=int(lengths.sum()))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    if idx.size == 0:
        return np.zeros(len(own), dtype=bool)
    return np.add.reduceat(weights[idx], starts, dtype=np.float64) >= min_obs


def local_components(X: np.ndarray, core: np.ndarray, eps: float):
    """Connected components of the core rows of ``X`` (links: distance ``<= eps``).

    Returns
    -------
    comp : ndarray of shape (n,) int64
        Component of each core row, -1 for the others.
    n_comp : int
    """
    comp = np.full(len(X), -1, dtype=np.int64)
    idx = np.flatnonzero(core)
    if idx.size == 0:
        return comp, 0
    pairs = cKDTree(X[idx]).query_pairs(eps, output_type="ndarray")
    m = idx.size
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(m, m))
    n_comp, lab = connected_components(graph, directed=False)
    comp[idx] = lab
    return comp, int(n_comp)


def halo_rows(X: np.ndarray, part: int, axis: int, cuts: np.ndarray, eps: float) -> np.ndarray:
    """Mask of a part's own slab rows that are halo rows of another slab."""
    out = np.zeros(len(X), dtype=bool)
    if len(X):
        for s in range(len(cuts) + 1):
            if s != part:
                out |= near_slab(X[:, axis], s, cuts, eps)
    return out


def halo_links(part: int, gidx: np.ndarray, comp: np.ndarray, n_comp: int, shared: np.ndarray):
    """A part's summary for the global union: per component its smallest core row, and links.

    Parameters
    ----------
    part : int
    gidx : ndarray of shape (n,)
        Global row index of each row the part holds (slab and halo).
    comp : ndarray of shape (n,)
        :func:`local_components` of those rows.
    n_comp : int
    shared : ndarray of shape (n,) bool
        Rows another part also holds (halo rows, and slab rows that are
        another slab's halo).

    Returns
    -------
    min_gidx : ndarray of shape (n_comp,)
        Smallest global row index of each component's core rows.
    links : ndarray of shape (m, 3) int64
        ``(global row, part, component)`` for every shared core row; two
        parts naming the same global row join their components.
    """
    min_gidx = np.full(n_comp, np.iinfo(np.int64).max, dtype=np.int64)
    is_core = comp >= 0
    np.minimum.at(min_gidx, comp[is_core], gidx[is_core])
    pick = is_core & shared
    links = np.column_stack([gidx[pick], np.full(pick.sum(), part), comp[pick]])
    return min_gidx, links.astype(np.int64).reshape(-1, 3)


def global_labels(summaries: Sequence) -> list:
    """Cluster number of every ``(part, component)``, numbered by smallest core row.

    Parameters
    ----------
    summaries : sequence of (min_gidx, links)
        :func:`halo_links` of every part, in part order.

    Returns
    -------
    numbers : list of ndarray
        Per part, the global cluster number of each local component.
    n_clusters : int
    """
    sizes = [len(m) for m, _ in summaries]
    base = np.cumsum([0] + sizes)
    total = int(base[-1])
    if total == 0:
        return [np.zeros(0, dtype=np.int64) for _ in summaries], 0
    links = np.vstack([lk for _, lk in summaries] + [np.zeros((0, 3), dtype=np.int64)])
    node = base[links[:, 1]] + links[:, 2]
    order = np.argsort(links[:, 0], kind="stable")
    g, nd = links[order, 0], node[order]
    same = np.flatnonzero(g[1:] == g[:-1])            # consecutive entries for the same row
    graph = coo_matrix((np.ones(len(same)), (nd[same], nd[same + 1])), shape=(total, total))
    _, root = connected_components(graph, directed=False)
    min_g = np.concatenate([m for m, _ in summaries])
    first = np.full(root.max() + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, root, min_g)
    rank_of = np.empty(len(first), dtype=np.int64)
    rank_of[np.argsort(first, kind="stable")] = np.arange(len(first))
    number = rank_of[root]
    return [number[a:b] for a, b in itertools.pairwise(base)], len(first)


def border_labels(own: np.ndarray, X: np.ndarray, label: np.ndarray, eps: float) -> np.ndarray:
    """For each row of ``own``: the smallest cluster number among core rows of ``X`` within ``eps``.

    ``label`` holds the cluster number of each row of ``X`` (-1: not core).
    Rows with no core neighbour get -1 (noise).
    """
    out = np.full(len(own), -1, dtype=np.int64)
    core = np.flatnonzero(label >= 0)
    if len(own) == 0 or core.size == 0:
        return out
    lab = label[core]
    for i, nb in enumerate(cKDTree(X[core]).query_ball_point(own, eps)):
        if nb:
            out[i] = lab[nb].min()
    return out


def dbscan(X: np.ndarray, eps: float, min_obs: int, weights: np.ndarray | None = None):
    """DBSCAN of one part holding every row (the serial case of the above).

    Returns
    -------
    labels : ndarray of shape (n,) int64
        Cluster numbers (-1: noise), as scikit-learn's ``labels_``.
    core : ndarray of shape (n,) bool
    n_clusters : int
    """
    core = core_flags(X, X, eps, min_obs, weights)
    label, n_comp = local_components(X, core, eps)
    label = relabel(np.arange(len(X), dtype=np.int64), label, n_comp)
    border = ~core
    label[border] = border_labels(X[border], X, label, eps)
    return label, core, n_comp


def relabel(gidx: np.ndarray, comp: np.ndarray, n_comp: int) -> np.ndarray:
    """Number one part's components by their smallest global row (no other part)."""
    min_gidx = np.full(n_comp, np.iinfo(np.int64).max, dtype=np.int64)
    is_core = comp >= 0
    np.minimum.at(min_gidx, comp[is_core], gidx[is_core])
    number = np.empty(n_comp, dtype=np.int64)
    number[np.argsort(min_gidx, kind="stable")] = np.arange(n_comp)
    return np.where(is_core, number[np.maximum(comp, 0)] if n_comp else -1, -1)
