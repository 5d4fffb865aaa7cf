"""The collective deadline (issue 15): a rank that never arrives becomes CollectiveTimeoutError.

One rank skips a distributed call; every other rank must raise CollectiveTimeoutError naming
it, shortly after the timeout.  A timed-out communicator is unusable, so each case ends with
``fini()`` + ``init()`` on every rank (the skipping rank goes there at once), after which
computations work again.
"""

import time

import numpy as np
import pytest
from mpihelpers import mpi_assert, my_block, rank, same_on_every_rank, size, world

import clusterml as cml
from clusterml.spmd import comm

TIMEOUT = 1.0
X = np.random.default_rng(8).normal(size=(90, 3))


def restart():
    cml.fini()
    cml.init(timeout=0)          # back to no limit for the rest of the suite


def absent_rank_case(absent: int):
    cml.init(timeout=TIMEOUT)
    err, took = None, 0.0
    if rank() != absent:
        t0 = time.perf_counter()
        try:
            cml.covariance(distributed=True).compute(my_block(X))
        except cml.CollectiveTimeoutError as exc:
            err = exc
        took = time.perf_counter() - t0
    # after a timeout the communicator refuses further collectives at once
    refused = None
    if err is not None:
        try:
            cml.low_order_moments(distributed=True).compute(my_block(X))
        except cml.CollectiveTimeoutError as exc:
            refused = exc
    restart()
    ok, why = True, ""
    if rank() != absent:
        ok = (err is not None and err.ranks == [absent] and f"rank {absent} never arrived" in str(err)
              # a rank may hear the verdict from one that entered a little earlier
              and TIMEOUT - 0.25 <= took < TIMEOUT + 3.0
              and refused is not None and "unusable" in str(refused))
        why = f"got {err!r} after {took:.2f} s, then {refused!r}"
    mpi_assert(ok, why)
    res = cml.covariance(distributed=True).compute(my_block(X))
    same_on_every_rank(res, "covariance after restart")
    mpi_assert(np.allclose(res.covariance, np.cov(X.T)), "covariance after restart")


def test_last_rank_never_arrives():
    if size() == 1:
        # alone: nobody can be missing; the setting only has to leave calls working
        cml.init(timeout=TIMEOUT)
        cml.covariance(distributed=True).compute(X)
        restart()
        return
    absent_rank_case(size() - 1)


def test_rank_zero_never_arrives():
    if size() == 1:
        return test_last_rank_never_arrives()
    absent_rank_case(0)


def test_no_timeout_when_everyone_arrives_late_but_within_it():
    cml.init(timeout=5.0)
    try:
        if rank() == size() - 1:
            time.sleep(0.3)
        res = cml.covariance(distributed=True).compute(my_block(X))
    finally:
        cml.init(timeout=0)
    same_on_every_rank(res, "covariance with a deadline")


def test_timeout_setting(monkeypatch):
    monkeypatch.setenv(comm.TIMEOUT_ENV, "2.5")
    assert comm._parse_timeout(None) == 2.5
    assert comm._parse_timeout(0) is None and comm._parse_timeout(float("inf")) is None
    monkeypatch.setenv(comm.TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match="CLUSTERML_COLLECTIVE_TIMEOUT"):
        comm._parse_timeout(None)
    cml.init(timeout=3)
    assert comm.collective_timeout() == 3.0
    cml.init(timeout=0)
    assert comm.collective_timeout() is None
    world().Barrier()


def test_rank_that_never_reaches_an_exchange():
    """The row exchanges (dbscan's) are bounded by the deadline too."""
    if size() == 1:
        return test_last_rank_never_arrives()
    absent = 1
    cml.init(timeout=TIMEOUT)
    err, took = None, 0.0
    if rank() != absent:
        t0 = time.perf_counter()
        try:
            comm.context(True).alltoall(lambda: [np.ones(3)] * size(), step="rows to slabs")
        except cml.CollectiveTimeoutError as exc:
            err = exc
        took = time.perf_counter() - t0
    restart()
    ok, why = True, ""
    if rank() != absent:
        ok = (err is not None and err.ranks == [absent] and "rows to slabs" in str(err)
              and f"rank {absent} never arrived" in str(err) and TIMEOUT - 0.25 <= took < TIMEOUT + 3.0)
        why = f"got {err!r} after {took:.2f} s"
    mpi_assert(ok, why)
    X2 = np.random.default_rng(2).normal(size=(60, 2))
    res = cml.dbscan(0.5, 4, distributed=True).compute(my_block(X2))
    same_on_every_rank(res.nClusters, "dbscan after restart")
