# %% [markdown]
# # scikit-learn estimators on MPI engines
#
# `clusterml.sklearn` offers scikit-learn's `StandardScaler`, `PCA`, `KMeans`,
# `LinearRegression`, `Ridge`, `MultinomialNB` and `EmpiricalCovariance` with scikit-learn's
# parameters and fitted attributes. The same class fits
#
# * in this process on an array (the default, like scikit-learn),
# * SPMD under `mpiexec` with `distributed=True` (each rank passes its own block), or
# * on a cluster's MPI engines with `cluster=cluster`, as in this notebook: the data stay on the
#   engines (here one CSV file per engine), the fitted attributes come back to the notebook,
#   and per-row outputs (`labels_`, `transform`, `predict` of engine data) stay on the
#   engines as handles that `.gather()` fetches.
#
# The workflow: scale the features, reduce them with PCA, cluster with k-means — then check
# every number against scikit-learn in one process.

# %%
%matplotlib inline
import os
import pickle
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import clusterml as cml
from clusterml.sklearn import PCA, KMeans, StandardScaler

N_ENGINES = 3
DATA = os.path.abspath(os.path.join("data", "sensors"))
os.makedirs(DATA, exist_ok=True)

# %% [markdown]
# ## Data: 30,000 readings of 8 sensors, one CSV file per engine
#
# Four operating regimes of a machine live in a 3-dimensional latent space; 8 sensors see it
# through a linear mix, on very different scales (°C, bar, rpm, ...), plus noise. Each engine
# gets its own file `part{rank}.csv`, of a different size.

# %%
rng = np.random.default_rng(6)
n_rows, n_sensors, regimes = 30_000, 8, 4
latent_centres = rng.normal(scale=3.0, size=(regimes, 3))
regime = rng.choice(regimes, size=n_rows, p=[0.4, 0.3, 0.2, 0.1])
latent = latent_centres[regime] + rng.normal(scale=0.6, size=(n_rows, 3))
mix = rng.normal(size=(3, n_sensors))
units = np.array([1.0, 10.0, 0.1, 100.0, 1.0, 1000.0, 5.0, 0.01])
X = (latent @ mix + 0.2 * rng.normal(size=(n_rows, n_sensors))) * units + 50 * units
columns = ["temp", "pressure", "flow", "rpm", "vibration", "power", "torque", "humidity"]

edges = np.cumsum([0, 12_000, 8_000, 10_000])
for r in range(N_ENGINES):
    pd.DataFrame(X[edges[r]:edges[r + 1]], columns=columns).to_csv(
        os.path.join(DATA, f"part{r}.csv"), index=False)
files = os.path.join(DATA, "part{}.csv")
print(files, [int(edges[r + 1] - edges[r]) for r in range(N_ENGINES)], "rows")
pd.DataFrame(X[:5], columns=columns).round(2)

# %%
cluster = cml.Cluster(n=N_ENGINES)
cluster

# %% [markdown]
# ## Scale on the engines
#
# `fit` reads each engine's own file; only the fitted means and scales come back.
# `transform` of engine data gives a *handle*: the scaled rows stay on the engines.

# %%
t0 = time.perf_counter()
scaler = StandardScaler(cluster=cluster).fit(files)
Z = scaler.transform(files)
print(f"{time.perf_counter() - t0:.2f} s; n_samples_seen_ = {scaler.n_samples_seen_}")
print("handle:", Z)
pd.DataFrame({"mean_": scaler.mean_, "scale_": scaler.scale_}, index=columns).round(3)

# %% [markdown]
# ## PCA on the scaled rows, still on the engines
#
# `PCA(0.95)` keeps the fewest components that explain 95 % of the variance: the 3 latent
# dimensions should show.

