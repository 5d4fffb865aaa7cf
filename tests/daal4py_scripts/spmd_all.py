"""Small daal4py-style SPMD scripts, in the shape of daal4py's ``*_spmd.py`` examples.

Written against daal4py's documented API (``daalinit``, ``my_procid``, per-rank input
files, ``distributed=True``, ``compute``, result fields, ``daalfini``), not copied.  Run as

    mpiexec -n N python spmd_all.py DATADIR OUT.json [module]

with ``module`` ``clusterml`` (default) or ``daal4py``: the only difference is the import.
Each rank reads its own files ``DATADIR/{name}_{rank}.csv`` (no header; a rank's file may
be empty); rank 0 writes, per algorithm, the result's field names with their shapes (a
rank's own rows shown as ``"n"``) to OUT.json, after every rank checked the numbers
against NumPy / scikit-learn on all the files stacked.
"""

import importlib
import json
import os
import sys

import numpy as np

DATADIR, OUT = sys.argv[1], sys.argv[2]
d4p = importlib.import_module(sys.argv[3] if len(sys.argv) > 3 else "clusterml")


def load(name, rank):
    path = os.path.join(DATADIR, f"{name}_{rank}.csv")
    if os.path.getsize(path) == 0:
        return None
    return np.loadtxt(path, delimiter=",", ndmin=2)


def everything(name):
    """All ranks' rows stacked (each rank reads every file, as the examples' checks do)."""
    parts = [load(name, r) for r in range(d4p.num_procs())]
    return np.vstack([p for p in parts if p is not None])


def infile(name):
    return os.path.join(DATADIR, f"{name}_{d4p.my_procid()}.csv")


PER_ROW = {"assignments", "matrixQ", "leftSingularMatrix", "prediction"}


def fields(res, n_local):
    """``{field: shape or type}`` of a result (or model), this rank's rows as "n"."""
    out = {}
    for f in sorted(dir(res)):
        if f.startswith("_"):
            continue
        v = getattr(res, f)
        if callable(v):
            continue
        if isinstance(v, np.ndarray):
            out[f] = list(v.shape)
            if f in PER_ROW:
                out[f][0] = "n" if v.shape[0] == n_local else f"{v.shape[0]} != n_local {n_local}"
        elif hasattr(v, "__dict__") or type(v).__name__.endswith("model"):
            out[f] = fields(v, n_local)
        else:
            out[f] = type(v).__name__
    return out


def check(cond, what):
    if not cond:
        raise AssertionError(f"rank {d4p.my_procid()}: {what}")


def main():
    X, Y = everything("X"), everything("Y")
    C, L = everything("C"), everything("L")
    mine = load("X", d4p.my_procid())
    n_local = 0 if mine is None else len(mine)
    report = {}

    res = d4p.low_order_moments(distributed=True).compute(infile("X"))
    check(np.allclose(res.mean, X.mean(0)) and np.allclose(res.variance, X.var(0, ddof=1)), "moments")
    report["low_order_moments"] = fields(res, n_local)

    res = d4p.covariance(distributed=True).compute(infile("X"))
    check(np.allclose(res.covariance, np.cov(X.T)), "covariance")
    report["covariance"] = fields(res, n_local)

    res = d4p.pca(distributed=True).compute(infile("X"))
    w = np.linalg.eigvalsh(np.corrcoef(X.T))[::-1]
    check(np.allclose(res.eigenvalues.ravel(), w), "pca eigenvalues")
    report["pca"] = fields(res, n_local)

    res = d4p.svd(distributed=True).compute(infile("X"))
    check(np.allclose(res.singularValues.ravel(), np.linalg.svd(X, compute_uv=False)), "svd")
    report["svd"] = fields(res, n_local)

    res = d4p.qr(distributed=True).compute(infile("X"))
    Q = np.vstack([q for q in comm_allgather(res.matrixQ) if q is not None and len(q)])
    check(np.allclose(Q @ res.matrixR, X) and np.allclose(Q.T @ Q, np.eye(X.shape[1])), "qr")
    report["qr"] = fields(res, n_local)

    train = d4p.linear_regression_training(distributed=True).compute(infile("X"), infile("Y"))
    beta = np.linalg.lstsq(X, Y, rcond=None)[0]                # no intercept: daal4py's default
    check(np.allclose(train.model.Beta[:, 1:], beta.T) and np.all(train.model.Beta[:, 0] == 0), "lin")
    report["linear_regression_training"] = fields(train, n_local)
    if mine is not None:
        pred = d4p.linear_regression_prediction().compute(mine, train.model)
        check(np.allclose(pred.prediction, mine @ beta), "linear prediction")
        report["linear_regression_prediction"] = fields(pred, n_local)

    train = d4p.ridge_regression_training(interceptFlag=True, distributed=True).compute(
        infile("X"), infile("Y"))
    report["ridge_regression_training"] = fields(train, n_local)

    nb = d4p.multinomial_naive_bayes_training(3, distributed=True).compute(infile("C"), infile("L"))
    counts = np.array([C[L[:, 0] == c].sum(0) for c in range(3)])
    theta = np.log((counts + 1) / (counts + 1).sum(1, keepdims=True))
    check(np.allclose(nb.model.LogTheta, theta), "naive Bayes LogTheta")
    report["multinomial_naive_bayes_training"] = fields(nb, n_local)

    # daal4py's SPMD test of the init methods: every method picks k rows of the data
    for method in ("defaultDense", "randomDense", "plusPlusDense", "parallelPlusDense"):
        init = d4p.kmeans_init(3, method=method, distributed=True).compute(infile("X"))
        picked = (np.abs(init.centroids[:, None, :] - X[None]).max(-1) < 1e-12).any(1)
        check(init.centroids.shape == (3, X.shape[1]) and picked.all(), f"kmeans_init {method}")
    init = d4p.kmeans_init(3, method="plusPlusDense", distributed=True).compute(infile("X"))
    km = d4p.kmeans(3, 50, accuracyThreshold=1e-9, distributed=True).compute(infile("X"),
                                                                         init.centroids)
    check(km.centroids.shape == (3, X.shape[1]) and km.nIterations[0, 0] <= 50, "kmeans")
    report["kmeans_init"] = fields(init, n_local)
    report["kmeans"] = fields(km, n_local)

    db = d4p.dbscan(epsilon=1.5, minObservations=5, distributed=True).compute(infile("X"))
    report["dbscan"] = fields(db, n_local)
    if d4p.__name__ == "clusterml":
        from sklearn.cluster import DBSCAN

        labels = np.vstack([a for a in comm_allgather(db.assignments) if a is not None]).ravel()
        check(np.array_equal(labels, DBSCAN(eps=1.5, min_samples=5).fit(X).labels_), "dbscan")

    stream = d4p.low_order_moments(streaming=True)
    if mine is not None:
        for part in np.array_split(mine, 3):
            stream.compute(part)
        check(np.allclose(stream.finalize().mean, mine.mean(0)), "streaming moments")
    if d4p.my_procid() == 0:
        with open(OUT, "w") as fh:
            json.dump(report, fh, indent=1, sort_keys=True)
        print("SCRIPTS OK")


def comm_allgather(obj):
    from mpi4py import MPI

    return MPI.COMM_WORLD.allgather(obj)


if __name__ == "__main__":
    d4p.daalinit()
    main()
    d4p.daalfini()
