# %% [markdown]
# # k-means on MPI engines: initialisation, Lloyd's iterations, and rank-count invariance
#
# daal4py splits k-means in two calls, and so does clusterml:
#
# * `kmeans_init(nClusters, method=...)` picks the starting centroids:
#   `defaultDense` (the first rows), `randomDense` (distinct random rows), `plusPlusDense`
#   (k-means++, Arthur & Vassilvitskii 2007) or `parallelPlusDense` (k-means||, Bahmani et al. 2012);
# * `kmeans(nClusters, maxIterations)` runs Lloyd's algorithm from them.
#
# This notebook compares the four initialisations, follows Lloyd's algorithm iteration by
# iteration, and checks that the same seed gives the same centroids on 2 and on 4 engines.

# %%
%matplotlib inline
import itertools
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm import tqdm

import clusterml as cml

K = 6                    # clusters
SEED = 2024              # kmeans_init's seed: every draw is keyed by (seed, global row index)
METHODS = ["defaultDense", "randomDense", "plusPlusDense", "parallelPlusDense"]
DATA = os.path.abspath("data")
os.makedirs(DATA, exist_ok=True)

# %% [markdown]
# ## Data: 20,000 points in the plane, 6 blobs of different sizes and spreads
#
# One `.npy` file; `cml.read_partition` gives each engine a contiguous block of rows (memory
# mapped), so the same file serves any number of engines.

# %%
rng = np.random.default_rng(3)
n_rows = 20_000
centres = np.array([[0, 0], [6, 1], [3, 6], [-5, 5], [-4, -4], [5, -5]], dtype=float)
weights = np.array([0.30, 0.20, 0.15, 0.15, 0.12, 0.08])
spread = np.array([1.2, 0.8, 1.0, 0.6, 1.4, 0.7])
truth = rng.choice(K, size=n_rows, p=weights)
X = centres[truth] + rng.normal(size=(n_rows, 2)) * spread[truth, None]
path = os.path.join(DATA, "blobs2d.npy")
np.save(path, X)
data = cml.read_partition(path)
print(f"{path}: {X.shape}")

# %%
cluster = cml.Cluster(n=2)
cluster

# %% [markdown]
# ## Four initialisations, then Lloyd
#
# For each method: the starting centroids, the objective (sum of squared distances to the
# nearest centroid) at the start (`kmeans` with `maxIterations=0` only assigns), and after
# Lloyd's algorithm has converged.

# %%
runs = {}
for method in METHODS:
    t0 = time.perf_counter()
    init = cluster.kmeans_init(K, method=method, seed=SEED).compute(data)
    start = cluster.kmeans(K, maxIterations=0).compute(data, init.centroids)
    km = cluster.kmeans(K, maxIterations=100).compute(data, init.centroids)
    runs[method] = dict(init=init.centroids, centroids=km.centroids,
                        labels=km.assignments.gather().ravel(),
                        start=start.objectiveFunction[0, 0], final=km.objectiveFunction[0, 0],
                        iterations=int(km.nIterations[0, 0]), seconds=time.perf_counter() - t0)
summary = pd.DataFrame({m: {"objective at start": r["start"], "objective after Lloyd": r["final"],
                            "Lloyd iterations": r["iterations"], "seconds": r["seconds"]}
                        for m, r in runs.items()}).T
summary.round(2)

# %%
sub = rng.choice(n_rows, 4000, replace=False)      # plot a sample of the points
fig, axes = plt.subplots(1, 5, figsize=(19, 3.9), gridspec_kw={"width_ratios": [1, 1, 1, 1, 0.9]})
for ax, method in zip(axes, METHODS, strict=False):   # the 5th axis gets the bar chart below
    r = runs[method]
    ax.scatter(*X[sub].T, c=r["labels"][sub], s=2, cmap="tab10", alpha=0.5)
    ax.scatter(*r["init"].T, marker="x", s=80, c="k", label="start")
    ax.scatter(*r["centroids"].T, marker="o", s=80, facecolors="none", edgecolors="r", lw=2,
               label="after Lloyd")
    ax.set_title(f"{method}\nobjective {r['final']:.0f}", fontsize=10)
    ax.set_xticks([]), ax.set_yticks([])
