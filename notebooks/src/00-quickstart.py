# %% [markdown]
# # clusterml quick start
#
# clusterml runs daal4py's distributed machine-learning algorithms on a set of MPI engines
# driven from this notebook. You call `cluster.pca().compute(...)`; the call goes to every
# engine at once, each engine (one MPI rank) works on its own block of rows, the engines
# combine their partial results over MPI, and the notebook gets one result back.
#
# In this notebook:
#
# 1. start a local cluster of MPI engines (on an HPC system the same engines run as one Slurm
#    job: see `04-on-slurm`),
# 2. generate a data set partitioned into one CSV file per engine,
# 3. run low-order moments, PCA and k-means through the facade,
# 4. plot the explained variance and the data projected on two principal components,
# 5. check every number against NumPy / scikit-learn in this process.

# %%
%matplotlib inline
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import clusterml as cml

N_ENGINES = 2                                 # MPI ranks (engines); try 4
DATA = os.path.abspath("data/quickstart")     # where the per-engine files go
os.makedirs(DATA, exist_ok=True)
print("clusterml", cml.__version__)

# %% [markdown]
# ## 1. Start the engines
#
# `cml.Cluster(n=...)` starts an ipyparallel controller and `n` engines under the `mpiexec`
# of this Python's MPI, waits for them to register (a progress bar shows it), and checks that
# they form one MPI world with engine id == MPI rank. `with cml.Cluster(...) as cluster:`
# stops them at the end of the block; here we call `cluster.stop()` at the end.

# %%
cluster = cml.Cluster(n=N_ENGINES)
pd.DataFrame(cluster.engines)[["rank", "size", "host", "pid", "version"]]

# %% [markdown]
# ## 2. A partitioned data set
#
# 20,000 rows and 8 features: four groups (the corners of a tetrahedron) in a 3-dimensional subspace, mixed into 8
# correlated features, plus noise and an offset per feature. Rows are written as one CSV file
# per engine: `part0.csv` for rank 0, `part1.csv` for rank 1, ... A path with `{}` is
# formatted with each engine's rank, so every engine reads only its own file.

# %%
rng = np.random.default_rng(0)
n_rows, n_features, n_groups = 20_000, 8, 4
latent_centres = 2.5 * np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float)
group = rng.integers(0, n_groups, size=n_rows)
Z = latent_centres[group] + rng.normal(scale=0.7, size=(n_rows, 3))
mixing = rng.normal(size=(3, n_features))
X = Z @ mixing + 0.5 * rng.normal(size=(n_rows, n_features)) + rng.uniform(-5, 5, n_features)
columns = [f"f{j}" for j in range(n_features)]
for r in range(N_ENGINES):
    lo, hi = n_rows * r // N_ENGINES, n_rows * (r + 1) // N_ENGINES
    pd.DataFrame(X[lo:hi], columns=columns).to_csv(os.path.join(DATA, f"part{r}.csv"), index=False)
files = os.path.join(DATA, "part{}.csv")
sorted(os.listdir(DATA))

# %% [markdown]
# ## 3. Low-order moments
#
# Result fields and shapes are daal4py's: statistics are `1 x features` rows.

# %%
mom = cluster.low_order_moments().compute(files)
pd.DataFrame({"mean": mom.mean[0], "std": mom.standardDeviation[0],
              "min": mom.minimum[0], "max": mom.maximum[0]}, index=columns).T.round(3)

# %% [markdown]
# ## 4. PCA
#
# PCA on the correlation matrix: `eigenvalues` (descending) and `eigenvectors` (one component
# per row). The eigenvalues of a correlation matrix add up to the number of features, so
# `eigenvalues / n_features` is the explained-variance ratio.

