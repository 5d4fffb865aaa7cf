"""``clusterml demo``: the README's main job.

Generates a data set as per-rank CSV files, runs every algorithm clusterml has
distributed over ``n`` MPI ranks -- through the notebook facade on local
ipyparallel MPI engines (default) or as a plain ``mpiexec`` SPMD job -- checks
each result against one process on all rows, and prints a table.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

# (name, constructor parameters, inputs as file stems, fields compared with the reference)
STEPS = [
    ("low_order_moments", {}, ("X",), ("mean", "variance", "minimum", "maximum")),
    ("covariance", {}, ("X",), ("covariance", "mean")),
    ("covariance", {"outputMatrixType": "correlationMatrix"}, ("X",), ("correlation",)),
    ("pca", {"method": "correlationDense"}, ("X",), ("eigenvalues",)),
    ("pca", {"method": "svdDense"}, ("X",), ("eigenvalues",)),
    ("svd", {"leftSingularMatrix": "notRequired"}, ("X",), ("singularValues",)),
    ("linear_regression_training", {}, ("X", "Y"), ("model.Beta",)),
    ("linear_regression_training", {"method": "qrDense"}, ("X", "Y"), ("model.Beta",)),
    ("ridge_regression_training", {"ridgeParameters": 1.0}, ("X", "Y"), ("model.Beta",)),
    ("multinomial_naive_bayes_training", {"nClasses": 4}, ("N", "L"), ("model.LogTheta",)),
    ("kmeans_init", {"nClusters": 8, "method": "plusPlusDense"}, ("X",), ("centroids",)),
    ("kmeans_init", {"nClusters": 8, "method": "parallelPlusDense"}, ("X",), ("centroids",)),
    ("kmeans", {"nClusters": 8, "maxIterations": 10}, ("X", "init"), ("centroids", "objectiveFunction")),
]


def available_steps():
    from .spmd import REGISTRY

    return [s for s in STEPS if s[0] in REGISTRY]


def make_data(workdir: str, n: int, rows: int, features: int, seed: int = 0) -> dict:
    """Write per-rank CSV files ``{X,Y,N,L}{rank}.csv`` and ``init.csv``; return the {} templates."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(8, features))
    labels = rng.integers(0, 8, size=rows)
    X = centres[labels] + rng.normal(size=(rows, features)) @ np.diag(np.linspace(0.5, 2.0, features))
    beta = rng.normal(size=(features, 2))
    Y = X @ beta + 0.1 * rng.normal(size=(rows, 2)) + [1.0, -2.0]
    L = labels % 4
    rates = rng.gamma(2.0, 1.0, size=(4, features))
    C = rng.poisson(rates[L])
    os.makedirs(workdir, exist_ok=True)
    for r in range(n):
        a, b = rows * r // n, rows * (r + 1) // n
        for name, arr in (("X", X), ("Y", Y), ("N", C), ("L", L[:, None])):
            _write_csv(os.path.join(workdir, f"{name}{r}.csv"), arr[a:b], name.lower())
    _write_csv(os.path.join(workdir, "init.csv"), X[:8], "c")
    t = {k: os.path.join(workdir, k + "{}.csv") for k in "XYNL"}
    t["init"] = os.path.join(workdir, "init.csv")
    return t


