"""Every clusterml.sklearn estimator with ``cluster=`` on 1, 2 and 4 engines (rank 1 empty) vs scikit-learn.

(tests/sklearn/test_cluster_mode.py covers 3 engines and every way of passing data.)
"""

import numpy as np
import psutil
import pytest
import sklearn.cluster as skc
import sklearn.covariance as skcov
import sklearn.decomposition as skd
import sklearn.linear_model as skl
import sklearn.naive_bayes as sknb
import sklearn.preprocessing as skp
from clienthelp import engine_env, wait_no_processes

import clusterml as cml
from clusterml import sklearn as cs


@pytest.mark.parametrize("n", [1, 2, 4])
def test_every_estimator_at_this_many_engines(n, tmp_path, monkeypatch):
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    rng = np.random.default_rng(n)
    X = rng.normal(size=(48, 3)) * [1.0, 4.0, 0.5] + rng.integers(0, 3, size=(48, 1)) * 5.0
    y = X @ [1.0, -1.0, 2.0] + rng.normal(size=48)
    c = rng.integers(0, 3, size=48).astype(float)
    counts = np.abs(np.round(X))
    sizes = [48] if n == 1 else [10, 0] + [38 // (n - 2)] * (n - 2) if n > 2 else [48, 0]
    sizes[-1] += 48 - sum(sizes)
    edges = np.cumsum([0] + sizes)
    for r in range(n):
        for key, arr in (("X", X), ("y", y), ("c", c), ("counts", counts)):
            np.save(tmp_path / f"{key}{r}.npy", arr[edges[r]:edges[r + 1]])
    f = {k: str(tmp_path / (k + "{}.npy")) for k in ("X", "y", "c", "counts")}
    cluster = cml.Cluster(n=n, engine_env=engine_env(), timeout=120)
    try:
        km = cs.KMeans(3, init=X[:3], tol=0.0, cluster=cluster).fit(f["X"])
        ref = skc.KMeans(3, init=X[:3], n_init=1, tol=0.0).fit(X)
        np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-10)
        np.testing.assert_array_equal(km.labels_.gather(), ref.labels_)
        pca = cs.PCA(2, cluster=cluster).fit(f["X"])
        np.testing.assert_allclose(pca.explained_variance_, skd.PCA(2).fit(X).explained_variance_, rtol=1e-9)
        for name, mod, kw in (("LinearRegression", skl, {}), ("Ridge", skl, {"alpha": 0.5})):
            est = getattr(cs, name)(**kw, cluster=cluster).fit(f["X"], f["y"])
            np.testing.assert_allclose(est.coef_, getattr(mod, name)(**kw).fit(X, y).coef_, rtol=1e-9)
        nb = cs.MultinomialNB(cluster=cluster).fit(f["counts"], f["c"])
        np.testing.assert_allclose(nb.feature_log_prob_,
                                   sknb.MultinomialNB().fit(counts, c).feature_log_prob_, rtol=1e-12)
        cov = cs.EmpiricalCovariance(cluster=cluster).fit(f["X"])
        np.testing.assert_allclose(cov.covariance_, skcov.EmpiricalCovariance().fit(X).covariance_,
                                   rtol=1e-10)
        sc = cs.StandardScaler(cluster=cluster).fit(f["X"])
        np.testing.assert_allclose(sc.transform(f["X"]).gather(), skp.StandardScaler().fit_transform(X),
                                   rtol=1e-10, atol=1e-12)
    finally:
        cluster.stop()
        left = wait_no_processes()
        for pid, _ in left:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        assert not left, f"processes left behind: {left}"