axes[0].legend(loc="lower left", fontsize=8)
ax = axes[-1]
ax.bar(range(len(METHODS)), summary["objective at start"], color="0.75", label="at start")
ax.bar(range(len(METHODS)), summary["objective after Lloyd"], color="tab:blue", label="after Lloyd")
ax.set_xticks(range(len(METHODS)), [m.replace("Dense", "") for m in METHODS], rotation=30)
ax.set_yscale("log")
ax.set_title("objective", fontsize=10)
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Lloyd's algorithm, one iteration at a time
#
# `kmeans(..., maxIterations=1)` runs one Lloyd iteration (assign every row, move every
# centroid); feeding its centroids back in follows the objective per iteration. We start from
# `randomDense`, which needs the most iterations here.

# %%
C = runs["randomDense"]["init"]
objective = [cluster.kmeans(K, maxIterations=0).compute(data, C).objectiveFunction[0, 0]]
for _ in tqdm(range(100), desc="Lloyd iterations"):
    step = cluster.kmeans(K, maxIterations=1).compute(data, C)
    moved = np.abs(step.centroids - C).max()
    C = step.centroids
    objective.append(step.objectiveFunction[0, 0])
    if moved < 1e-9:          # the centroids stopped moving: converged
        break
stepwise = C
print(f"converged after {len(objective) - 2} iterations that moved the centroids; "
      f"objective {objective[-1]:.2f}")

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(range(len(objective)), objective, "o-")
ax.set_xlabel("iteration")
ax.set_ylabel("objective (sum of squared distances)")
ax.set_title("Lloyd's algorithm from randomDense centroids")
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## Same seed, 2 or 4 engines: same centroids
#
# Random draws are keyed by the global row index, not by the rank, so a seed picks the same
# rows whatever the number of engines. Lloyd's sums are combined in rank order; with 4 ranks
# they are added in a different order, so its centroids may differ in the last bits only.

# %%
cluster.stop()
cluster4 = cml.Cluster(n=4)
runs4 = {}
for method in tqdm(METHODS, desc="4 engines"):
    init = cluster4.kmeans_init(K, method=method, seed=SEED).compute(data)
    km = cluster4.kmeans(K, maxIterations=100).compute(data, init.centroids)
    runs4[method] = dict(init=init.centroids, centroids=km.centroids, final=km.objectiveFunction[0, 0])
cluster4.stop()
pd.DataFrame({m: {"same start (bits)": np.array_equal(runs[m]["init"], runs4[m]["init"]),
                  "max |centroid difference|": np.abs(runs[m]["centroids"] - runs4[m]["centroids"]).max(),
                  "objective, 2 engines": runs[m]["final"], "objective, 4 engines": runs4[m]["final"]}
              for m in METHODS}).T

# %% [markdown]
# ## Check against one process
#
# scikit-learn's Lloyd k-means from the same starting centroids, and clusterml in this process
# (`distributed=False`) with the same seed.

# %%
from sklearn.cluster import KMeans

for method in METHODS:
    r, r4 = runs[method], runs4[method]
    one = cml.kmeans_init(K, method=method, seed=SEED).compute(X).centroids   # one process
    np.testing.assert_array_equal(r["init"], one, err_msg=method)
    np.testing.assert_array_equal(r4["init"], one, err_msg=method)
    ref = KMeans(K, init=r["init"], n_init=1, max_iter=100, tol=0.0, algorithm="lloyd").fit(X)
    np.testing.assert_allclose(r["centroids"], ref.cluster_centers_, rtol=1e-9, atol=1e-9, err_msg=method)
    np.testing.assert_allclose(r["final"], ref.inertia_, rtol=1e-9, err_msg=method)
    np.testing.assert_array_equal(r["labels"], ref.labels_, err_msg=method)
    np.testing.assert_allclose(r4["centroids"], r["centroids"], rtol=1e-12, atol=1e-12, err_msg=method)
    assert r["final"] <= r["start"] * (1 + 1e-12), method
np.testing.assert_array_equal(runs["defaultDense"]["init"], X[:K])        # the first K rows
np.testing.assert_allclose(stepwise, runs["randomDense"]["centroids"], rtol=1e-9, atol=1e-9)
assert all(a >= b * (1 - 1e-12) for a, b in itertools.pairwise(objective)), "objective went up"
# the blobs are well separated: the best run finds them
best = min(METHODS, key=lambda m: runs[m]["final"])
found = runs[best]["centroids"]
assert np.abs(np.sort(found, axis=0) - np.sort(centres, axis=0)).max() < 0.2
print("ALL CHECKS PASSED")
