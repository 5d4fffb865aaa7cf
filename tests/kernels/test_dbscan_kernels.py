"""DBSCAN kernels: rows split into k parts (slabs + halos, no MPI) equal scikit-learn on all rows."""

import numpy as np
import pytest
from sklearn.cluster import DBSCAN
from sklearn.datasets import make_blobs, make_moons

from clusterml.kernels import dbscan as k


def parted(X, eps, min_obs, counts):
    """What the ranks of spmd/dbscan.py compute, each part in turn, exchanges by transposition."""
    parts = len(counts)
    ends = np.cumsum(counts)
    blocks = np.split(X, ends[:-1])
    gblocks = np.split(np.arange(len(X)), ends[:-1])
    lows, highs = zip(*[k.bounds(B) for B in blocks], strict=True)
    lo, hi = np.min(lows, axis=0), np.max(highs, axis=0)
    axis = int(np.argmax(hi - lo))
    a, b = lo[axis], hi[axis]
    cuts = k.slab_cuts(sum(k.histogram(B, axis, a, b) for B in blocks), a, b, parts)
    sent = [k.route(B, g, axis, cuts, eps, parts) for B, g in zip(blocks, gblocks, strict=True)]
    held = []
    for r in range(parts):
        got = [sent[s][r] for s in range(parts)]
        G = np.concatenate([x[0] for x in got])
        order = np.argsort(G)
        held.append((G[order], np.vstack([x[1] for x in got])[order],
                     np.concatenate([x[2] for x in got])[order]))
    core_own = [k.core_flags(X_[o], X_, eps, min_obs) for _, X_, o in held]
    flags = [k.halo_flags(X_[o], G[o], c, r, axis, cuts, eps, parts)
             for r, ((G, X_, o), c) in enumerate(zip(held, core_own, strict=True))]
    summaries, comps, sizes = [], [], []
    for r, (G, X_, o) in enumerate(held):
        core = np.zeros(len(G), bool)
        core[o] = core_own[r]
        for s in range(parts):
            g, f = flags[s][r]
            core[np.searchsorted(G, g)] = f
        comp, n = k.local_components(X_, core, eps)
        shared = ~o
        shared[o] = k.halo_rows(X_[o], r, axis, cuts, eps)
        summaries.append(k.halo_links(r, G, comp, n, shared))
        comps.append(comp)
        sizes.append((len(G), int(o.sum())))
    numbers, n_clusters = k.global_labels(summaries)
    labels = np.full(len(X), -1)
    for r, (G, X_, o) in enumerate(held):
        lab = np.where(comps[r] >= 0, numbers[r][np.maximum(comps[r], 0)] if len(numbers[r]) else -1, -1)
        own = lab[o]
        own[~core_own[r]] = k.border_labels(X_[o][~core_own[r]], X_, lab, eps)
        labels[G[o]] = own
    return labels, n_clusters, sizes


def datasets():
    blobs = make_blobs(600, centers=[[0, 0], [3, 0], [6, 0], [9, 0.5]], cluster_std=0.8,
                       random_state=4)[0]
    moons = make_moons(400, noise=0.07, random_state=1)[0]
    rng = np.random.default_rng(2)
    noisy = np.vstack([rng.uniform(-5, 5, size=(150, 3)), rng.normal(size=(250, 3))])
    # epsilon wider than the slabs: halos span several slabs; ties along the cut column
    ties = np.c_[np.repeat(np.arange(8.0), 25), rng.normal(size=200)]
    return [(blobs, 0.35, 6), (moons, 0.12, 4), (noisy, 0.5, 8), (blobs[:300], 4.0, 5), (ties, 1.0, 4)]


@pytest.mark.parametrize("case", range(5))
@pytest.mark.parametrize("weights", [[1], [2, 0, 1, 1], [1, 7], [1, 1, 1, 1, 0.01]])
def test_parts_equal_sklearn_labels(case, weights):
    X, eps, m = datasets()[case]
    counts = np.floor(len(X) * np.array(weights) / sum(weights)).astype(int)
    counts[-1] += len(X) - counts.sum()
    assert counts.min() >= 0
    ref = DBSCAN(eps=eps, min_samples=m).fit(X)
    labels, n_clusters, sizes = parted(X, eps, m, counts)
    assert np.array_equal(labels, ref.labels_)
    assert n_clusters == ref.labels_.max() + 1
    # every part owns about n / parts rows: the data is never gathered on one part
    # (rows tied along the cut column stay together: at most one tie group more)
    assert max(o for _, o in sizes) <= 1.2 * len(X) / len(counts) + (25 if case == 4 else 8)


def test_serial_dbscan_core_rows_and_border_rule():
    # border row 2 is within eps of core rows of two clusters: it joins the one
    # with the smaller number (the cluster of the smaller row index), as scikit-learn
    X = np.array([[0.8], [0.85], [0.9], [0.95], [1.0], [0.5], [0.0], [0.05], [0.1], [0.15], [0.2],
                  [5.0]])
    labels, core, n = k.dbscan(X, 0.32, 4)
    ref = DBSCAN(eps=0.32, min_samples=4).fit(X)
    assert np.array_equal(labels, ref.labels_) and n == 2
    assert np.array_equal(np.flatnonzero(core), ref.core_sample_indices_)
    assert not core[5] and labels[5] == 0 and labels[11] == -1
