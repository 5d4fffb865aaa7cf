# %% [markdown]
# # The `%%px` workflow: the engine API, cell by cell, on every engine
#
# The facade (`cluster.low_order_moments().compute(...)`) sends one call to every engine.
# This notebook does the same work the SPMD way: a `%%px` cell runs on **every engine at once**,
# each engine is one MPI rank, and inside the cell you use the engine API directly, exactly as
# in a plain `mpiexec -n 2 python job.py` script (`cml.init()` has already been called for you).
#
# You will:
#
# 1. write one CSV file that all engines share,
# 2. load each engine's block of rows with `cml.read_partition`,
# 3. run moments and k-means collectively (`distributed=True`) and look at rank-local results,
# 4. pull one result back to the notebook and compare it with the facade call on the same data.

# %%
%matplotlib inline
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import clusterml as cml

N_ENGINES = 2                      # MPI ranks; each gets a contiguous block of the file
DATA = os.path.abspath("data")     # engines start in this folder too, but absolute paths are explicit
os.makedirs(DATA, exist_ok=True)

# %% [markdown]
# ## 1. One data file, generated here
#
# 20,000 rows of 5 features drawn around 4 centres. One file: every engine will read only its
# own contiguous block of it (byte ranges cut at line ends, nothing goes through the notebook).

# %%
rng = np.random.default_rng(7)
n_rows, n_features, n_centres = 20_000, 5, 4
centres = rng.normal(scale=4.0, size=(n_centres, n_features))
truth = rng.integers(0, n_centres, size=n_rows)
X = centres[truth] + rng.normal(size=(n_rows, n_features))
path = os.path.join(DATA, "px-blobs.csv")
pd.DataFrame(X, columns=[f"x{j}" for j in range(n_features)]).to_csv(path, index=False)
print(f"{path}: {os.path.getsize(path) / 1e6:.1f} MB, {n_rows} rows x {n_features} columns")

# %% [markdown]
# ## 2. Engines
#
# `cml.Cluster` starts an ipyparallel controller and `N_ENGINES` MPI engines (engine id ==
# MPI rank) and makes them the target of `%px` / `%%px`.

# %%
cluster = cml.Cluster(n=N_ENGINES)
cluster

# %% [markdown]
# Send the file name to every engine (`%%px` cells see the engines' own namespace, not the
# notebook's), then let each engine load its block.

# %%
_ = cluster.view.push({"path": path, "n_centres": n_centres})   # blocking: done on every engine

# %%
%%px
import numpy as np

rank, size = cml.my_procid(), cml.num_procs()
part = cml.read_partition(path)              # names the shared file; nothing is read yet
X_local, _ = part.load(rank, size)           # this rank's contiguous block of rows
print(f"rank {rank} of {size}: {X_local.shape[0]} rows, first row {np.round(X_local[0], 2)}")

# %% [markdown]
# ## 3. Collective calls, rank-local results
#
# `distributed=True` makes `compute` collective: every rank must call it (a `%%px` cell does
# exactly that), the ranks combine their partial results over MPI, and every rank ends with the
# same result. The same class without `distributed` computes on this rank's rows only.

# %%
%%px
mom = cml.low_order_moments(distributed=True).compute(part)   # all rows, on every rank
local = cml.low_order_moments().compute(X_local)              # this rank's rows only
print(f"rank {rank}: local mean  {np.round(local.mean.ravel(), 3)}")
print(f"rank {rank}: global mean {np.round(mom.mean.ravel(), 3)}")

# %% [markdown]
# k-means the same way. The centroids and the objective are global (identical on every rank);
# the assignments are **per rank**: each rank holds the labels of its own rows.

# %%
%%px
init = cml.kmeans_init(n_centres, method="plusPlusDense", seed=42, distributed=True).compute(part)
km = cml.kmeans(n_centres, maxIterations=50, distributed=True).compute(part, init.centroids)
labels_local = km.assignments                 # n_local x 1: this rank's rows only
counts = np.bincount(labels_local.ravel(), minlength=n_centres)
print(f"rank {rank}: {km.nIterations[0, 0]} iterations, objective {km.objectiveFunction[0, 0]:.1f}, "
      f"assignments {km.assignments.shape}, rows per cluster here {counts}")

