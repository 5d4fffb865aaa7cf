"""One rank's out-of-core run under an address-space limit (started by tests/test_out_of_core.py).

Usage: mpiexec -n N python out_of_core_job.py WORKDIR HEADROOM_BYTES BLOCK_BYTES

Every rank loads clusterml and runs each algorithm once on a tiny array (so
kernels compile and BLAS allocates its buffers), then limits its address
space (RLIMIT_AS) to what it maps now plus HEADROOM_BYTES, and runs every
one-pass algorithm on its file (a .npy file and an HDF5 dataset, each at
least 4x the headroom), comparing with the values the parent computed with
NumPy (WORKDIR/expected.npz).  The limit alone proves little (memory the
allocator already holds is not counted), so the job also measures its peak
resident memory (VmHWM, reset before the run) and asserts it grew by less
than a quarter of the file, while the same statistics on the file read
whole grow it by at least the file's size.
"""

import os
import resource
import sys

# The input readers (h5py, and pandas for CSV) are loaded before the limit, as in a process that
# has read such files before.  The limit counts only what the allocator maps anew, so it depends
# on the heap a process already holds: without pandas (calls on arrays no longer import it),
# Lloyd's step needed more than the 8 MiB of new mappings although its peak RSS grew by 4.3 MiB.
# The RSS growth asserted at the end is the measure of streaming.
import h5py  # noqa: F401
import numpy as np
import pandas  # noqa: F401

import clusterml as cml
from clusterml.spmd.readers import settings


def vm_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    """Reset VmHWM (peak resident memory) to the current resident size (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def algorithms(data, y, labels):
    """(name, run) of every one-pass algorithm; each prediction uses the model trained before it."""
    box = {}
    yield "moments", lambda: cml.low_order_moments(distributed=True).compute(data)
    yield "covariance", lambda: cml.covariance(distributed=True).compute(data)
    yield "pca", lambda: cml.pca(distributed=True).compute(data)
    yield "regression", lambda: box.setdefault("lr", cml.linear_regression_training(
        interceptFlag=True, distributed=True).compute(data, y))
    yield "prediction", lambda: cml.linear_regression_prediction(distributed=True).compute(
        data, box["lr"].model)
    yield "naive bayes", lambda: box.setdefault("nb", cml.multinomial_naive_bayes_training(
        2, distributed=True).compute(data, labels))
    yield "nb prediction", lambda: cml.multinomial_naive_bayes_prediction(
        2, distributed=True).compute(data, box["nb"].model)
    if str(data).endswith(".npy"):  # k-means reads the file once per pass: one format is enough
        yield "kmeans init", lambda: box.setdefault("C", cml.kmeans_init(
            4, method="randomDense", distributed=True).compute(data))
        yield "kmeans", lambda: cml.kmeans(4, 3, distributed=True).compute(data,
                                                                         box["C"].centroids)


def check(res, exp, pred, spec, n):
    """Every result equals NumPy's on the whole data."""
    checks = {
        "mean": (res["moments"].mean, exp["mean"]),
        "variance": (res["moments"].variance, exp["variance"]),
        "covariance": (res["covariance"].covariance, exp["cov"]),
        "eigenvalues": (res["pca"].eigenvalues, exp["eig"]),
        "beta": (res["regression"].model.Beta, exp["beta"]),
        "logtheta": (res["naive bayes"].model.LogTheta, exp["logtheta"]),
        "prediction": (res["prediction"].prediction, pred),
    }
    for name, (got, want) in checks.items():
        got, want = np.asarray(got).ravel(), np.asarray(want).ravel()
        assert got.shape == want.shape and np.allclose(got, want, rtol=1e-8, atol=1e-10), \
            f"{spec} {name}: max diff {np.max(np.abs(got - want))}"
    assert res["nb prediction"].prediction.shape == (n, 1)
    if "kmeans" in res:
        assert res["kmeans"].assignments.shape == (n, 1)
        assert np.allclose(res["kmeans init"].centroids, exp["init"]), "kmeans_init"
        assert np.allclose(res["kmeans"].centroids, exp["kmeans"], rtol=1e-8), "kmeans centroids"


def main():
    work, headroom, block = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cml.init()
    rank = cml.my_procid()
    tiny = np.abs(np.random.default_rng(0).normal(size=(64, 16)))
    for _, run in algorithms(tiny, tiny[:, :1], (tiny[:, :1] > 1).astype(float)):   # warm up
        run()
    settings.block_bytes = block
    path = os.path.join(work, f"part{rank}.npy")
    y = np.load(os.path.join(work, f"y{rank}.npy"))
    labels = np.load(os.path.join(work, f"labels{rank}.npy"))
    exp = dict(np.load(os.path.join(work, "expected.npz")))
    size = os.path.getsize(path)
    assert size >= 4 * headroom, f"file {size} < 4 x headroom {headroom}"
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm_bytes() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    growth = {}
    for spec in (os.path.join(work, "part{}.npy"), os.path.join(work, "part{}.h5:/X")):
        results = {}
        for name, run in algorithms(spec, y, labels):
            reset_peak()
            base = status("VmRSS")
            results[name] = run()
            growth[spec, name] = status("VmHWM") - base
        check(results, exp, np.load(os.path.join(work, f"pred{rank}.npy")), spec, len(y))
        del results
    streamed = max(growth.values())
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    # the same statistics in memory, for comparison
    reset_peak()
    base2 = status("VmRSS")
    whole = np.load(path)
    cml.covariance(distributed=True).compute(whole)
    in_memory = status("VmHWM") - base2
    del whole
    print(f"rank {rank}: ok; file {size} bytes; address-space limit {limit} (headroom "
          f"{headroom}); peak RSS growth streaming {streamed} bytes (largest of "
          f"{len(growth)} runs), in memory {in_memory} bytes", flush=True)
    if rank == 0:
        print("peak RSS growth per run (MiB): " + ", ".join(
            f"{os.path.splitext(s)[1]} {n} {g / (1 << 20):.1f}" for (s, n), g in growth.items()),
            flush=True)
    assert 4 * streamed <= size, f"streaming grew RSS by {streamed} bytes, more than file/4"
    assert in_memory >= size, f"in memory grew RSS by only {in_memory} bytes"
    cml.fini()


if __name__ == "__main__":
    main()