def _write_csv(path, arr, prefix):
    """A CSV with a header row, written by Arrow's C++ writer (np.savetxt is 20x slower)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pa.table({f"{prefix}{j}": arr[:, j] for j in range(arr.shape[1])})
    pacsv.write_csv(table, path)


def _field(res, dotted):
    for part in dotted.split("."):
        res = getattr(res, part)
    return np.asarray(res, dtype=float)


def _inputs(stems, templates, rank=None, n=None):
    out = []
    for s in stems:
        if s == "init":  # initial centroids: the same small array on every rank
            out.append(_load_csv(templates["init"]))
        elif rank is None:  # every rank's file stacked: the single-process reference
            out.append(np.vstack([_load_csv(templates[s].replace("{}", str(r))) for r in range(n)]))
        else:
            out.append(templates[s])
    return out


def _load_csv(path):
    import pandas as pd

    return pd.read_csv(path).to_numpy(dtype=float)


def reference_results(templates, n):
    """Every step on all rows in one process (distributed=False)."""
    from . import spmd

    refs = []
    for name, params, stems, _ in available_steps():
        alg = spmd.REGISTRY[name](**params)
        refs.append(alg.compute(*_inputs(stems, templates, None, n)))
    return refs


def deviation(res, ref, fields) -> float:
    return max(float(np.max(np.abs(_field(res, f) - _field(ref, f)) / (1 + np.abs(_field(ref, f)))))
               for f in fields)


def print_table(rows, n, mode, stream=sys.stdout):
    print(f"\nclusterml demo: {n} MPI ranks ({mode}); max relative deviation from one process on all rows",
          file=stream)
    print(f"{'algorithm':<36} {'parameters':<34} {'time s':>8} {'deviation':>10}  check", file=stream)
    print("-" * 98, file=stream)
    bad = 0
    for name, params, secs, dev in rows:
        ok = dev < 1e-6
        bad += not ok
        p = ", ".join(f"{k}={v}" for k, v in params.items())
        print(f"{name:<36} {p[:34]:<34} {secs:>8.3f} {dev:>10.2e}  {'ok' if ok else 'MISMATCH'}",
              file=stream)
    print("-" * 98, file=stream)
    print(f"{len(rows) - bad} of {len(rows)} algorithms agree with the single-process reference.",
          file=stream)
    return bad


def run_facade(templates, n, profile=None):
    """Run every step through ``cml.Cluster`` on local ipyparallel MPI engines."""
    from . import Cluster

    rows = []
    t0 = time.perf_counter()
    with Cluster(n=n, profile=profile) as cluster:
        print(f"started {n} MPI engines in {time.perf_counter() - t0:.1f} s", flush=True)
        for name, params, stems, _ in available_steps():
            t = time.perf_counter()
            res = getattr(cluster, name)(**params).compute(*_inputs(stems, templates, 0, n))
            rows.append((name, params, time.perf_counter() - t, res))
    return rows


def spmd_worker(templates, out_path):
    """The body of the plain ``mpiexec`` job: every rank runs every step."""
    import pickle

    from . import spmd
    from .spmd.remote import warm_up

    spmd.init()
    warm_up()
    rows = []
    for name, params, stems, _ in available_steps():
        spmd.comm.get_comm().Barrier()
        t = time.perf_counter()
        res = spmd.REGISTRY[name](distributed=True, **params).compute(*_inputs(stems, templates, 0, None))
        rows.append((name, params, time.perf_counter() - t, res))
    if spmd.my_procid() == 0:
        with open(out_path, "wb") as fh:
            pickle.dump(rows, fh)
    spmd.fini()


def run_mpiexec(templates, n, workdir):
    import json
    import pickle

    from .launch.mpi import mpiexec_for_this_python

    out = os.path.join(workdir, "results.pkl")
    cmd = [mpiexec_for_this_python(), "-n", str(n), sys.executable, "-m", "clusterml.demo",
           json.dumps(templates), out]
    subprocess.run(cmd, check=True, timeout=1800)
    with open(out, "rb") as fh:
        return pickle.load(fh)


def main(n=4, rows=200_000, features=16, workdir=None, engines="ipyparallel", profile=None) -> int:
    own = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="clusterml-demo-")
    try:
        t = time.perf_counter()
        templates = make_data(workdir, n, rows, features)
        print(f"wrote {rows} x {features} rows as {n} per-rank CSV files in {workdir} "
              f"({time.perf_counter() - t:.1f} s)", flush=True)
        if engines == "mpiexec":
            results = run_mpiexec(templates, n, workdir)
        else:
            results = run_facade(templates, n, profile)
        refs = reference_results(templates, n)
        table = [(name, params, secs, deviation(res, ref, fields))
                 for (name, params, secs, res), ref, (_, _, _, fields)
                 in zip(results, refs, available_steps(), strict=True)]
        bad = print_table(table, n, "ipyparallel engines" if engines != "mpiexec" else "mpiexec")
        return 1 if bad else 0
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":  # the mpiexec worker: python -m clusterml.demo TEMPLATES_JSON OUT
    import json

    spmd_worker(json.loads(sys.argv[1]), sys.argv[2])
