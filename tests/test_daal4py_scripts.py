"""daal4py-style SPMD scripts run unchanged but for the import, under mpiexec at 1-4 ranks.

``tests/daal4py_scripts/spmd_all.py`` is written in the shape of daal4py's ``*_spmd.py``
examples (per-rank CSV files, ``distributed=True``, result fields); every rank checks the
numbers against NumPy / scikit-learn on all the rows.  Rank 1 reads an empty file when
there is more than one rank.  The script reports each result's field names and shapes,
compared here with what the same script printed under daal4py 2024.7 (Intel MPI, 1 and 2 ranks,
Python 3.11; see docs/daal4py.md), apart from the differences that page lists.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, mpiexec_path, subprocess_env

SCRIPT = os.path.join(ROOT, "tests", "daal4py_scripts", "spmd_all.py")

# The script's report under daal4py 2024.7 (``mpirun -n 2 python spmd_all.py DIR OUT daal4py``;
# identical at 1 rank).
DAAL4PY = {
    "covariance": {"correlation": [4, 4], "covariance": [4, 4], "mean": [1, 4]},
    "dbscan": {"assignments": ["n", 1], "coreIndices": "NoneType", "coreObservations": "NoneType",
               "nClusters": [1, 1]},
    "kmeans": {"assignments": "NoneType", "centroids": [3, 4], "nIterations": [1, 1],
               "objectiveFunction": [1, 1]},
    "kmeans_init": {"centroids": [3, 4]},
    "linear_regression_prediction": {"prediction": ["n", 2]},
    "linear_regression_training": {"model": {"Beta": [2, 5], "InterceptFlag": "bool",
                                             "NumberOfBetas": "int", "NumberOfFeatures": "int",
                                             "NumberOfResponses": "int"}},
    "low_order_moments": {f: [1, 4] for f in (
        "maximum", "mean", "minimum", "secondOrderRawMoment", "standardDeviation", "sum",
        "sumSquares", "sumSquaresCentered", "variance", "variation")},
    "multinomial_naive_bayes_training": {"model": {"AuxTable": [3, 5], "LogP": [3, 1],
                                                   "LogTheta": [3, 5], "NFeatures": "int",
                                                   "NumberOfFeatures": "int"}},
    "pca": {"dataForTransform": "dict", "eigenvalues": [1, 4], "eigenvectors": [4, 4],
            "means": "NoneType", "variances": "NoneType"},
    "qr": {"matrixQ": ["n", 4], "matrixR": [4, 4]},
    "ridge_regression_training": {"model": {"Beta": [2, 5], "InterceptFlag": "bool",
                                            "NumberOfBetas": "int", "NumberOfFeatures": "int",
                                            "NumberOfResponses": "int"}},
    "svd": {"leftSingularMatrix": ["n", 4], "rightSingularMatrix": [4, 4], "singularValues": [1, 4]},
}

# Where clusterml returns more than daal4py (docs/daal4py.md says why): field -> clusterml's value.
EXTRAS = {
    ("kmeans", "assignments"): ["n", 1],          # daal4py gives none in distributed mode
    ("pca", "means"): [1, 4],                     # daal4py: None unless resultsToCompute asks
    ("pca", "variances"): [1, 4],
    ("multinomial_naive_bayes_training", "model", "NumberOfClasses"): "int",
}


def write_files(tmp_path, nprocs):
    rng = np.random.default_rng(5)
    n = 240
    X = np.vstack([rng.normal(size=(n // 3, 4)) + c for c in ([0, 0, 0, 0], [6, 0, 0, 0], [0, 6, 0, 0])])
    X = X[rng.permutation(n)]
    Y = X @ rng.normal(size=(4, 2)) + rng.normal(scale=0.1, size=(n, 2))
    C = rng.integers(0, 5, size=(n, 5)).astype(float)
    L = (np.arange(n) % 3).astype(float).reshape(-1, 1)
    weights = np.arange(1, nprocs + 1, dtype=float)
    if nprocs > 1:
        weights[1] = 0
    counts = np.floor(n * weights / weights.sum()).astype(int)
    counts[-1] += n - counts.sum()
    for name, A in {"X": X, "Y": Y, "C": C, "L": L}.items():
        for r, B in enumerate(np.split(A, np.cumsum(counts)[:-1])):
            path = tmp_path / f"{name}_{r}.csv"
            if len(B):
                np.savetxt(path, B, delimiter=",")
            else:
                path.write_text("")


def compare(got, want, where=()):
    problems = []
    for k in sorted(set(got) | set(want)):
        here = where + (k,)
        if k not in want:
            if EXTRAS.get(here) != got[k]:
                problems.append(f"{'.'.join(here)}: clusterml only, {got[k]!r}")
        elif k not in got:
            problems.append(f"{'.'.join(here)}: missing (daal4py: {want[k]!r})")
        elif isinstance(want[k], dict):
            problems += compare(got[k], want[k], here)
        elif got[k] != want[k] and EXTRAS.get(here) != got[k]:
            problems.append(f"{'.'.join(here)}: clusterml {got[k]!r}, daal4py {want[k]!r}")
    return problems


@pytest.mark.timeout(400)
@pytest.mark.parametrize("nprocs", [1, 2, 3, 4])
def test_daal4py_style_scripts(nprocs, tmp_path):
    write_files(tmp_path, nprocs)
    out = tmp_path / "fields.json"
    cmd = [mpiexec_path(), "-n", str(nprocs), sys.executable, SCRIPT, str(tmp_path), str(out)]
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=subprocess_env(), capture_output=True,
                          text=True, timeout=360)
    log = (proc.stdout + proc.stderr)[-8000:]
    assert proc.returncode == 0 and "SCRIPTS OK" in proc.stdout, log
    assert compare(json.loads(out.read_text()), DAAL4PY) == []
