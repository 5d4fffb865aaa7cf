"""clusterml.sklearn estimators fitted SPMD (``distributed=True``) vs scikit-learn on all rows.

Every rank passes its own block (uneven, rank 1 empty when there are several
ranks); every rank must end with the same fitted attributes, equal to
scikit-learn's on the stacked rows; per-row outputs are this rank's rows.
"""

import os

import numpy as np
import pandas as pd
import pytest
import sklearn.cluster as skc
import sklearn.covariance as skcov
import sklearn.decomposition as skd
import sklearn.linear_model as skl
import sklearn.naive_bayes as sknb
import sklearn.preprocessing as skp
from mpihelpers import (
    expect_distributed_error,
    mpi_allclose,
    mpi_assert,
    my_block,
    rank,
    same_on_every_rank,
    world,
)

from clusterml import sklearn as cs


def blobs(n=150, p=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=8.0, size=(k, p))
    return centres[np.arange(n) % k] + rng.normal(size=(n, p))


def fitted(est) -> dict:
    """The fitted attributes as comparable bytes (labels_ excluded: this rank's rows)."""
    out = {}
    for k, v in sorted(vars(est).items()):
        if k.endswith("_") and k != "labels_":
            out[k] = (v.dtype.str, v.shape, v.tobytes()) if isinstance(v, np.ndarray) else v
    return out


def aligned(A, B):
    """B's rows with signs flipped to match A's (components are defined up to sign)."""
    s = np.sign(np.sum(A * B, axis=1, keepdims=True))
    return B * np.where(s == 0, 1, s)


def test_kmeans_array_init_matches_sklearn():
    X = blobs()
    C0 = X[[0, 1, 2, 5]]
    ref = skc.KMeans(4, init=C0, n_init=1, tol=0.0, max_iter=100).fit(X)
    km = cs.KMeans(4, init=C0, n_init=1, tol=0.0, max_iter=100, distributed=True).fit(my_block(X))
    mpi_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-10, what="cluster_centers_")
    mpi_allclose(km.inertia_, ref.inertia_, rtol=1e-10, what="inertia_")
    mpi_assert(np.array_equal(km.labels_, my_block(ref.labels_)), "labels_ of this rank's rows")
    mpi_assert(abs(km.n_iter_ - ref.n_iter_) <= 1, f"n_iter_ {km.n_iter_} vs {ref.n_iter_}")
    mpi_assert(np.array_equal(km.predict(my_block(X)), km.labels_), "predict == labels_")
    same_on_every_rank(fitted(km), "KMeans attributes")


@pytest.mark.parametrize("init,n_init", [("k-means++", 2), ("random", "auto")])
def test_kmeans_seeded_is_rank_count_independent(init, n_init):
    X = blobs(k=3)
    km = cs.KMeans(3, init=init, n_init=n_init, random_state=7, distributed=True).fit(my_block(X))
    one = cs.KMeans(3, init=init, n_init=n_init, random_state=7).fit(X)  # one process, all rows
    mpi_allclose(km.cluster_centers_, one.cluster_centers_, rtol=1e-10, what="same as one process")
    ref = skc.KMeans(3, init=init, n_init=n_init, random_state=7).fit(X)
    mpi_allclose(km.inertia_, ref.inertia_, rtol=1e-6, what="inertia_ vs scikit-learn")
    mpi_assert(km.cluster_centers_.shape == (3, 4) and km.labels_.shape == (len(my_block(X)),),
               "shapes")
    same_on_every_rank(fitted(km), "KMeans attributes")


@pytest.mark.parametrize("n_components,whiten", [(None, False), (2, True), (0.9, False)])
def test_pca_matches_sklearn(n_components, whiten):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(90, 5)) @ rng.normal(size=(5, 5)) + 100.0
    ref = skd.PCA(n_components, whiten=whiten, svd_solver="full").fit(X)
    pca = cs.PCA(n_components, whiten=whiten, distributed=True).fit(my_block(X))
    mpi_assert(pca.n_components_ == ref.n_components_, f"n_components_ {pca.n_components_}")
    for name in ("explained_variance_", "explained_variance_ratio_", "singular_values_", "mean_",
                 "noise_variance_"):
        mpi_allclose(getattr(pca, name), getattr(ref, name), rtol=1e-9, atol=1e-11, what=name)
    mpi_allclose(aligned(ref.components_, pca.components_), ref.components_, atol=1e-9,
                 what="components_")
    T, want = pca.transform(my_block(X)), my_block(ref.transform(X))
    mpi_allclose(aligned(want.T, T.T).T, want, atol=1e-8, what="transform of this rank's rows")
    same_on_every_rank(fitted(pca), "PCA attributes")


