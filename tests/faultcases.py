"""The inputs of every algorithm for the reliability tests (fault matrix, kills, load).

Shared by ``tests/spmd/test_faults.py`` (under mpiexec), ``tests/reliability`` (mpiexec jobs
that SIGKILL a rank, and the facade) -- one place to add an algorithm.  Data are tiny and
built from a seed, ``ROWS_PER_RANK`` rows per rank, so every rank holds rows and the facade's
even scatter puts exactly rank r's block on engine r.
"""

import numpy as np

ROWS_PER_RANK = 8
P = 3
N_CLASSES = 3


def build(nranks: int) -> dict:
    """Full tables for ``nranks`` ranks (rank r's rows: ``block(A, r)``)."""
    rng = np.random.default_rng(2024)
    n = ROWS_PER_RANK * nranks
    X = rng.normal(size=(n, P)) * [1.0, 3.0, 0.5] + [0.0, 2.0, -1.0]
    Y = X @ rng.normal(size=(P, 2)) + rng.normal(scale=0.1, size=(n, 2))
    C = rng.integers(0, 5, size=(n, 4)).astype(float)
    L = (np.arange(n) % N_CLASSES).astype(float).reshape(-1, 1)
    return {"X": X, "Y": Y, "C": C, "L": L}


def block(A, r):
    return A[r * ROWS_PER_RANK:(r + 1) * ROWS_PER_RANK]


def cases(tables: dict) -> dict:
    """``name -> (args, kwargs, {input: table key}, extras, compute step)``.

    ``compute step`` is the name of the algorithm's first guarded step after the input is
    loaded (where ``CLUSTERML_INJECT_FAULT=step@rank[:kill]`` fires mid-call).
    """
    import clusterml as cml

    X, Y, C, L = tables["X"], tables["Y"], tables["C"], tables["L"]
    lin = cml.linear_regression_training().compute(X, Y).model
    ridge = cml.ridge_regression_training(0.5).compute(X, Y).model
    nb = cml.multinomial_naive_bayes_training(N_CLASSES).compute(C, L).model
    pca = cml.pca().compute(X)
    return {
        "low_order_moments": ((), {}, {"data": "X"}, {}, "moments"),
        "covariance": ((), {}, {"data": "X"}, {}, "covariance"),
        "pca": ((), {}, {"data": "X"}, {}, "pca cross products"),
        "pca_transform": ((), {}, {"data": "X"}, {"eigenvectors": pca}, "pca transform"),
        "svd": ((), {}, {"data": "X"}, {}, "svd tsqr"),
        "linear_regression_training": ((), {}, {"data": "X", "dependentVariables": "Y"}, {},
                                       "regression cross products"),
        "linear_regression_prediction": ((), {}, {"data": "X"}, {"model": lin},
                                         "regression prediction"),
        "ridge_regression_training": ((), {"ridgeParameters": 0.5},
                                      {"data": "X", "dependentVariables": "Y"}, {},
                                      "regression cross products"),
        "ridge_regression_prediction": ((), {}, {"data": "X"}, {"model": ridge},
                                        "regression prediction"),
        "multinomial_naive_bayes_training": ((N_CLASSES,), {}, {"data": "C", "labels": "L"}, {},
                                             "naive bayes counts"),
        "multinomial_naive_bayes_prediction": ((N_CLASSES,), {}, {"data": "C"}, {"model": nb},
                                               "naive bayes prediction"),
        "kmeans_init": ((3,), {"method": "plusPlusDense"}, {"data": "X"}, {}, "k-means++ draw"),
        "kmeans": ((3,), {"maxIterations": 5}, {"data": "X"}, {"inputCentroids": X[:3].copy()},
                   "kmeans iteration"),
        "qr": ((), {}, {"data": "X"}, {}, "qr tsqr"),
        "dbscan": ((1.0, 3), {}, {"data": "X"}, {}, "dbscan bounds"),
    }


def landed_algorithms() -> list:
    from clusterml.spmd import REGISTRY

    return sorted(n for n in REGISTRY if not n.startswith("cmltest_"))
