"""clusterml.sklearn in one process: scikit-learn's check_estimator, references, Pipeline, GridSearchCV."""

import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import check_estimator

from clusterml import sklearn as cs

ESTIMATORS = list(cs.__all__)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")  # array API: not set up
@pytest.mark.parametrize("name", ESTIMATORS)
def test_check_estimator_passes(name):
    results = check_estimator(getattr(cs, name)(), on_fail=None)
    failed = [(r["check_name"], repr(r["exception"])[:300]) for r in results if r["status"] == "failed"]
    assert len(results) > 30 and not failed, failed


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)) * [1.0, 3.0, 0.5, 2.0] + 1.0
    y = X @ [1.0, -2.0, 0.5, 0.0] + 0.1 * rng.normal(size=60)
    return X, y


@pytest.mark.parametrize("name,params,extra", [
    ("KMeans", {"n_clusters": 3, "n_init": 1, "tol": 0.0}, {}),
    ("PCA", {"n_components": 2}, {"svd_solver": "full"}),
    ("LinearRegression", {}, {}),
    ("Ridge", {"alpha": 3.0}, {}),
    ("EmpiricalCovariance", {}, {}),
    ("StandardScaler", {}, {}),
    ("DBSCAN", {"eps": 1.5, "min_samples": 4}, {}),
])
def test_matches_sklearn_in_one_process(name, params, extra):
    X, y = _data()
    mod = {"KMeans": sklearn.cluster, "PCA": sklearn.decomposition, "LinearRegression": sklearn.linear_model,
           "Ridge": sklearn.linear_model, "EmpiricalCovariance": sklearn.covariance,
           "StandardScaler": sklearn.preprocessing, "DBSCAN": sklearn.cluster}[name]
    if name == "KMeans":
        params = dict(params, init=X[[0, 1, 2]])
    ours = getattr(cs, name)(**params).fit(X, y)
    ref = getattr(mod, name)(**params, **extra).fit(X, y)
    attrs = {"KMeans": ["inertia_"], "PCA": ["explained_variance_", "mean_", "singular_values_"],
             "LinearRegression": ["coef_", "intercept_"], "Ridge": ["coef_", "intercept_"],
             "EmpiricalCovariance": ["covariance_", "location_", "precision_"],
             "StandardScaler": ["mean_", "var_", "scale_"],
             "DBSCAN": ["labels_", "core_sample_indices_", "components_"]}[name]
    for a in attrs:
        np.testing.assert_allclose(getattr(ours, a), getattr(ref, a), rtol=1e-7, err_msg=a)
    if name == "DBSCAN":  # not a trivial case: several clusters, noise and border rows
        assert ours.labels_.max() >= 1 and (ours.labels_ == -1).any()
        assert len(ours.core_sample_indices_) < (ours.labels_ >= 0).sum()
        np.testing.assert_array_equal(cs.DBSCAN(**params).fit_predict(X), ref.labels_)


def test_dbscan_sample_weight_as_sklearn():
    X, _ = _data()
    w = np.random.default_rng(3).uniform(-0.5, 3.0, size=len(X))  # negative: scikit-learn allows it
    ours = cs.DBSCAN(eps=1.5, min_samples=4).fit(X, sample_weight=w)
    ref = sklearn.cluster.DBSCAN(eps=1.5, min_samples=4).fit(X, sample_weight=w)
    assert not np.array_equal(ref.labels_, sklearn.cluster.DBSCAN(eps=1.5, min_samples=4).fit(X).labels_)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_array_equal(ours.core_sample_indices_, ref.core_sample_indices_)
    with pytest.raises(ValueError, match=r"sample_weight.shape"):
        cs.DBSCAN().fit(X, sample_weight=w[:-1])


def test_parameters_are_validated_as_sklearn_does():
    from sklearn.utils._param_validation import InvalidParameterError

    X, _ = _data()
    for est in (cs.KMeans(n_clusters=0), cs.KMeans(init="bogus"), cs.PCA(svd_solver="arpack"),
                cs.Ridge(alpha=-1.0), cs.StandardScaler(distributed="yes"), cs.DBSCAN(eps=0.0),
                cs.DBSCAN(min_samples=0), cs.DBSCAN(metric="manhattan")):
        with pytest.raises(InvalidParameterError):
            est.fit(X, X[:, 0])
    with pytest.raises(ValueError, match="n_samples=60 should be >= n_clusters=70"):
        cs.KMeans(70).fit(X)


def test_frame_gives_feature_names_and_pipeline_output():
    X, _ = _data()
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    pipe = make_pipeline(cs.StandardScaler(), cs.PCA(2)).fit(df)
    assert list(pipe[0].feature_names_in_) == ["a", "b", "c", "d"]
    assert list(pipe.get_feature_names_out()) == ["pca0", "pca1"]
    ref = make_pipeline(sklearn.preprocessing.StandardScaler(), sklearn.decomposition.PCA(2)).fit(df)
    np.testing.assert_allclose(np.abs(pipe.transform(df)), np.abs(ref.transform(df)), rtol=1e-8, atol=1e-10)


def test_grid_search_over_a_pipeline():
    X, y = _data()
    grid = GridSearchCV(make_pipeline(cs.StandardScaler(), cs.Ridge()), {"ridge__alpha": [0.1, 10.0, 1000.0]},
                        cv=3).fit(X, y)
    ref = GridSearchCV(make_pipeline(sklearn.preprocessing.StandardScaler(), sklearn.linear_model.Ridge()),
                       {"ridge__alpha": [0.1, 10.0, 1000.0]}, cv=3).fit(X, y)
    assert grid.best_params_ == ref.best_params_
    np.testing.assert_allclose(grid.cv_results_["mean_test_score"], ref.cv_results_["mean_test_score"],
                               rtol=1e-8)


def test_multinomial_nb_with_string_labels():
    rng = np.random.default_rng(1)
    y = np.array(["ham", "spam", "eggs"])[rng.integers(0, 3, 90)]
    X = rng.poisson(2.0, size=(90, 5)).astype(float)
    ours = cs.MultinomialNB().fit(X, y)
    ref = sklearn.naive_bayes.MultinomialNB().fit(X, y)
    assert list(ours.classes_) == list(ref.classes_)
    assert (ours.predict(X) == ref.predict(X)).all()
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), rtol=1e-10)


def test_fitted_estimator_pickles_and_predicts_without_mpi(tmp_path):
    X, _ = _data()
    km = cs.KMeans(3, random_state=0).fit(X)
    path = tmp_path / "km.pkl"
    path.write_bytes(pickle.dumps(km))
    code = ("import pickle, sys, numpy as np; km = pickle.load(open(sys.argv[1], 'rb')); "
            "print(km.predict(np.asarray(eval(sys.argv[2]))).tolist()); "
            "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'")
    out = subprocess.run([sys.executable, "-c", code, str(path), repr(X[:5].tolist())],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert eval(out.stdout) == km.predict(X[:5]).tolist()
