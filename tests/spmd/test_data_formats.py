"""HDF5, sparse CSR, CSV headers, masked arrays and files read in blocks, at any world size.

Every result is compared with NumPy on the whole data; one rank (rank 1) holds no rows.
"""

import os

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from mpihelpers import (
    expect_distributed_error,
    mpi_allclose,
    mpi_assert,
    my_block,
    rank,
    size,
    uneven_counts,
    world,
)

import clusterml as cml
from clusterml.spmd.readers import block_range, settings


def test_block_range_is_as_documented():
    bad = []
    if [block_range(10, r, 4) for r in range(4)] != [(0, 2), (2, 5), (5, 7), (7, 10)]:
        bad.append("10 rows on 4 ranks")
    for n, p in [(0, 3), (2, 5), (7, 7), (203, 4), (1000, 7)]:
        blocks = [block_range(n, r, p) for r in range(p)]
        sizes = [b - a for a, b in blocks]
        ok = (blocks[0][0] == 0 and blocks[-1][1] == n                       # all rows, in order
              and all(blocks[r][1] == blocks[r + 1][0] for r in range(p - 1))  # contiguous
              and set(sizes) <= {n // p, n // p + 1}                          # differ by <= 1
              and all(a == n * r // p for r, (a, _) in enumerate(blocks)))
        if not ok:
            bad.append(f"{n} rows on {p} ranks: {blocks}")
    mpi_assert(not bad, "; ".join(bad))


def data(n=203, d=4, seed=3):
    return np.random.default_rng(seed).normal(size=(n, d)) * np.arange(1, d + 1) + 5.0


def counts_data(n=180, d=6, seed=4):
    rng = np.random.default_rng(seed)
    X = rng.poisson(1.0, size=(n, d)) * (rng.random((n, d)) < 0.4)
    return X.astype(float), rng.integers(0, 3, n).astype(float)


def last_with_rows():
    """The last rank that holds rows (rank 1 is the empty one)."""
    return 0 if size() == 2 else size() - 1


def on_rank0(fn):
    """Rank 0 writes files; a failure there fails every rank (nobody waits)."""
    err = None
    if rank() == 0:
        try:
            fn()
        except Exception as exc:
            err = repr(exc)
    err = world().bcast(err, root=0)
    assert err is None, f"writing test files on rank 0 failed: {err}"


def sparse_block(X):
    """This rank's rows of the full sparse X, as a CSR array."""
    counts = uneven_counts(X.shape[0], size())
    start = sum(counts[:rank()])
    return sp.csr_array(X[start:start + counts[rank()]])


def per_rank(X, counts=None):
    """[(r, rows of rank r)] for every rank (uneven, rank 1 empty)."""
    counts = counts or uneven_counts(len(X), size())
    out, start = [], 0
    for r, c in enumerate(counts):
        out.append((r, X[start:start + c]))
        start += c
    return out


# ---------------------------------------------------------------- HDF5


def test_hdf5_per_rank_datasets(shared_tmp):
    X = data()

    def write():
        for r, part in per_rank(X):
            with h5py.File(os.path.join(shared_tmp, f"part{r}.h5"), "w") as f:
                f.create_dataset("sim/X", data=part.astype(np.float32 if r % 2 else np.float64))
                f.create_dataset("sim/y", data=part[:, 0])  # 1-D: n x 1
    on_rank0(write)
    X32 = np.vstack([part.astype(np.float32 if r % 2 else np.float64) for r, part in per_rank(X)])
    path = os.path.join(shared_tmp, "part{}.h5")
    res = cml.covariance(distributed=True).compute(path + ":/sim/X")
    mpi_allclose(res.covariance, np.cov(X32, rowvar=False), rtol=1e-10, what="h5 path:dataset")
    res = cml.low_order_moments(distributed=True).compute(cml.read_hdf5(path, "/sim/y"))
    mpi_allclose(res.mean, X[:, :1].mean(0, keepdims=True), rtol=1e-12, what="h5 1-D dataset")


@pytest.mark.parametrize("chunks,compression", [(None, None), ((16, 2), "gzip")])
def test_hdf5_read_partition_reads_own_hyperslab(shared_tmp, chunks, compression):
    X = data(n=157)
    path = os.path.join(shared_tmp, "all.h5")
    on_rank0(lambda: h5py.File(path, "w").create_dataset("X", data=X, chunks=chunks,
                                                          compression=compression).file.close())
    part = cml.read_partition(path, dataset="/X")
    block, _ = part.load(rank(), size())
    blocks = world().allgather(block)
    mpi_allclose(np.vstack(blocks), X, rtol=0, atol=0, what="hyperslabs")
    a, b = block_range(len(X), rank(), size())
    mpi_assert(len(block) == b - a, "contiguous split")
    res = cml.pca(distributed=True).compute(cml.read_partition(path + ":/X"))
    ref = np.linalg.eigvalsh(np.corrcoef(X, rowvar=False))[::-1]
    mpi_allclose(res.eigenvalues.ravel(), ref, rtol=1e-9, what="pca eigenvalues")


def test_hdf5_errors_on_every_rank(shared_tmp):
    X = data(n=40)

    def write():
        for r in range(size()):
            with h5py.File(os.path.join(shared_tmp, f"p{r}.h5"), "w") as f:
                if r != size() - 1:
                    f.create_dataset("X", data=X)
                f.create_dataset("names", data=np.array([b"a", b"b"]))
                f.create_dataset("Z", data=X)
    on_rank0(write)
    path = os.path.join(shared_tmp, "p{}.h5")
    err = expect_distributed_error(lambda: cml.covariance(distributed=True).compute(path + ":/X"),
                                   match="no dataset '/X'", cls=cml.InputError)
    mpi_assert(f"rank {size() - 1}" in str(err), f"names the rank: {err}")
    expect_distributed_error(lambda: cml.covariance(distributed=True).compute(path + ":/names"),
                             match="is not numeric", cls=cml.InputError)
    expect_distributed_error(lambda: cml.covariance(distributed=True).compute(path),
                             match="name the dataset", cls=cml.InputError)


# ---------------------------------------------------------------- CSV headers and masks


def test_csv_headers_pandas_default_bom_and_explicit(shared_tmp):
    X = np.round(data(n=90), 5)
    blocks = per_rank(X)

    def write():
        for r, part in blocks:
            frame = pd.DataFrame(part)
            # pandas' default header "0,1,2,3"
            frame.to_csv(os.path.join(shared_tmp, f"pd{r}.csv"), index=False)
            # headerless, with a UTF-8 byte-order mark
            text = frame.to_csv(index=False, header=False)
            with open(os.path.join(shared_tmp, f"bom{r}.csv"), "wb") as fh:
                fh.write(b"\xef\xbb\xbf" + text.encode())
            # headerless, first data row 0,1,2,3 (only header=False reads it right)
            ints = np.vstack([np.arange(4.0)[None], part]) if r == 0 else part
            pd.DataFrame(ints).to_csv(os.path.join(shared_tmp, f"ints{r}.csv"), index=False,
                                      header=False)
        pd.DataFrame(X).to_csv(os.path.join(shared_tmp, "all.csv"), index=False)
    on_rank0(write)
    mean = X.mean(0, keepdims=True)
    for name in ("pd{}.csv", "bom{}.csv"):
        res = cml.low_order_moments(distributed=True).compute(os.path.join(shared_tmp, name))
        mpi_allclose(res.mean, mean, rtol=1e-12, what=name)
        mpi_assert(int(res.sum[0, 0] / res.mean[0, 0] + 0.5) == len(X), f"{name}: row count")
    X0 = np.vstack([np.arange(4.0)[None], X])
    res = cml.low_order_moments(distributed=True).compute(
        cml.read_csv(os.path.join(shared_tmp, "ints{}.csv"), header=False))
    mpi_allclose(res.mean, X0.mean(0, keepdims=True), rtol=1e-12, what="header=False")
    for header in ("auto", True):
        part = cml.read_partition(os.path.join(shared_tmp, "all.csv"), header=header)
        res = cml.low_order_moments(distributed=True).compute(part)
        mpi_allclose(res.mean, mean, rtol=1e-12, what=f"read_partition header={header}")
    expect_distributed_error(lambda: cml.read_csv("x.csv", header="yes"), match="header=",
                             cls=cml.InputError)


def test_masked_array_is_refused_on_every_rank():
    X = data(n=60)
    mine = np.ma.masked_array(my_block(X))
    if rank() == 0:
        mine[len(mine) - 1, 2] = np.ma.masked
    expect_distributed_error(lambda: cml.low_order_moments(distributed=True).compute(mine),
                             match="masked", cls=cml.InputError)
    ok = np.ma.masked_array(my_block(X), mask=False)
    res = cml.low_order_moments(distributed=True).compute(ok)
    mpi_allclose(res.mean, X.mean(0, keepdims=True), what="unmasked masked array")


def test_per_rank_csv_error_names_file_and_line(shared_tmp):
    X = np.round(data(n=50), 4)
    blocks = per_rank(X)
    last = last_with_rows()

    def write():
        for r, part in blocks:
            frame = pd.DataFrame(part, columns=list("abcd"))
            if r == last:
                frame.iloc[len(frame) - 2, 1] = np.nan
            frame.to_csv(os.path.join(shared_tmp, f"q{r}.csv"), index=False)
    on_rank0(write)
    line = len(blocks[last][1]) - 2 + 2  # header on line 1, rows from line 2
    err = expect_distributed_error(
        lambda: cml.pca(distributed=True).compute(os.path.join(shared_tmp, "q{}.csv")),
        cls=cml.InputError)
    mpi_assert(f"q{last}.csv, line {line}, column 1" in str(err), str(err))


# ---------------------------------------------------------------- sparse CSR


@pytest.mark.parametrize("kind", ["csr_matrix", "csr_array", "npz", "npz-partition"])
def test_sparse_moments_covariance_equal_dense(shared_tmp, kind):
    X, _ = counts_data()
    X[:, 2] = -X[:, 2] + 0.5 * (X[:, 2] != 0)     # negative values, a column with no zero
    X[:, 5] = 3.0
    S = sp.csr_array(X)
    if kind.startswith("npz"):
        def write():
            sp.save_npz(os.path.join(shared_tmp, "all.npz"), sp.csr_matrix(X))
            for r, part in per_rank(X):
                sp.save_npz(os.path.join(shared_tmp, f"s{r}.npz"), sp.csr_matrix(part))
        on_rank0(write)
        spec = (cml.read_partition(os.path.join(shared_tmp, "all.npz")) if kind == "npz-partition"
                else os.path.join(shared_tmp, "s{}.npz"))
    else:
        spec = sparse_block(S)
        if kind == "csr_matrix":
            spec = sp.csr_matrix(spec)
    res = cml.low_order_moments(method="fastCSR", distributed=True).compute(spec)
    ref = cml.low_order_moments().compute(X)
    for f in ref.fields():
        mpi_allclose(getattr(res, f), getattr(ref, f), rtol=1e-11, atol=1e-12, what=f"moments {f}")
    res = cml.covariance(distributed=True).compute(spec)
    mpi_allclose(res.covariance, np.cov(X, rowvar=False), rtol=1e-10, atol=1e-12, what="cov")
    mpi_allclose(res.correlation, cml.covariance().compute(X).correlation, rtol=1e-9, atol=1e-12,
                 what="correlation")


def test_sparse_naive_bayes_equal_dense():
    X, y = counts_data()
    Xs, ys = sparse_block(sp.csr_array(X)), my_block(y)
    model = cml.multinomial_naive_bayes_training(3, method="fastCSR", distributed=True).compute(Xs, ys)
    ref = cml.multinomial_naive_bayes_training(3).compute(X, y)
    mpi_allclose(model.model.LogTheta, ref.model.LogTheta, rtol=1e-12, what="LogTheta")
    want = "computeClassLabels|computeClassProbabilities"
    pred = cml.multinomial_naive_bayes_prediction(3, want, distributed=True).compute(Xs, ref.model)
    full = cml.multinomial_naive_bayes_prediction(3, want).compute(X, ref.model)
    mpi_allclose(pred.prediction, my_block(full.prediction), what="labels")
    mpi_allclose(pred.probabilities, my_block(full.probabilities), rtol=1e-10, what="probabilities")
    bad = Xs.copy()
    if rank() == last_with_rows() and bad.nnz:
        bad.data[-1] = -1.0
    expect_distributed_error(
        lambda: cml.multinomial_naive_bayes_training(3, distributed=True).compute(bad, ys),
        match="non-negative counts", cls=cml.InputError)


@pytest.mark.parametrize("init", ["defaultDense", "randomCSR"])
def test_sparse_kmeans_equal_dense(init):
    X, _ = counts_data(n=240, d=5)
    Xs = sparse_block(sp.csr_array(X))
    C = cml.kmeans_init(4, method=init, distributed=True).compute(Xs).centroids
    C_ref = cml.kmeans_init(4, method=init.replace("CSR", "Dense")).compute(X).centroids
    mpi_allclose(C, C_ref, rtol=0, atol=0, what="initial centroids")
    res = cml.kmeans(4, 30, method="lloydCSR", distributed=True).compute(Xs, C)
    ref = cml.kmeans(4, 30).compute(X, C)
    mpi_allclose(res.centroids, ref.centroids, rtol=1e-10, atol=1e-12, what="centroids")
    mpi_allclose(res.objectiveFunction, ref.objectiveFunction, rtol=1e-10, what="objective")
    mpi_assert(int(res.nIterations[0, 0]) == int(ref.nIterations[0, 0]), "iterations")
    mpi_allclose(res.assignments, my_block(ref.assignments), rtol=0, atol=0, what="assignments")


def test_sparse_refused_where_not_supported():
    X, _ = counts_data()
    Xs = sparse_block(sp.csr_array(X))
    expect_distributed_error(lambda: cml.pca(distributed=True).compute(Xs),
                             match="pca: sparse input (data) is not supported", cls=cml.InputError)
    expect_distributed_error(lambda: cml.kmeans_init(3, method="plusPlusDense",
                                                     distributed=True).compute(Xs),
                             match="does not take sparse input", cls=cml.InputError)
    expect_distributed_error(lambda: cml.covariance(method="fastCSR", distributed=True).compute(
        my_block(X)), match="needs sparse CSR input", cls=cml.InputError)
    bad = Xs.copy()
    if rank() == 0 and bad.nnz:
        bad.data[3] = np.nan
    expect_distributed_error(lambda: cml.low_order_moments(distributed=True).compute(bad),
                             match="values must be finite", cls=cml.InputError)


# ---------------------------------------------------------------- blocks (out of core)


@pytest.fixture
def small_blocks():
    saved = settings.block_bytes
    settings.block_bytes = 8 * 4 * 7          # 7 rows of 4 columns at a time
    yield
    settings.block_bytes = saved


@pytest.mark.parametrize("fmt", ["npy", "csv", "h5", "parquet", "npy-partition", "csv-partition"])
def test_blocks_equal_in_memory(shared_tmp, small_blocks, fmt):
    X = np.round(data(n=131), 6)
    beta = np.array([1.0, -2.0, 0.5, 3.0])
    y = X @ beta + 4.0 + np.sin(np.arange(len(X)))
    labels = (np.arange(len(X)) % 3).astype(float)
    ext = fmt.split("-")[0]

    def save(path, A):
        if ext == "npy":
            np.save(path, A)
        elif ext == "csv":
            pd.DataFrame(A).to_csv(path, index=False)
        elif ext == "parquet":
            pd.DataFrame(A, columns=list("abcd")).to_parquet(path, row_group_size=9)
        else:
            with h5py.File(path, "w") as f:
                f.create_dataset("X", data=A, chunks=(5, A.shape[1]) if len(A) >= 5 else None)

    def write():
        save(os.path.join(shared_tmp, f"all.{ext}"), X)
        for r, part in per_rank(X):
            save(os.path.join(shared_tmp, f"b{r}.{ext}"), part)
    on_rank0(write)
    if fmt.endswith("partition"):
        spec = cml.read_partition(os.path.join(shared_tmp, f"all.{ext}"))
        # CSV blocks are cut by bytes: take the row counts the ranks read
        block, _ = spec.load(rank(), size())
        counts = world().allgather(0 if block is None else len(block))
        mine = np.arange(sum(counts[:rank()]), sum(counts[:rank() + 1]))
    else:
        spec = os.path.join(shared_tmp, f"b{{}}.{ext}")
        mine = my_block(np.arange(len(X)))
    D = cml.covariance(distributed=True).compute(spec)
    mpi_allclose(D.covariance, np.cov(X, rowvar=False), rtol=1e-10, what="covariance")
    M = cml.low_order_moments(distributed=True).compute(spec)
    mpi_allclose(M.minimum, X.min(0, keepdims=True), rtol=0, what="minimum")
    mpi_allclose(M.variance, X.var(0, ddof=1, keepdims=True), rtol=1e-10, what="variance")
    P = cml.pca(distributed=True).compute(spec)
    ref = np.linalg.eigvalsh(np.corrcoef(X, rowvar=False))[::-1]
    mpi_allclose(P.eigenvalues.ravel(), ref, rtol=1e-9, what="pca")
    model = cml.linear_regression_training(interceptFlag=True, distributed=True).compute(
        spec, y[mine]).model
    ref_beta = np.linalg.lstsq(np.c_[np.ones(len(X)), X], y, rcond=None)[0]
    mpi_allclose(model.Beta.ravel(), ref_beta, rtol=1e-8, what="regression")
    pred = cml.linear_regression_prediction(distributed=True).compute(spec, model).prediction
    mpi_allclose(pred.ravel(), (np.c_[np.ones(len(X)), X] @ model.Beta.ravel())[mine], rtol=1e-10,
                 what="prediction")
    C0 = X[[3, 50, 99]] + [[50.0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]  # cluster 0 empties
    km = cml.kmeans(3, 8, distributed=True).compute(spec, C0)
    ref_km = cml.kmeans(3, 8).compute(X, C0)
    mpi_allclose(km.centroids, ref_km.centroids, rtol=1e-10, what="kmeans")
    mpi_allclose(km.assignments, ref_km.assignments[mine], rtol=0, atol=0, what="assignments")
    for method in ("defaultDense", "randomDense"):
        C = cml.kmeans_init(3, method=method, distributed=True).compute(spec).centroids
        mpi_allclose(C, cml.kmeans_init(3, method=method).compute(X).centroids, rtol=0, atol=0,
                     what=method)
    counts = np.abs(X)
    ref_nb = cml.multinomial_naive_bayes_training(3).compute(counts, labels).model
    if ext == "npy":  # naive Bayes needs counts: a second file of |X|
        on_rank0(lambda: [np.save(os.path.join(shared_tmp, f"c{r}.npy"), np.abs(part))
                          for r, part in per_rank(X)])
        nb = cml.multinomial_naive_bayes_training(3, distributed=True).compute(
            os.path.join(shared_tmp, "c{}.npy"), my_block(labels)).model
        mpi_allclose(nb.LogTheta, ref_nb.LogTheta, rtol=1e-12, what="naive Bayes")