# %%
pca = PCA(0.95, cluster=cluster).fit(Z)
P = pca.transform(Z)
print(f"{pca.n_components_} components explain {pca.explained_variance_ratio_.sum():.1%}; handle: {P}")
fig, ax = plt.subplots(figsize=(5, 3))
full = PCA(cluster=cluster).fit(Z)
ax.bar(range(1, n_sensors + 1), full.explained_variance_ratio_, color="0.7", label="all components")
ax.bar(range(1, pca.n_components_ + 1), pca.explained_variance_ratio_, color="tab:blue", label="kept")
ax.set_xlabel("component")
ax.set_ylabel("explained variance ratio")
ax.legend()
plt.show()

# %% [markdown]
# ## k-means on the projections
#
# k-means++ with 3 restarts; the run with the lowest inertia is kept. `labels_` is a handle
# to each engine's rows; `.gather()` fetches them (here, to plot).

# %%
km = KMeans(regimes, n_init=3, random_state=0, cluster=cluster).fit(P)
print(f"inertia_ {km.inertia_:.1f} after {km.n_iter_} iterations; labels_: {km.labels_}")
labels = km.labels_.gather()
proj, scaled = P.gather(), Z.gather()     # (to compare with scikit-learn below)
sub = rng.choice(n_rows, 5000, replace=False)
fig, ax = plt.subplots(figsize=(5, 4))
ax.scatter(proj[sub, 0], proj[sub, 1], c=labels[sub], s=2, cmap="tab10")
ax.scatter(km.cluster_centers_[:, 0], km.cluster_centers_[:, 1], marker="x", s=100, c="k")
ax.set_xlabel("PC 1")
ax.set_ylabel("PC 2")
ax.set_title("30,000 readings, coloured by k-means cluster")
plt.show()

# %% [markdown]
# ## New readings, in the notebook
#
# The fitted estimators work on arrays in this process too (no engines involved), and they
# pickle: a saved model predicts anywhere, without MPI.

# %%
new = X[:5] * 1.01
regime_of_new = km.predict(pca.transform(scaler.transform(new)))
saved = pickle.dumps((scaler, pca, km))
print("regimes of 5 new readings:", regime_of_new, f"; pickled model: {len(saved)} bytes")

# %%
cluster.stop()

# %% [markdown]
# ## Check against scikit-learn in one process
#
# The same pipeline with scikit-learn's classes on all 30,000 rows in this process. If a
# result were wrong, this cell would fail.

# %%
import sklearn.cluster
import sklearn.decomposition
import sklearn.preprocessing
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import make_pipeline

t0 = time.perf_counter()
ref = make_pipeline(sklearn.preprocessing.StandardScaler(), sklearn.decomposition.PCA(0.95),
                    sklearn.cluster.KMeans(regimes, n_init=3, random_state=0)).fit(X)
print(f"scikit-learn in one process: {time.perf_counter() - t0:.2f} s")
ref_scaler, ref_pca, ref_km = ref.named_steps.values()

np.testing.assert_allclose(scaler.mean_, ref_scaler.mean_, rtol=1e-12)
np.testing.assert_allclose(scaler.scale_, ref_scaler.scale_, rtol=1e-12)
np.testing.assert_allclose(scaled, ref_scaler.transform(X), rtol=1e-9, atol=1e-9)
assert pca.n_components_ == ref_pca.n_components_ == 3
np.testing.assert_allclose(pca.explained_variance_ratio_, ref_pca.explained_variance_ratio_, rtol=1e-9)
np.testing.assert_allclose(np.abs(proj), np.abs(ref_pca.transform(ref_scaler.transform(X))), atol=1e-8)
assert np.isclose(km.inertia_, ref_km.inertia_, rtol=1e-6), (km.inertia_, ref_km.inertia_)
assert adjusted_rand_score(labels, ref_km.labels_) > 0.999
assert adjusted_rand_score(labels, regime) > 0.95           # the operating regimes were found
s2, p2, k2 = pickle.loads(saved)
assert s2.cluster is None and (k2.predict(p2.transform(s2.transform(new))) == regime_of_new).all()
print("ALL CHECKS PASSED")
