"""clusterml.sklearn with ``cluster=``: fitted on 3 MPI engines from here, compared with scikit-learn.

The data reach the engines in the three ways a notebook has: per-rank files
(rank 1's is empty), ``cluster.scatter(X)`` and a name bound on the engines
(``cluster.ref``).  Fitted attributes come back; per-row outputs stay on the
engines as handles whose ``gather()`` equals scikit-learn's rows.
"""

import os
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import sklearn.cluster as skc
import sklearn.covariance as skcov
import sklearn.decomposition as skd
import sklearn.linear_model as skl
import sklearn.naive_bayes as sknb
import sklearn.preprocessing as skp
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

import clusterml as cml
from clusterml import sklearn as cs
from clusterml.client import EngineArray

COUNTS = [20, 0, 40]  # rows per rank: rank 1 holds none


def _data():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=6.0, size=(3, 4))
    X = centres[np.arange(60) % 3] + rng.normal(size=(60, 4)) + 10.0
    y = X @ [1.0, -2.0, 0.5, 0.0] + 0.1 * rng.normal(size=60)
    labels = np.array([2, 5, 9])[np.arange(60) % 3]
    return X, y, labels


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Per-rank .npy files of X, y and class labels, rank 1's empty."""
    d = tmp_path_factory.mktemp("parts")
    X, y, labels = _data()
    edges = np.cumsum([0] + COUNTS)
    for r in range(3):
        rows = slice(edges[r], edges[r + 1])
        np.save(d / f"X{r}.npy", X[rows])
        np.save(d / f"y{r}.npy", y[rows])
        np.save(d / f"c{r}.npy", labels[rows].astype(float))
        np.save(d / f"counts{r}.npy", np.abs(np.round(X[rows])))
    return {k: str(d / (k + "{}.npy")) for k in ("X", "y", "c", "counts")}


def _via(cluster, how, files, key, arr):
    if how == "files":
        return files[key]
    if how == "scatter":
        return cluster.scatter(arr)
    # what a %%px cell does: each engine binds a name to its own rows (here, its file)
    name = f"px_{key}"
    cluster.view.execute(f"import numpy as np; {name} = np.load({files[key]!r}.format(cml.my_procid()))",
                         block=True)
    return cluster.ref(name)


@pytest.mark.parametrize("how", ["files", "scatter", "ref"])
def test_kmeans_on_engines(cluster, files, how):
    X, _, _ = _data()
    km = cs.KMeans(3, init=X[:3], tol=0.0, cluster=cluster).fit(_via(cluster, how, files, "X", X))
    ref = skc.KMeans(3, init=X[:3], n_init=1, tol=0.0).fit(X)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-10)
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)
    assert isinstance(km.labels_, EngineArray) and km.labels_.shape == (60,)
    np.testing.assert_array_equal(km.labels_.gather(), ref.labels_)
    pred = km.predict(_via(cluster, how, files, "X", X))
    assert isinstance(pred, EngineArray)
    np.testing.assert_array_equal(pred.gather(), ref.predict(X))
    np.testing.assert_allclose(km.transform(files["X"]).gather(), ref.transform(X), rtol=1e-10)
    np.testing.assert_array_equal(km.predict(X[:7]), ref.predict(X[:7]))  # notebook rows: computed here


def test_kmeans_plusplus_same_as_one_process(cluster, files):
    X, _, _ = _data()
    km = cs.KMeans(3, n_init=3, random_state=3, cluster=cluster).fit(files["X"])
    one = cs.KMeans(3, n_init=3, random_state=3).fit(X)
    np.testing.assert_allclose(km.cluster_centers_, one.cluster_centers_, rtol=1e-10)
    assert km.inertia_ == pytest.approx(skc.KMeans(3, random_state=0).fit(X).inertia_, rel=1e-6)


def test_pipeline_pieces_on_engines(cluster, files):
    X, _, _ = _data()
    sc = cs.StandardScaler(cluster=cluster).fit(files["X"])
    ref_sc = skp.StandardScaler().fit(X)
    for a in ("mean_", "var_", "scale_"):
        np.testing.assert_allclose(getattr(sc, a), getattr(ref_sc, a), rtol=1e-12)
    assert sc.n_samples_seen_ == 60
    Z = sc.transform(files["X"])
    assert isinstance(Z, EngineArray)
    np.testing.assert_allclose(Z.gather(), ref_sc.transform(X), rtol=1e-10, atol=1e-12)
    pca = cs.PCA(2, cluster=cluster).fit(Z)           # fitted on the engines' scaled rows
    ref = skd.PCA(2, svd_solver="full").fit(ref_sc.transform(X))
    np.testing.assert_allclose(pca.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-9)
    T = pca.transform(Z).gather()
    np.testing.assert_allclose(np.abs(T), np.abs(ref.transform(ref_sc.transform(X))), atol=1e-9)
    cov = cs.EmpiricalCovariance(cluster=cluster).fit(files["X"])
    ref_cov = skcov.EmpiricalCovariance().fit(X)
    np.testing.assert_allclose(cov.covariance_, ref_cov.covariance_, rtol=1e-10)
    np.testing.assert_allclose(cov.mahalanobis(files["X"]).gather(), ref_cov.mahalanobis(X), rtol=1e-9)


