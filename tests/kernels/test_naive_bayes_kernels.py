"""Multinomial naive Bayes kernels in one process vs scikit-learn's MultinomialNB."""

import itertools

import numpy as np
import pytest
from sklearn.naive_bayes import MultinomialNB

from clusterml.kernels import naive_bayes as nb_k


def counts_data(n=500, p=8, c=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    rng.shuffle(y)
    rates = rng.uniform(0.2, 5.0, size=(c, p))
    X = rng.poisson(rates[y]).astype(float)
    return X, y.astype(float).reshape(-1, 1)


@pytest.mark.parametrize("alpha", [1.0, 0.3])
@pytest.mark.parametrize("prior", [None, [0.1, 0.2, 0.3, 0.4]])
def test_training_and_prediction_match_sklearn(alpha, prior):
    X, y = counts_data()
    bounds = [0, 120, 120, 301, 500]
    parts = [nb_k.partial(X[a:b], y[a:b], 4) for a, b in itertools.pairwise(bounds)]
    assert all(ok for _, ok in parts)
    counts = sum(c for c, _ in parts)
    priors = np.full(4, 0.25) if prior is None else np.asarray(prior)
    model = nb_k.finalize(counts, np.full(X.shape[1], alpha), priors)
    ref = MultinomialNB(alpha=alpha, fit_prior=False, class_prior=prior).fit(X, y.ravel())
    assert model["LogP"].shape == (4, 1) and model["LogTheta"].shape == (4, 8)
    np.testing.assert_allclose(model["LogTheta"], ref.feature_log_prob_, rtol=1e-12)
    np.testing.assert_allclose(model["LogP"].ravel(), ref.class_log_prior_, rtol=1e-12)
    out = nb_k.predict(X, model["LogP"], model["LogTheta"], True, True, True, block_rows=33)
    np.testing.assert_array_equal(out["prediction"].ravel(), ref.predict(X))
    np.testing.assert_allclose(out["probabilities"], ref.predict_proba(X), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out["logProbabilities"], ref.predict_log_proba(X), rtol=1e-9, atol=1e-9)


def test_prediction_outputs_only_when_asked():
    X, y = counts_data(n=40)
    model = nb_k.finalize(nb_k.partial(X, y, 4)[0], np.ones(8), np.full(4, 0.25))
    out = nb_k.predict(X, model["LogP"], model["LogTheta"], labels=False, probabilities=True)
    assert out["prediction"] is None and out["logProbabilities"] is None
    np.testing.assert_allclose(out["probabilities"].sum(1), 1.0)
    empty = nb_k.predict(X[:0], model["LogP"], model["LogTheta"], True, True, True)
    assert empty["prediction"].shape == (0, 1) and empty["probabilities"].shape == (0, 4)


def test_unseen_class_gets_the_smoothed_uniform_theta():
    X, y = counts_data(n=60, c=3)
    model = nb_k.finalize(nb_k.partial(X, y, 5)[0], np.ones(8), np.full(5, 0.2))
    np.testing.assert_allclose(model["LogTheta"][4], np.log(np.full(8, 1 / 8)))


def test_partial_equals_per_class_sums_and_flags_every_kind_of_bad_input():
    X, y = counts_data(n=300)
    counts, ok = nb_k.partial(X, y, 4)
    assert ok
    ref = np.stack([X[y.ravel() == c].sum(0) for c in range(4)])
    np.testing.assert_array_equal(counts, ref)          # integer counts: exact
    assert nb_k.partial(X[:0], y[:0], 4)[1]              # no rows: fine
    for bad_value in (-1.0, np.nan, np.inf, 1e200):
        Xb = X.copy()
        Xb[150, 3] = bad_value
        assert not nb_k.partial(Xb, y, 4, limit=1e150)[1], bad_value
    for bad_label in (-1.0, 4.0, 1.5, np.nan, np.inf):
        yb = y.copy()
        yb[299, 0] = bad_label
        assert not nb_k.partial(X, yb, 4)[1], bad_label
