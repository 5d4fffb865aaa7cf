# %% [markdown]
# # clusterml on Slurm
#
# On an HPC system the engines run as **one Slurm job** whose tasks form one MPI world
# (`srun --mpi=pmi2 ipengine --mpi`), while this notebook and the ipyparallel controller run
# on the login node. Nothing else changes: the same `cluster.<algorithm>().compute(...)` calls.
#
# 1. install the `clusterml-slurm` profile (once per user; your site settings go here),
# 2. start the engines through Slurm and look at the queue,
# 3. run PCA and k-means on the engines,
# 4. stop: the job is cancelled, nothing is left in the queue.
#
# This notebook needs Slurm (`sinfo`, `sbatch` on the `PATH`) and a file system shared by the
# login node and the compute nodes (the engines inherit this environment, `--export=ALL`).
# The project's tests run it against a single-node Slurm on the test machine (`slurm/dev/`).

# %%
%matplotlib inline
import os
import shutil
import subprocess
import sys
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import clusterml as cml

N_ENGINES = 2                                      # MPI ranks = Slurm tasks
CLUSTERML = [sys.executable, "-m", "clusterml"]    # the `clusterml` command of this Python
DATA = os.path.abspath("data/slurm")               # must be visible from the compute nodes
os.makedirs(DATA, exist_ok=True)


def run(*cmd, show=True):
    """Run a command and show what a terminal would; fail if it fails."""
    cmd = [str(c) for c in cmd]
    shown = " ".join(cmd).replace(" ".join(CLUSTERML), "clusterml")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if show:
        print(f"$ {shown}\n{proc.stdout}{proc.stderr}", end="")
    if proc.returncode:
        raise RuntimeError(f"{shown} exited with {proc.returncode}:\n{proc.stderr}")
    return proc.stdout


def my_jobs() -> set:
    """Ids of this user's Slurm jobs (any state)."""
    return set(run("squeue", "--me", "--noheader", "--format=%i", show=False).split())


assert shutil.which("sbatch"), "no Slurm here (sbatch is not on the PATH)"
_ = run("sinfo")

# %% [markdown]
# ## 1. Install the profile
#
# `clusterml profile install` writes the `clusterml-local` and `clusterml-slurm` profiles into
# your IPython directory. Site settings are options: `--account`, `--partition`, `--time`,
# `--cpus-per-task`, `--mem`, `--setup "module load mpich"`, `--mpi pmi2|pmix|mpiexec`,
# controller address settings (`clusterml profile install --help`). Change one later with
# `clusterml profile set clusterml-slurm key=value` (stored as values in
# `profile_clusterml-slurm/ipcluster_config.json`); `clusterml doctor` checks the set-up.

# %%
_ = run(*CLUSTERML, "profile", "install", "--time", "00:15:00", "--force")

# %% [markdown]
# ## 2. Start the engines through Slurm
#
# `cml.Cluster(n, profile="clusterml-slurm")` starts the controller here and submits one job
# of `n` tasks; it waits (with progress) until every engine has registered, then checks they
# form one MPI world with engine id == MPI rank. Time in the queue counts against the
# profile's engine timeout.

# %%
before = my_jobs()
cluster = cml.Cluster(n=N_ENGINES, profile="clusterml-slurm")
jobs = my_jobs() - before
print("engines job:", ", ".join(sorted(jobs)))
_ = run("squeue", "--me", "--format=%.10i %.12j %.8T %.6D %.6C %.10M %R")

# %%
engines = pd.DataFrame(cluster.engines)[["rank", "size", "host", "pid", "mpi"]]
engines

# %% [markdown]
# ## 3. Run algorithms on the Slurm engines
#
# 20,000 rows of 5 features around 3 centres, one `.npy` file on the shared file system; each
# engine reads its own block.

# %%
rng = np.random.default_rng(5)
n_rows, n_features, k = 20_000, 5, 3
centres = rng.normal(scale=5.0, size=(k, n_features))
X = centres[rng.integers(0, k, size=n_rows)] + rng.normal(size=(n_rows, n_features))
path = os.path.join(DATA, "slurm-blobs.npy")
np.save(path, X)
data = cml.read_partition(path)

pca = cluster.pca(isDeterministic=True).compute(data)
init = cluster.kmeans_init(k, method="plusPlusDense", seed=1).compute(data)
km = cluster.kmeans(k, maxIterations=50).compute(data, init.centroids)
labels = km.assignments.gather().ravel()
print(f"PCA eigenvalues {np.round(pca.eigenvalues[0], 3)}")
print(f"k-means: {km.nIterations[0, 0]} iterations, objective {km.objectiveFunction[0, 0]:.1f}, "
      f"rows per cluster {np.bincount(labels)}")

# %%
Xs = (X - pca.means) / np.sqrt(pca.variances)
P = Xs @ pca.eigenvectors[:2].T
fig, ax = plt.subplots(figsize=(5.5, 4.5))
ax.scatter(P[:, 0], P[:, 1], c=labels, s=3, cmap="tab10", alpha=0.5)
ax.set_xlabel("PC 1")
ax.set_ylabel("PC 2")
ax.set_title(f"k-means on {N_ENGINES} Slurm engines (job {', '.join(sorted(jobs))})")
plt.show()

# %% [markdown]
# ## 4. Stop
#
# `cluster.stop()` cancels the engines job and stops the controller (closing the notebook's
# kernel does the same). Slurm shows the job as completing (`CG`) for a moment while it
# cleans up the job's processes; then nothing of this cluster is left in the queue.

# %%
cluster.stop()
_ = run("squeue", "--me")
deadline = time.monotonic() + 60
while (left := my_jobs() & jobs) and time.monotonic() < deadline:
    time.sleep(0.5)
_ = run("squeue", "--me")
print("jobs of this cluster still queued:", ", ".join(sorted(left)) or "none")

# %% [markdown]
# ## Check against one process

# %%
from sklearn.cluster import KMeans

assert len(jobs) == 1, jobs                     # one Slurm job for all engines
assert not left, left                           # and it is gone
assert list(engines["rank"]) == list(range(N_ENGINES)) and (engines["size"] == N_ENGINES).all()
w = np.linalg.eigvalsh(np.corrcoef(X, rowvar=False))[::-1]
np.testing.assert_allclose(pca.eigenvalues[0], w, rtol=1e-9, atol=1e-12)
ref = KMeans(k, init=init.centroids, n_init=1, max_iter=50, tol=0.0, algorithm="lloyd").fit(X)
np.testing.assert_allclose(km.centroids, ref.cluster_centers_, rtol=1e-9, atol=1e-9)
np.testing.assert_array_equal(labels, ref.labels_)
one = cml.kmeans_init(k, method="plusPlusDense", seed=1).compute(X).centroids
np.testing.assert_array_equal(init.centroids, one)   # same seed, same centroids as one process
print("ALL CHECKS PASSED")
