"""HDF5, sparse CSR, CSV headers, masked arrays and the user's row numbers through the facade.

One real local cluster of 3 MPI engines; every result is compared with NumPy
(or clusterml in one process) on the whole data.
"""


import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import clusterml as cml

pytestmark = pytest.mark.timeout(300)

RNG = np.random.default_rng(17)
X = np.round(RNG.normal(size=(97, 5)) * [1, 2, 3, 4, 5] + 3.0, 6)
COUNTS = (RNG.poisson(1.0, size=(150, 6)) * (RNG.random((150, 6)) < 0.3)).astype(float)
LABELS = (np.arange(150) % 3).astype(float)


def test_hdf5_and_csv_headers(cluster, tmp_path):
    path = str(tmp_path / "all.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("g/X", data=X, chunks=(10, 5), compression="gzip")
    res = cluster.covariance().compute(cml.read_partition(path + ":/g/X"))
    np.testing.assert_allclose(res.covariance, np.cov(X, rowvar=False), rtol=1e-10)
    res = cluster.low_order_moments().compute(cml.read_partition(path, dataset="/g/X"))
    np.testing.assert_allclose(res.mean, X.mean(0, keepdims=True), rtol=1e-12)
    for r, part in enumerate(np.array_split(X, 3)):
        with h5py.File(tmp_path / f"p{r}.h5", "w") as f:
            f.create_dataset("X", data=part if r != 1 else part[:0])   # rank 1: no rows
        # pandas' default header 0..p-1 on rank 0, no header elsewhere
        pd.DataFrame(part).to_csv(tmp_path / f"p{r}.csv", index=False, header=(r == 0))
    kept = np.vstack([p for r, p in enumerate(np.array_split(X, 3)) if r != 1])
    res = cluster.low_order_moments().compute(str(tmp_path / "p{}.h5") + ":/X")
    np.testing.assert_allclose(res.mean, kept.mean(0, keepdims=True), rtol=1e-12)
    res = cluster.low_order_moments().compute(str(tmp_path / "p{}.csv"))
    np.testing.assert_allclose(res.mean, X.mean(0, keepdims=True), rtol=1e-12)
    for r, part in enumerate(np.array_split(X, 3)):
        text = pd.DataFrame(part).to_csv(index=False, header=False)
        (tmp_path / f"h{r}.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())   # BOM, no header
    res = cluster.low_order_moments().compute(cml.read_csv(str(tmp_path / "h{}.csv"), header=False))
    np.testing.assert_allclose(res.mean, X.mean(0, keepdims=True), rtol=1e-12)
    # header=False: rank 0's header line 0,1,2,3,4 is read as a row of data
    res = cluster.low_order_moments().compute(cml.read_csv(str(tmp_path / "p{}.csv"), header=False))
    np.testing.assert_allclose(res.mean, np.vstack([np.arange(5.0), X]).mean(0, keepdims=True),
                               rtol=1e-12)


def test_sparse_through_the_facade(cluster, tmp_path):
    S = sp.csr_matrix(COUNTS)
    res = cluster.low_order_moments(method="fastCSR").compute(S)
    ref = cml.low_order_moments().compute(COUNTS)
    for f in ref.fields():
        np.testing.assert_allclose(getattr(res, f), getattr(ref, f), rtol=1e-11, atol=1e-12)
    res = cluster.covariance().compute(sp.coo_array(COUNTS))
    np.testing.assert_allclose(res.covariance, np.cov(COUNTS, rowvar=False), rtol=1e-10, atol=1e-12)
    model = cluster.multinomial_naive_bayes_training(3, method="fastCSR").compute(S, LABELS).model
    ref_model = cml.multinomial_naive_bayes_training(3).compute(COUNTS, LABELS).model
    np.testing.assert_allclose(model.LogTheta, ref_model.LogTheta, rtol=1e-12)
    C = cluster.kmeans_init(4, method="randomCSR").compute(S).centroids
    km = cluster.kmeans(4, 20, method="lloydCSR").compute(S, C)
    ref_km = cml.kmeans(4, 20).compute(COUNTS, C)
    np.testing.assert_allclose(km.centroids, ref_km.centroids, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(km.assignments.gather(), ref_km.assignments)
    sp.save_npz(tmp_path / "all.npz", S)
    res = cluster.low_order_moments().compute(cml.read_partition(str(tmp_path / "all.npz")))
    np.testing.assert_allclose(res.variance, COUNTS.var(0, ddof=1, keepdims=True), rtol=1e-11)
    with pytest.raises(cml.InputError, match="svd: sparse input"):
        cluster.svd().compute(S)


def test_errors_name_the_users_row(cluster):
    bad = X.copy()
    bad[90, 3] = np.inf                      # on the last engine (rows 65..96)
    with pytest.raises(cml.InputError, match=r"inf at row 90 of the array passed, column 3"):
        cluster.low_order_moments().compute(bad)
    with pytest.raises(cml.InputError, match=r"nan at row 40 of the array passed, column 0"):
        bad2 = X.copy()
        bad2[40, 0] = np.nan
        cluster.pca().compute(pd.DataFrame(bad2))
    labels = LABELS.copy()
    labels[120] = 7.0
    with pytest.raises(cml.InputError, match=r"7 at row 120 of the array passed is outside \[0, 3\)"):
        cluster.multinomial_naive_bayes_training(3).compute(COUNTS, labels)
    masked = np.ma.masked_array(X, mask=np.zeros_like(X, dtype=bool))
    masked[70, 1] = np.ma.masked
    with pytest.raises(cml.InputError, match=r"masked array .* row 70 of the array passed, column 1"):
        cluster.covariance().compute(masked)