# %% [markdown]
# ## 4. Pull results to the notebook
#
# `cluster.view.pull(name)` returns one value per engine, in rank order. Global results are the
# same bits on every rank, so one copy is enough; rank-local ones differ by design.

# %%
moms = cluster.view.pull("mom")
assert all(np.array_equal(m.mean, moms[0].mean) for m in moms)   # identical on every rank
mom_px = cluster.view.pull("mom", targets=0)                      # one copy, from rank 0
km_px = cluster.view.pull("km", targets=0)
init_px = cluster.view.pull("init", targets=0)
counts_per_rank = np.array(cluster.view.pull("counts"))
pd.DataFrame(counts_per_rank, index=[f"rank {r}" for r in range(N_ENGINES)],
             columns=[f"cluster {k}" for k in range(n_centres)])

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
bottom = np.zeros(n_centres)
for r, row in enumerate(counts_per_rank):
    ax.bar(range(n_centres), row, bottom=bottom, label=f"rank {r}")
    bottom += row
ax.set_xticks(range(n_centres))
ax.set_xlabel("k-means cluster")
ax.set_ylabel("rows")
ax.set_title("Rows per cluster, split by the rank that holds them")
ax.legend()
plt.show()

# %% [markdown]
# ## 5. The same calls through the facade
#
# The facade runs exactly what the `%%px` cells ran, so it gives the same bits. It takes the
# file (`cml.read_partition`) or the rows a `%%px` cell bound (`cluster.ref("X_local")`).

# %%
mom_fac = cluster.low_order_moments().compute(cml.read_partition(path))
mom_ref = cluster.low_order_moments().compute(cluster.ref("X_local"))
km_fac = cluster.kmeans(n_centres, maxIterations=50).compute(cml.read_partition(path), init_px.centroids)
labels_fac = km_fac.assignments.gather()          # per-row outputs stay on the engines until asked
labels_px = np.concatenate(cluster.view.pull("labels_local"))
print("moments, px vs facade (file): ", np.array_equal(mom_px.mean, mom_fac.mean)
      and np.array_equal(mom_px.variance, mom_fac.variance))
print("moments, px vs facade (ref):  ", np.array_equal(mom_px.mean, mom_ref.mean))
print("k-means centroids px vs facade:", np.array_equal(km_px.centroids, km_fac.centroids))
print("k-means labels px vs facade:   ", np.array_equal(labels_px, labels_fac))

# %%
cluster.stop()

# %% [markdown]
# ## Check against one process
#
# NumPy and scikit-learn on all 20,000 rows in this notebook's process. A notebook that runs but
# gives a wrong answer stops here.

# %%
from sklearn.cluster import KMeans

assert np.array_equal(mom_px.mean, mom_fac.mean) and np.array_equal(mom_px.mean, mom_ref.mean)
assert np.array_equal(km_px.centroids, km_fac.centroids) and np.array_equal(labels_px, labels_fac)
np.testing.assert_allclose(mom_px.mean.ravel(), X.mean(axis=0), rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(mom_px.variance.ravel(), X.var(axis=0, ddof=1), rtol=1e-10)
np.testing.assert_array_equal(mom_px.minimum.ravel(), X.min(axis=0))
np.testing.assert_array_equal(mom_px.maximum.ravel(), X.max(axis=0))
assert counts_per_rank.sum() == n_rows

ref = KMeans(n_centres, init=init_px.centroids, n_init=1, max_iter=50, tol=0.0,
             algorithm="lloyd").fit(X)
np.testing.assert_allclose(km_px.centroids, ref.cluster_centers_, rtol=1e-9, atol=1e-9)
np.testing.assert_allclose(km_px.objectiveFunction[0, 0], ref.inertia_, rtol=1e-9)
np.testing.assert_array_equal(labels_px.ravel(), ref.labels_)
np.testing.assert_array_equal(counts_per_rank.sum(axis=0), np.bincount(ref.labels_))
print("ALL CHECKS PASSED")
