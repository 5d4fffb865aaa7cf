"""Files larger than a rank's memory: every one-pass algorithm reads them in blocks.

Each rank of an ``mpiexec -n 2`` job limits its own address space (RLIMIT_AS)
to what it uses after start-up plus a headroom, proves that reading its file
whole now fails, then runs moments, covariance, PCA, regression training and
prediction, naive Bayes and k-means (random init, Lloyd) on a per-rank ``.npy`` file and an HDF5 dataset at
least 4x the headroom, and compares with NumPy (see tests/out_of_core_job.py).
"""

import os
import subprocess
import sys

import h5py
import numpy as np
from helpers import ROOT, mpiexec_path, subprocess_env

import clusterml as cml

HEADROOM = 8 << 20          # bytes a rank may grow by after start-up
BLOCK = 1 << 20             # clusterml's block_bytes in the job
P = 16
ROWS = (4 * HEADROOM) // (8 * P) + 4096     # per rank: a file > 4 x HEADROOM
NPROCS = 2


def test_files_four_times_the_memory_limit(tmp_path):
    rng = np.random.default_rng(11)
    beta = np.arange(1.0, P + 1)
    parts, ys, labs = [], [], []
    for r in range(NPROCS):
        X = np.abs(rng.normal(size=(ROWS, P))) * np.linspace(1, 3, P)
        y = (X @ beta + 2.0 + rng.normal(size=ROWS) * 0.1).reshape(-1, 1)
        lab = (X[:, 0] > X[:, 1]).astype(float).reshape(-1, 1)
        np.save(tmp_path / f"part{r}.npy", X)
        with h5py.File(tmp_path / f"part{r}.h5", "w") as f:
            f.create_dataset("X", data=X, chunks=(4096, P), compression="gzip", compression_opts=1)
        np.save(tmp_path / f"y{r}.npy", y)
        np.save(tmp_path / f"labels{r}.npy", lab)
        parts.append(X), ys.append(y), labs.append(lab)
    X, y, lab = np.vstack(parts), np.vstack(ys), np.vstack(labs)
    A = np.c_[np.ones(len(X)), X]
    b = np.linalg.lstsq(A, y, rcond=None)[0].T
    init = cml.kmeans_init(4, method="randomDense").compute(X).centroids
    counts = np.stack([X[lab[:, 0] == c].sum(0) for c in (0, 1)]) + 1.0
    np.savez(tmp_path / "expected.npz", mean=X.mean(0), variance=X.var(0, ddof=1),
             cov=np.cov(X, rowvar=False), beta=b,
             eig=np.linalg.eigvalsh(np.corrcoef(X, rowvar=False))[::-1],
             logtheta=np.log(counts) - np.log(counts.sum(1, keepdims=True)),
             init=init, kmeans=cml.kmeans(4, 3).compute(X, init).centroids)
    for r in range(NPROCS):
        np.save(tmp_path / f"pred{r}.npy", np.c_[np.ones(ROWS), parts[r]] @ b.T)
    del X, A, parts
    job = os.path.join(ROOT, "tests", "out_of_core_job.py")
    proc = subprocess.run([mpiexec_path(), "-n", str(NPROCS), sys.executable, job, str(tmp_path),
                           str(HEADROOM), str(BLOCK)], capture_output=True, text=True,
                          timeout=300, env=subprocess_env(
                              MALLOC_ARENA_MAX="2", MALLOC_MMAP_THRESHOLD_="65536",
                              MALLOC_TRIM_THRESHOLD_="0", MALLOC_TOP_PAD_="0",
                              # MPI's UCX caches registrations in fresh mappings; the
                              # collectives here are small and need no cache
                              UCX_RCACHE_ENABLE="n", UCX_MEM_EVENTS="no"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    for r in range(NPROCS):
        assert f"rank {r}: ok" in out, out[-6000:]
    assert "ERROR" not in out, out[-6000:]
    print(out)