@pytest.mark.parametrize("targets", [1, 3])
@pytest.mark.parametrize("cls,params", [("LinearRegression", {}),
                                        ("LinearRegression", {"fit_intercept": False}),
                                        ("Ridge", {"alpha": 2.5})])
def test_linear_models_match_sklearn(cls, params, targets):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 4))
    Y = X @ rng.normal(size=(4, targets)) + 3.0 + 0.1 * rng.normal(size=(80, targets))
    y = Y[:, 0] if targets == 1 else Y
    ref = getattr(skl, cls)(**params).fit(X, y)
    est = getattr(cs, cls)(**params, distributed=True).fit(my_block(X), my_block(y))
    mpi_allclose(est.coef_, ref.coef_, rtol=1e-9, atol=1e-11, what="coef_")
    mpi_allclose(est.intercept_, ref.intercept_, rtol=1e-9, atol=1e-11, what="intercept_")
    mpi_assert(np.shape(est.coef_) == np.shape(ref.coef_), f"coef_ shape {np.shape(est.coef_)}")
    mpi_assert(np.shape(est.intercept_) == np.shape(ref.intercept_), "intercept_ shape")
    mpi_allclose(est.predict(my_block(X)), my_block(ref.predict(X)), rtol=1e-9, what="predict")
    same_on_every_rank(fitted(est), f"{cls} attributes")


@pytest.mark.parametrize("params", [{}, {"fit_prior": False, "alpha": 0.5},
                                    {"class_prior": [0.2, 0.3, 0.5]}])
def test_multinomial_nb_matches_sklearn(params):
    rng = np.random.default_rng(3)
    y = np.array([1, 4, 7])[rng.integers(0, 3, 120)]
    X = rng.poisson(rng.uniform(0.5, 4.0, size=(8, 6))[y]).astype(float)
    ref = sknb.MultinomialNB(**params).fit(X, y)
    nb = cs.MultinomialNB(**params, distributed=True).fit(my_block(X), my_block(y))
    mpi_assert(np.array_equal(nb.classes_, ref.classes_), f"classes_ {nb.classes_}")
    for name in ("class_count_", "class_log_prior_", "feature_log_prob_"):
        mpi_allclose(getattr(nb, name), getattr(ref, name), rtol=1e-12, what=name)
    mpi_assert(np.array_equal(nb.predict(my_block(X)), my_block(ref.predict(X))), "predict")
    mpi_allclose(nb.predict_proba(my_block(X)), my_block(ref.predict_proba(X)), rtol=1e-10,
                 what="predict_proba")
    same_on_every_rank(fitted(nb), "MultinomialNB attributes")


@pytest.mark.parametrize("assume_centered", [False, True])
def test_empirical_covariance_matches_sklearn(assume_centered):
    X = np.random.default_rng(4).normal(size=(70, 4)) + 2.0
    ref = skcov.EmpiricalCovariance(assume_centered=assume_centered).fit(X)
    est = cs.EmpiricalCovariance(assume_centered=assume_centered, distributed=True).fit(my_block(X))
    for name in ("location_", "covariance_", "precision_"):
        mpi_allclose(getattr(est, name), getattr(ref, name), rtol=1e-10, atol=1e-12, what=name)
    mpi_allclose(est.score(X), ref.score(X), rtol=1e-10, what="score")
    same_on_every_rank(fitted(est), "EmpiricalCovariance attributes")


@pytest.mark.parametrize("params", [{}, {"with_mean": False}, {"with_std": False}])
def test_standard_scaler_matches_sklearn(params):
    X = np.random.default_rng(5).normal(size=(60, 3)) * [1.0, 10.0, 0.0] + [5.0, -1.0, 3.0]
    ref = skp.StandardScaler(**params).fit(X)
    sc = cs.StandardScaler(**params, distributed=True).fit(my_block(X))
    mpi_assert(sc.n_samples_seen_ == ref.n_samples_seen_, "n_samples_seen_")
    for name in ("mean_", "var_", "scale_"):
        a, b = getattr(sc, name), getattr(ref, name)
        mpi_assert((a is None) == (b is None), f"{name} None-ness")
        if b is not None:
            mpi_allclose(a, b, rtol=1e-12, atol=1e-13, what=name)
    mpi_allclose(sc.transform(my_block(X)), my_block(ref.transform(X)), rtol=1e-12, atol=1e-13,
                 what="transform")
    same_on_every_rank(fitted(sc), "StandardScaler attributes")


