"""Helpers for tests that run inside an MPI world (imported by every rank)."""


import numpy as np

import clusterml as cml
from clusterml.spmd import comm as _comm


def world():
    return _comm.get_comm()


def rank():
    return world().Get_rank()


def size():
    return world().Get_size()


def mpi_assert(cond, msg=""):
    """Collective assert: fails on every rank if it fails on any, naming the ranks."""
    oks = world().allgather((bool(cond), str(msg)))
    bad = [(r, m) for r, (ok, m) in enumerate(oks) if not ok]
    if bad:
        raise AssertionError("; ".join(f"rank {r}: {m}" for r, m in bad))


def mpi_allclose(a, b, rtol=1e-9, atol=1e-9, what=""):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = a.shape == b.shape and np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
    err = np.nanmax(np.abs(a - b)) if a.shape == b.shape and a.size else "shape"
    mpi_assert(ok, f"{what}: max |diff| = {err} (shapes {a.shape} vs {b.shape})")


def same_on_every_rank(obj, what="result"):
    """Assert ``obj`` pickles to the same bytes on every rank."""
    import hashlib
    import pickle

    digest = hashlib.sha256(pickle.dumps(_canonical(obj), protocol=4)).hexdigest()
    digests = world().allgather(digest)
    mpi_assert(len(set(digests)) == 1, f"{what} differs between ranks: {digests}")


def _canonical(obj):
    if isinstance(obj, cml.Result):
        return {k: _canonical(v) for k, v in obj.to_dict().items()}
    if isinstance(obj, np.ndarray):
        return (obj.dtype.str, obj.shape, np.ascontiguousarray(obj).tobytes())
    return obj


def uneven_counts(n, nprocs, empty_rank=True):
    """Uneven row counts summing to n; with more than one rank, one rank (rank 1) has none."""
    if nprocs == 1:
        return [n]
    weights = np.arange(1, nprocs + 1, dtype=float)
    if empty_rank:
        weights[1] = 0
    counts = np.floor(n * weights / weights.sum()).astype(int)
    counts[-1] += n - counts.sum()
    return counts.tolist()


def my_block(X, counts=None):
    """This rank's rows of the full array X (uneven blocks with an empty rank by default)."""
    counts = counts or uneven_counts(len(X), size())
    start = sum(counts[: rank()])
    return X[start:start + counts[rank()]]


def expect_distributed_error(fn, match=None, cls=None):
    """Run fn on every rank; assert every rank raised DistributedError (optionally of cls, matching)."""
    cls = cls or cml.DistributedError
    try:
        fn()
    except cml.DistributedError as exc:
        err = exc
    else:
        err = None
    ok = isinstance(err, cls) and (match is None or match in str(err))
    mpi_assert(ok, f"expected {cls.__name__} matching {match!r}, got {err!r}")
    return err
