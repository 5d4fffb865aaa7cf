"""Grid search of an RBF SVC's C and gamma on the digits data, the fits run on the engines via joblib.

The UL HPC School's scikit-learn + ipyparallel exercise (seed 004) on a
clusterml cluster: ``with cluster.joblib():`` makes ``GridSearchCV(...,
n_jobs=-1)`` send its fits to the engines; no profile, no launcher script.

Data: scikit-learn's bundled ``load_digits`` (1797 8x8 images, nothing is
downloaded).  Model: ``SVC(kernel="rbf")`` (LIBSVM: C.-C. Chang and C.-J. Lin,
ACM TIST 2(3), 2011).  Scores: mean cross-validated accuracy over a
logarithmic C x gamma grid, shown as a heat map.

Usage::

    python examples/gridsearch_svc.py --engines 2 --plot svc_grid.png
    python examples/gridsearch_svc.py --engines 0      # in this process (n_jobs=1)
    python examples/gridsearch_svc.py --engines 2 --grid 4 --samples 500
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def load_data(samples: int | None = None, seed: int = 0, test_size: float = 0.3):
    """Digits, optionally the first ``samples`` rows, split into train / test (stratified, seeded).

    Returns
    -------
    X_train : ndarray of shape (n_train, 64)
    X_test : ndarray of shape (n_test, 64)
    y_train, y_test : ndarray of int
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # pixel intensities 0..16 -> 0..1
    if samples:
        X, y = X[:samples], y[:samples]
    return train_test_split(X, y, test_size=test_size, random_state=seed, stratify=y)


def param_grid(n: int = 6) -> dict:
    """``n`` values of C in [1e-2, 1e4] and of gamma in [1e-4, 1e1], log-spaced."""
    return {"C": np.logspace(-2, 4, n), "gamma": np.logspace(-4, 1, n)}


def grid_search(X, y, grid: dict, cv: int = 3, n_jobs: int | None = -1):
    """Fit ``GridSearchCV(SVC(kernel="rbf"), grid, cv=cv, n_jobs=n_jobs)``; returns the fitted search.

    Inside ``with cluster.joblib():`` the ``len(C) * len(gamma) * cv`` fits run
    on the engines; outside, with joblib's default backend.
    """
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    search = GridSearchCV(SVC(kernel="rbf"), grid, cv=cv, n_jobs=n_jobs, return_train_score=False)
    return search.fit(X, y)


def plot_heatmap(search, grid: dict, path: str, title: str = "") -> str:
    """Mean validation accuracy over C (rows) x gamma (columns), saved as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    C, gamma = grid["C"], grid["gamma"]
    # ParameterGrid iterates its keys sorted ("C" before "gamma"), the last one fastest
    scores = np.asarray(search.cv_results_["mean_test_score"]).reshape(len(C), len(gamma))
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(scores, interpolation="nearest", cmap="viridis", vmin=0, vmax=1, origin="lower")
    fig.colorbar(im, ax=ax, label="mean CV accuracy")
    ax.set_xticks(range(len(gamma)), [f"{g:.0e}" for g in gamma], rotation=45)
    ax.set_yticks(range(len(C)), [f"{c:.0e}" for c in C])
    ax.set_xlabel("gamma")
    ax.set_ylabel("C")
    bi = list(C).index(search.best_params_["C"]), list(gamma).index(search.best_params_["gamma"])
    ax.plot(bi[1], bi[0], marker="*", color="red", markersize=14, linestyle="none", label="best")
    ax.legend(loc="upper right")
    ax.set_title(title or "RBF SVC on digits: validation accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def engine_env() -> dict:
    """This checkout of clusterml importable on the engines; one BLAS thread per engine."""
    return {"PYTHONPATH": os.pathsep.join([ROOT, HERE]), "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engines", type=int, default=2, help="MPI engines (0: in this process, n_jobs=1)")
    p.add_argument("--samples", type=int, default=None, help="use the first N digits (default all 1797)")
    p.add_argument("--grid", type=int, default=6, help="values per axis of the C x gamma grid")
    p.add_argument("--cv", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default="gridsearch_svc.png", help="where to write the heat map")
    p.add_argument("--profile", default=None, help="clusterml / IPython profile (default: local MPI)")
    args = p.parse_args(argv)

    X_train, X_test, y_train, y_test = load_data(args.samples, args.seed)
    grid = param_grid(args.grid)
    t0 = time.perf_counter()
    if args.engines == 0:
        search = grid_search(X_train, y_train, grid, args.cv, n_jobs=1)
        where = "in-process"
    else:
        sys.path.insert(0, ROOT)  # this checkout, also when clusterml is not installed
        import clusterml as cml

        with cml.Cluster(n=args.engines, profile=args.profile, engine_env=engine_env()) as cluster:
            t0 = time.perf_counter()
            with cluster.joblib():
                search = grid_search(X_train, y_train, grid, args.cv, n_jobs=-1)
        where = f"{args.engines} engines"
    seconds = time.perf_counter() - t0
    nfits = len(grid["C"]) * len(grid["gamma"]) * args.cv
    best = ", ".join(f"{k}={v:.3g}" for k, v in search.best_params_.items())
    print(f"GridSearchCV of SVC(rbf) on {len(X_train)} digits: {nfits} fits ({where}) in {seconds:.2f} s; "
          f"best {best}: CV accuracy {search.best_score_:.3f}, "
          f"test accuracy {search.score(X_test, y_test):.3f}")
    if args.plot:
        plot_heatmap(search, grid, args.plot, f"RBF SVC on digits ({where})")
        print(f"heat map: {args.plot}")
    return search


if __name__ == "__main__":
    main()
