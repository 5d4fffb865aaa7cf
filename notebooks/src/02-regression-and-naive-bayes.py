# %% [markdown]
# # Regression and naive Bayes on MPI engines
#
# * **Linear regression** (`normEqDense`: one reduction of the cross products; `qrDense`: a
#   tall-skinny QR across the ranks) and **ridge regression** with a small sweep over the
#   penalty. The intercept is never penalised, as in daal4py.
# * **Multinomial naive Bayes** on count data (think word counts per document), with a
#   confusion matrix.
# * **Distributed prediction**: each engine predicts its own rows; the predictions stay on the
#   engines until gathered.

# %%
%matplotlib inline
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm import tqdm

import clusterml as cml

N_ENGINES = 2
DATA = os.path.abspath("data/models")
os.makedirs(DATA, exist_ok=True)

# %%
cluster = cml.Cluster(n=N_ENGINES)
cluster

# %% [markdown]
# ## Linear regression
#
# 20,000 rows, 6 correlated features, a known intercept and coefficients (two of them zero),
# and noise. 16,000 rows train, 4,000 test. Here the rows start in the notebook:
# `cluster.scatter` splits them over the engines once, and the returned reference is used by
# every call that follows (nothing is sent again).

# %%
rng = np.random.default_rng(11)
n_rows, n_features = 20_000, 6
cov = 0.6 ** np.abs(np.subtract.outer(np.arange(n_features), np.arange(n_features)))
X = rng.multivariate_normal(np.zeros(n_features), cov, size=n_rows)
beta_true = np.array([3.0, -2.0, 0.0, 0.5, 0.0, 1.5])
intercept_true = 4.0
y = intercept_true + X @ beta_true + rng.normal(scale=1.0, size=n_rows)
n_train = 16_000
X_train, y_train, X_test, y_test = X[:n_train], y[:n_train], X[n_train:], y[n_train:]

Xtr = cluster.scatter(X_train)                 # a reference to rows kept on the engines
ytr = cluster.scatter(y_train)
Xte = cluster.scatter(X_test)

# %%
lin = cluster.linear_regression_training(interceptFlag=True).compute(Xtr, ytr)
lin_qr = cluster.linear_regression_training(method="qrDense", interceptFlag=True).compute(Xtr, ytr)
pd.DataFrame([lin.model.Beta[0], lin_qr.model.Beta[0], np.r_[intercept_true, beta_true]],
             index=["normEqDense", "qrDense", "true"],
             columns=["intercept"] + [f"x{j}" for j in range(n_features)]).round(4)

# %% [markdown]
# Prediction runs on the engines: each predicts its own test rows.

# %%
pred = cluster.linear_regression_prediction().compute(Xte, lin.model)
pred.prediction                      # stays on the engines ...

# %%
y_hat = pred.prediction.gather().ravel()     # ... until asked for
rmse = np.sqrt(np.mean((y_hat - y_test) ** 2))
print(f"test RMSE {rmse:.4f} (noise standard deviation 1.0)")

# %% [markdown]
# ## Ridge regression: a sweep over the penalty
#
# `ridgeParameters` is the penalty (scikit-learn's `alpha`) on the sum of squared
# coefficients. With 16,000 rows it takes a large penalty to shrink the coefficients.

# %%
alphas = np.logspace(-1, 6, 15)
ridge_betas = []
for a in tqdm(alphas, desc="ridge sweep"):
    ridge = cluster.ridge_regression_training(ridgeParameters=a, interceptFlag=True)
    ridge_betas.append(ridge.compute(Xtr, ytr).model.Beta[0])
ridge_betas = np.array(ridge_betas)

fig, ax = plt.subplots(figsize=(6.5, 4))
for j in range(n_features):
    ax.semilogx(alphas, ridge_betas[:, j + 1], "o-", ms=3, label=f"x{j} (true {beta_true[j]:g})")