@pytest.mark.parametrize("how", ["files", "scatter", "ref"])
def test_regressions_and_naive_bayes_on_engines(cluster, files, how):
    X, y, labels = _data()
    for cls, params in (("LinearRegression", {}), ("Ridge", {"alpha": 2.0})):
        est = getattr(cs, cls)(**params, cluster=cluster).fit(_via(cluster, how, files, "X", X),
                                                                _via(cluster, how, files, "y", y))
        ref = getattr(skl, cls)(**params).fit(X, y)
        np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-9)
        assert est.intercept_ == pytest.approx(ref.intercept_, rel=1e-9)
        np.testing.assert_allclose(est.predict(files["X"]).gather(), ref.predict(X), rtol=1e-9)
    C = np.abs(np.round(X))
    nb = cs.MultinomialNB(cluster=cluster).fit(_via(cluster, how, files, "counts", C),
                                               _via(cluster, how, files, "c", labels.astype(float)))
    ref = sknb.MultinomialNB().fit(C, labels)
    np.testing.assert_array_equal(nb.classes_, ref.classes_)
    np.testing.assert_allclose(nb.feature_log_prob_, ref.feature_log_prob_, rtol=1e-12)
    np.testing.assert_array_equal(nb.predict(files["counts"]).gather(), ref.predict(C))
    np.testing.assert_allclose(nb.predict_proba(files["counts"]).gather(), ref.predict_proba(C), rtol=1e-10)


@pytest.mark.parametrize("how", ["files", "scatter"])
def test_dbscan_on_engines(cluster, files, how):
    X, _, _ = _data()
    db = cs.DBSCAN(eps=2.0, min_samples=5, cluster=cluster).fit(_via(cluster, how, files, "X", X))
    ref = skc.DBSCAN(eps=2.0, min_samples=5).fit(X)
    assert ref.labels_.max() >= 1 and (ref.labels_ == -1).any()
    assert db.n_features_in_ == 4
    for name in ("labels_", "core_sample_indices_", "components_"):  # per-row: stay on the engines
        got = getattr(db, name)
        assert isinstance(got, EngineArray), name
        np.testing.assert_array_equal(got.gather(), getattr(ref, name), err_msg=name)
    labels = cs.DBSCAN(eps=2.0, min_samples=5, cluster=cluster).fit_predict(files["X"])
    np.testing.assert_array_equal(labels.gather(), ref.labels_)
    with pytest.raises(ValueError, match="sample_weight is not supported with cluster"):
        cs.DBSCAN(cluster=cluster).fit(files["X"], sample_weight=np.ones(60))


def test_pipeline_and_clone_on_engines(cluster, files):
    X, _, _ = _data()
    pipe = make_pipeline(cs.StandardScaler(cluster=cluster), cs.PCA(2, cluster=cluster),
                         cs.KMeans(3, init=np.eye(3, 2) * 3.0, tol=0.0, cluster=cluster))
    pipe = clone(pipe)
    assert pipe[-1].cluster is cluster
    labels = pipe.fit_predict(files["X"])
    assert isinstance(labels, EngineArray)
    ref = make_pipeline(skp.StandardScaler(), skd.PCA(2, svd_solver="full")).fit(X)
    P = ref.transform(X) * np.sign(np.sum(ref[-1].components_ * pipe[1].components_, axis=1))
    want = skc.KMeans(3, init=np.eye(3, 2) * 3.0, n_init=1, tol=0.0).fit(P)
    np.testing.assert_array_equal(labels.gather(), want.labels_)


def test_grid_search_on_the_farm(cluster):
    X, y, _ = _data()
    grid = {"ridge__alpha": [0.1, 10.0, 1000.0]}
    with cluster.joblib():
        got = GridSearchCV(make_pipeline(cs.StandardScaler(), cs.Ridge()), grid, cv=3, n_jobs=-1).fit(X, y)
    ref = GridSearchCV(make_pipeline(skp.StandardScaler(), skl.Ridge()), grid, cv=3).fit(X, y)
    assert got.best_params_ == ref.best_params_
    np.testing.assert_allclose(got.cv_results_["mean_test_score"], ref.cv_results_["mean_test_score"],
                               rtol=1e-8)


def test_frame_feature_names_and_errors(cluster, files):
    X, _, _ = _data()
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    sc = cs.StandardScaler(cluster=cluster).fit(cluster.scatter(df))
    assert list(sc.feature_names_in_) == ["a", "b", "c", "d"]
    bad = X.copy()
    bad[45, 1] = np.nan  # lands on rank 2
    with pytest.raises(cml.DistributedError, match="finite") as info:
        cs.KMeans(3, cluster=cluster).fit(cluster.scatter(bad))
    assert 2 in info.value.ranks
    with pytest.raises(ValueError, match="n_samples=60 should be >= n_clusters=70"):
        cs.KMeans(70, cluster=cluster).fit(files["X"])


def test_cluster_fitted_estimator_pickles_and_predicts_without_mpi(cluster, files, tmp_path):
    X, _, _ = _data()
    km = cs.KMeans(3, init=X[:3], cluster=cluster).fit(files["X"])
    path = tmp_path / "km.pkl"
    path.write_bytes(pickle.dumps(km))
    code = ("import pickle, sys, numpy as np; km = pickle.load(open(sys.argv[1], 'rb')); "
            "assert km.cluster is None; print(km.predict(np.load(sys.argv[2])).tolist()); "
            "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'")
    out = subprocess.run([sys.executable, "-c", code, str(path), files["X"].format(2)],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert out.returncode == 0, out.stderr
    assert eval(out.stdout) == km.predict(np.load(files["X"].format(2))).tolist()