# %%
pca = cluster.pca(method="correlationDense", isDeterministic=True).compute(files)
ratio = pca.eigenvalues[0] / pca.eigenvalues[0].sum()

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.bar(np.arange(1, n_features + 1), ratio, label="component")
ax.step(np.arange(1, n_features + 1), np.cumsum(ratio), where="mid", color="k", label="cumulative")
ax.set_xlabel("principal component")
ax.set_ylabel("explained variance ratio")
ax.set_ylim(0, 1.05)
ax.set_title("PCA on the correlation matrix")
ax.legend()
plt.show()
print("explained by the first 3 components:", ratio[:3].sum().round(4))

# %% [markdown]
# ## 5. k-means
#
# Initial centroids by k-means++ (`plusPlusDense`), then Lloyd's algorithm. The assignments are
# per-row outputs: they stay on the engines (each engine holds its own rows' labels) until you
# ask for them with `.gather()`.

# %%
init = cluster.kmeans_init(n_groups, method="plusPlusDense", seed=7).compute(files)
km = cluster.kmeans(n_groups, maxIterations=100).compute(files, init.centroids)
print(f"{km.nIterations[0, 0]} iterations, objective {km.objectiveFunction[0, 0]:.1f}")
km.assignments

# %%
labels = km.assignments.gather().ravel()
np.bincount(labels)

# %% [markdown]
# ## 6. The data on its first two principal components
#
# `pca_transform` projects each engine's rows on the components (standardised, as the PCA was
# computed on the correlation matrix); the projection stays on the engines until gathered.

# %%
proj = cluster.pca_transform(nComponents=2).compute(files, pca.eigenvectors,
                                                     {"mean": pca.means, "variance": pca.variances})
T = proj.transformedData.gather()

fig, ax = plt.subplots(figsize=(6, 5))
sc = ax.scatter(T[:, 0], T[:, 1], c=labels, s=3, cmap="tab10", alpha=0.6)
ax.set_xlabel(f"PC 1 ({ratio[0]:.0%} of the variance)")
ax.set_ylabel(f"PC 2 ({ratio[1]:.0%})")
ax.set_title("20,000 rows on two principal components, coloured by k-means cluster")
ax.legend(*sc.legend_elements(), title="cluster", loc="best", fontsize=8)
plt.show()

# %%
cluster.stop()

# %% [markdown]
# ## Check against one process
#
# The same numbers from NumPy and scikit-learn on all 20,000 rows in this process. If a result
# were wrong, this cell would fail.

# %%
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

np.testing.assert_allclose(mom.mean[0], X.mean(axis=0), rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(mom.standardDeviation[0], X.std(axis=0, ddof=1), rtol=1e-10)
np.testing.assert_array_equal(mom.minimum[0], X.min(axis=0))
np.testing.assert_array_equal(mom.maximum[0], X.max(axis=0))

corr = np.corrcoef(X, rowvar=False)
w, V = np.linalg.eigh(corr)
w, V = w[::-1], V[:, ::-1]
np.testing.assert_allclose(pca.eigenvalues[0], w, rtol=1e-9, atol=1e-12)
for k in range(3):   # the well-separated leading components, up to sign
    assert abs(abs(pca.eigenvectors[k] @ V[:, k]) - 1) < 1e-9, k

Xs = (X - X.mean(axis=0)) / X.std(axis=0, ddof=1)
np.testing.assert_allclose(T, Xs @ pca.eigenvectors[:2].T, rtol=1e-9, atol=1e-9)

ref = KMeans(n_groups, init=init.centroids, n_init=1, max_iter=100, tol=0.0, algorithm="lloyd").fit(X)
np.testing.assert_allclose(km.centroids, ref.cluster_centers_, rtol=1e-9, atol=1e-9)
np.testing.assert_allclose(km.objectiveFunction[0, 0], ref.inertia_, rtol=1e-9)
np.testing.assert_array_equal(labels, ref.labels_)
assert adjusted_rand_score(group, labels) > 0.99     # k-means found the generating groups
print("ALL CHECKS PASSED")
