"""Multinomial naive Bayes under MPI vs scikit-learn's MultinomialNB on all rows."""

import numpy as np
import pytest
from mpihelpers import (
    expect_distributed_error,
    mpi_allclose,
    mpi_assert,
    my_block,
    rank,
    same_on_every_rank,
    world,
)
from sklearn.naive_bayes import MultinomialNB

import clusterml as cml


def counts_data(n=401, p=7, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    rng.shuffle(y)
    rates = rng.uniform(0.2, 5.0, size=(c, p))
    return rng.poisson(rates[y]).astype(float), y.astype(float).reshape(-1, 1)


def gather_rows(A):
    return np.vstack(world().allgather(A))


@pytest.mark.parametrize("alpha,prior", [(None, None), (0.5, None), (None, [0.5, 0.3, 0.2])])
def test_training_matches_sklearn(alpha, prior):
    X, y = counts_data()
    res = cml.multinomial_naive_bayes_training(3, priorClassEstimates=prior, alpha=alpha,
                                               distributed=True).compute(my_block(X), my_block(y))
    ref = MultinomialNB(alpha=1.0 if alpha is None else alpha, fit_prior=False,
                        class_prior=prior).fit(X, y.ravel())
    mpi_assert(res.model.LogP.shape == (3, 1) and res.model.LogTheta.shape == (3, 7), "shapes")
    mpi_allclose(res.model.LogTheta, ref.feature_log_prob_, rtol=1e-12, what="LogTheta")
    mpi_allclose(res.model.LogP.ravel(), ref.class_log_prior_, rtol=1e-12, what="LogP")
    # daal4py's model also carries the per-class feature totals and the feature count
    mpi_allclose(res.model.AuxTable, ref.feature_count_, rtol=0, atol=0, what="AuxTable")
    mpi_assert(res.model.NFeatures == 7 and res.model.AuxTable.shape == (3, 7), "NFeatures")
    same_on_every_rank(res.model, "naive Bayes model")


def test_alpha_per_feature():
    X, y = counts_data()
    alpha = np.linspace(0.1, 2.0, 7)
    res = cml.multinomial_naive_bayes_training(3, alpha=alpha.reshape(1, -1), distributed=True).compute(
        my_block(X), my_block(y))
    N = np.array([X[y.ravel() == c].sum(0) for c in range(3)]) + alpha
    mpi_allclose(res.model.LogTheta, np.log(N / N.sum(1, keepdims=True)), rtol=1e-12, what="LogTheta")


@pytest.mark.parametrize("what", ["computeClassLabels",
                                  "computeClassLabels|computeClassProbabilities|computeClassLogProbabilities",
                                  "computeClassProbabilities"])
def test_prediction_each_rank_its_rows(what):
    X, y = counts_data()
    model = cml.multinomial_naive_bayes_training(3, distributed=True).compute(my_block(X), my_block(y)).model
    ref = MultinomialNB(fit_prior=False).fit(X, y.ravel())
    res = cml.multinomial_naive_bayes_prediction(3, resultsToEvaluate=what, distributed=True).compute(
        my_block(X), model)
    n_mine = len(my_block(X))
    if "Labels" in what:
        mpi_assert(res.prediction.shape == (n_mine, 1), f"{res.prediction.shape}")
        mpi_allclose(gather_rows(res.prediction).ravel(), ref.predict(X), rtol=0, atol=0, what="labels")
    else:
        mpi_assert(res.prediction is None, "labels not asked for")
    if "Probabilities" in what:
        mpi_allclose(gather_rows(res.probabilities), ref.predict_proba(X), rtol=1e-9, atol=1e-12,
                     what="probabilities")
    if "LogProbabilities" in what:
        mpi_allclose(gather_rows(res.logProbabilities), ref.predict_log_proba(X), rtol=1e-9,
                     atol=1e-9, what="log probabilities")
    else:
        mpi_assert(res.logProbabilities is None, "log probabilities not asked for")


def test_bad_input_raises_on_every_rank():
    X, y = counts_data(n=60)
    # The last rank that holds rows (at size 2 the last rank is the empty one).
    counts = world().allgather(len(my_block(X)))
    last = max(r for r, c in enumerate(counts) if c)

    def on_last(A, fix):
        A = A.copy()
        if rank() == last:
            fix(A)
        return A

    def train(Xr, yr, n_classes=3):
        return lambda: cml.multinomial_naive_bayes_training(n_classes, distributed=True).compute(Xr, yr)

    yb = on_last(my_block(y), lambda a: a.__setitem__((-1, 0), 3.0))
    expect_distributed_error(train(my_block(X), yb), "outside [0, 3)", cml.InputError)
    yb = on_last(my_block(y), lambda a: a.__setitem__((0, 0), 1.5))
    expect_distributed_error(train(my_block(X), yb), "not an integer class label", cml.InputError)
    Xb = on_last(my_block(X), lambda a: a.__setitem__((2, 1), -1.0))
    err = expect_distributed_error(train(Xb, my_block(y)), "non-negative counts", cml.InputError)
    mpi_assert(err.ranks == [last], f"failing ranks {err.ranks}")
    # Finiteness is checked by the counting pass itself (no separate pass): same messages.
    Xb = on_last(my_block(X), lambda a: a.__setitem__((1, 2), np.nan))
    err = expect_distributed_error(train(Xb, my_block(y)), "data: nan at row 1, column 2", cml.InputError)
    mpi_assert(err.ranks == [last], f"failing ranks {err.ranks}")
    Xb = on_last(my_block(X), lambda a: a.__setitem__((0, 0), 1e200))
    expect_distributed_error(train(Xb, my_block(y)), "too large", cml.InputError)
    yb = on_last(my_block(y), lambda a: a.__setitem__((0, 0), np.inf))
    expect_distributed_error(train(my_block(X), yb), "labels: inf at row 0", cml.InputError)
    expect_distributed_error(train(my_block(X), np.hstack([my_block(y)] * 2)), "one column",
                             cml.InputError)
    expect_distributed_error(lambda: cml.multinomial_naive_bayes_training(
        3, alpha=[1.0, 2.0], distributed=True).compute(my_block(X), my_block(y)),
        "alpha has 2 values", cml.ParameterError)
    expect_distributed_error(lambda: cml.multinomial_naive_bayes_training(3, priorClassEstimates=[1, 0, 1]),
                             "priorClassEstimates", cml.ParameterError)
    expect_distributed_error(lambda: cml.multinomial_naive_bayes_training(1), "nClasses=1",
                             cml.ParameterError)
    model = cml.multinomial_naive_bayes_training(3, distributed=True).compute(my_block(X), my_block(y)).model
    expect_distributed_error(lambda: cml.multinomial_naive_bayes_prediction(3, distributed=True).compute(
        my_block(X[:, :5]), model), "model has 7 features but the data has 5", cml.InputError)
    expect_distributed_error(lambda: cml.multinomial_naive_bayes_prediction(4, distributed=True).compute(
        my_block(X), model), "nClasses=4 but the model has 3", cml.ParameterError)
    expect_distributed_error(lambda: cml.multinomial_naive_bayes_prediction(
        3, resultsToEvaluate="computeLabels"), "computeLabels", cml.ParameterError)