ax.axhline(0, color="k", lw=0.5)
ax.set_xlabel("ridgeParameters (alpha)")
ax.set_ylabel("coefficient")
ax.set_title(f"Ridge coefficient paths (16,000 rows, {N_ENGINES} engines)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Multinomial naive Bayes on counts
#
# 20,000 "documents" of 4 classes, each a vector of counts over a 30-word vocabulary, drawn
# from a class-specific word distribution (the classes share most of their vocabulary, so
# some documents are hard to tell apart). The counts and labels are written as `.npy` files
# and each engine reads its own block with `cml.read_partition` (the blocks of the two files
# line up because both have the same number of rows). 16,000 train, 4,000 test.

# %%
n_docs, n_words, n_classes = 20_000, 30, 4
base = rng.dirichlet(np.full(n_words, 2.0))                   # shared word frequencies ...
word_probs = rng.dirichlet(100 * base, size=n_classes)       # ... and each class's variation on them
doc_class = rng.integers(0, n_classes, size=n_docs)
lengths = rng.poisson(25, size=n_docs)
counts = np.array([rng.multinomial(m, word_probs[c]) for m, c in zip(lengths, doc_class, strict=True)],
                  dtype=float)
paths = {}
for name, arr in [("counts_train", counts[:n_train]), ("labels_train", doc_class[:n_train, None]),
                  ("counts_test", counts[n_train:]), ("labels_test", doc_class[n_train:, None])]:
    paths[name] = os.path.join(DATA, name + ".npy")
    np.save(paths[name], arr.astype(float))

# %%
nb = cluster.multinomial_naive_bayes_training(nClasses=n_classes).compute(
    cml.read_partition(paths["counts_train"]), cml.read_partition(paths["labels_train"]))
nb_pred = cluster.multinomial_naive_bayes_prediction(
    nClasses=n_classes, resultsToEvaluate="computeClassLabels|computeClassProbabilities").compute(
    cml.read_partition(paths["counts_test"]), nb.model)
labels_hat = nb_pred.prediction.gather().ravel().astype(int)
proba = nb_pred.probabilities.gather()
labels_test = doc_class[n_train:]
confusion = np.zeros((n_classes, n_classes), dtype=int)
np.add.at(confusion, (labels_test, labels_hat), 1)
accuracy = np.trace(confusion) / confusion.sum()
print(f"test accuracy {accuracy:.3f}")

fig, ax = plt.subplots(figsize=(4.2, 3.8))
im = ax.imshow(confusion, cmap="Blues")
for i in range(n_classes):
    for j in range(n_classes):
        ax.text(j, i, confusion[i, j], ha="center", va="center",
                color="white" if confusion[i, j] > confusion.max() / 2 else "black")
ax.set_xlabel("predicted class")
ax.set_ylabel("true class")
ax.set_xticks(range(n_classes))
ax.set_yticks(range(n_classes))
ax.set_title(f"Naive Bayes, 4,000 test documents\naccuracy {accuracy:.1%}")
plt.show()

# %%
cluster.stop()

# %% [markdown]
# ## Check against one process
#
# NumPy's least squares, scikit-learn's `Ridge` and `MultinomialNB(alpha=1, fit_prior=False)`
# (daal4py's default: uniform priors) on the same rows in this process.

# %%
from sklearn.linear_model import Ridge
from sklearn.naive_bayes import MultinomialNB

A = np.c_[np.ones(n_train), X_train]
beta_ls = np.linalg.lstsq(A, y_train, rcond=None)[0]
np.testing.assert_allclose(lin.model.Beta[0], beta_ls, rtol=1e-9, atol=1e-10)
np.testing.assert_allclose(lin_qr.model.Beta[0], beta_ls, rtol=1e-9, atol=1e-10)
np.testing.assert_allclose(y_hat, np.c_[np.ones(len(X_test)), X_test] @ beta_ls, rtol=1e-9, atol=1e-9)
assert np.abs(beta_ls - np.r_[intercept_true, beta_true]).max() < 0.05

for a, b in zip(alphas, ridge_betas, strict=True):
    ref = Ridge(alpha=a).fit(X_train, y_train)
    np.testing.assert_allclose(b, np.r_[ref.intercept_, ref.coef_], rtol=1e-8, atol=1e-10,
                               err_msg=f"alpha={a}")
assert np.abs(ridge_betas[-1, 1:]).max() < np.abs(ridge_betas[0, 1:]).max() / 2   # shrinkage

ref_nb = MultinomialNB(alpha=1.0, fit_prior=False).fit(counts[:n_train], doc_class[:n_train])
np.testing.assert_allclose(nb.model.LogTheta, ref_nb.feature_log_prob_, rtol=1e-10, atol=1e-12)
np.testing.assert_allclose(nb.model.LogP.ravel(), ref_nb.class_log_prior_, rtol=1e-12)
np.testing.assert_array_equal(labels_hat, ref_nb.predict(counts[n_train:]))
np.testing.assert_allclose(proba, ref_nb.predict_proba(counts[n_train:]), rtol=1e-8, atol=1e-12)
assert 0.8 < accuracy < 0.97
print("ALL CHECKS PASSED")