def test_dbscan_sample_weight_matches_sklearn():
    X = blobs(n=150, k=3, seed=6)
    w = np.random.default_rng(8).uniform(-0.5, 3.0, size=len(X))
    ref = skc.DBSCAN(eps=1.6, min_samples=5).fit(X, sample_weight=w)
    db = cs.DBSCAN(eps=1.6, min_samples=5, distributed=True).fit(my_block(X), sample_weight=my_block(w))
    mpi_assert(np.array_equal(db.labels_, my_block(ref.labels_)), "weighted labels_")
    core = np.concatenate(world().allgather(db.core_sample_indices_))
    mpi_assert(np.array_equal(core, ref.core_sample_indices_), "weighted core_sample_indices_")
    # one weight too few on rank 0: the same error everywhere, nobody waits
    short = my_block(w)[:-1] if rank() == 0 else my_block(w)
    expect_distributed_error(lambda: cs.DBSCAN(distributed=True).fit(my_block(X), sample_weight=short),
                             "different numbers of rows")


@pytest.mark.parametrize("cls", ["StandardScaler", "DBSCAN"])
def test_frames_give_feature_names(cls):
    X = pd.DataFrame(blobs(n=40), columns=["a", "b", "c", "d"])
    sc = getattr(cs, cls)(distributed=True).fit(my_block(X))
    mpi_assert(list(sc.feature_names_in_) == ["a", "b", "c", "d"] and sc.n_features_in_ == 4,
               f"feature_names_in_ {getattr(sc, 'feature_names_in_', None)}")


def test_per_rank_files_with_an_empty_rank(shared_tmp):
    X = blobs(n=60)
    np.save(os.path.join(shared_tmp, f"part{rank()}.npy"), my_block(X))
    world().Barrier()
    km = cs.KMeans(3, init=X[:3], tol=0.0, distributed=True).fit(os.path.join(shared_tmp, "part{}.npy"))
    ref = skc.KMeans(3, init=X[:3], n_init=1, tol=0.0).fit(X)
    mpi_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-10, what="centres from files")
    mpi_assert(np.array_equal(km.labels_, my_block(ref.labels_)), "labels_ from files")


def test_bad_rows_on_one_rank_raise_everywhere():
    X = blobs(n=40)
    mine = my_block(X).copy()
    if rank() == 0:  # rank 0 always holds rows
        mine[0, 0] = np.nan
    expect_distributed_error(lambda: cs.KMeans(2, distributed=True).fit(mine), match="must be finite")
    y = np.arange(len(mine)) % 2
    if rank() == 0 and len(mine):
        mine = np.abs(np.nan_to_num(mine))
        mine[0, 0] = -1.0
    else:
        mine = np.abs(np.nan_to_num(mine))
    expect_distributed_error(lambda: cs.MultinomialNB(distributed=True).fit(mine, y),
                             match="non-negative")


def test_too_few_rows_is_the_same_value_error_everywhere():
    X = blobs(n=5)
    try:
        cs.KMeans(8, distributed=True).fit(my_block(X))
    except ValueError as exc:
        err = str(exc)
    else:
        err = None
    mpi_assert(err is not None and "n_samples=5 should be >= n_clusters=8" in err, f"got {err!r}")


def test_dbscan_matches_sklearn():
    X = blobs(n=150, k=3, seed=6)
    ref = skc.DBSCAN(eps=1.6, min_samples=5).fit(X)
    db = cs.DBSCAN(eps=1.6, min_samples=5, distributed=True).fit(my_block(X))
    mpi_assert(db.labels_.shape == (len(my_block(X)),) and db.labels_.dtype == np.intp, "labels_")
    mpi_assert(np.array_equal(db.labels_, my_block(ref.labels_)), "labels_ of this rank's rows")
    # core rows: this rank's, as global indices; stacked in rank order they are scikit-learn's
    core = np.concatenate(world().allgather(db.core_sample_indices_))
    mpi_assert(np.array_equal(core, ref.core_sample_indices_), "core_sample_indices_")
    comps = np.vstack(world().allgather(db.components_))
    mpi_assert(np.array_equal(comps, ref.components_), "components_")
    mpi_assert(ref.labels_.max() >= 1 and (ref.labels_ == -1).any(), "a case with noise")
    mpi_assert(np.array_equal(cs.DBSCAN(eps=1.6, min_samples=5, distributed=True)
                              .fit_predict(my_block(X)), db.labels_), "fit_predict")
    per_rank = ("core_sample_indices_", "components_")
    same_on_every_rank({k: v for k, v in fitted(db).items() if k not in per_rank},
                       "DBSCAN attributes")
