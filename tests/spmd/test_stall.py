"""A rank that alone computes with ``distributed=False`` while the others wait (issue 15).

Not an error by itself (the rank may join the others afterwards), so the waiting ranks warn
on stderr after the stall time, naming the rank and the likely causes; the rank computing
serially finds their notice and says so on its stderr (and the waiting rank reports its
reply); the collective timeout then turns the wait into CollectiveTimeoutError naming it.
"""

import time

import numpy as np
from mpihelpers import mpi_allclose, mpi_assert, rank, same_on_every_rank, size, world

import clusterml as cml
from clusterml.spmd import comm, stall

STALL, TIMEOUT = 0.3, 2.0
SERIAL = 1
X = np.random.default_rng(5).normal(size=(80, 3))


def mine():
    return X[rank()::size()]   # every rank has rows (the serial rank computes on its own)


def settings(timeout=TIMEOUT, stall_warning=STALL):
    cml.init(timeout=timeout, stall_warning=stall_warning)


def restart():
    cml.fini()
    cml.init(timeout=0, stall_warning=stall.DEFAULT_STALL)


def test_a_serial_rank_is_warned_about_then_timed_out(capfd):
    if size() == 1:
        settings()
        res = cml.covariance(distributed=True).compute(X)
        mpi_allclose(res.covariance, np.cov(X.T), what="alone")
        restart()
        return
    settings()
    cml.covariance(distributed=True).compute(mine())   # kernels loaded: the ranks start together
    world().Barrier()
    err, res = None, None
    try:
        if rank() == SERIAL:
            time.sleep(2 * STALL)      # gets there after the others have warned
            res = cml.covariance().compute(mine())
        else:
            res = cml.covariance(distributed=True).compute(mine())
    except cml.CollectiveTimeoutError as exc:
        err = exc
    restart()
    text = capfd.readouterr().err
    if rank() == SERIAL:
        ok = (err is None and np.allclose(res.covariance, np.cov(mine().T))
              and "computing covariance with distributed=False while rank 0 has waited" in text
              and "in the same call with distributed=True" in text)
    else:
        ok = (err is not None and err.ranks == [SERIAL] and res is None
              and f"clusterml rank {rank()}: waited" in text)
        if rank() == 0:
            ok = ok and (f"for rank {SERIAL}, which has not arrived" in text
                         and "distributed=False" in text
                         and f"rank {SERIAL} replied that it is computing covariance with "
                         f"distributed=False (the same call)" in text)
    mpi_assert(ok, f"error {err!r}, stderr {text!r}")


def test_serial_then_distributed_is_no_error(capfd):
    """A correct script: each rank runs the call serially, then distributed; one rank is late."""
    settings(timeout=30)
    late = SERIAL if size() > 1 else 0
    if rank() == late:
        time.sleep(2 * STALL)
    local = cml.covariance().compute(mine())
    res = cml.covariance(distributed=True).compute(mine())
    restart()
    mpi_allclose(local.covariance, np.cov(mine().T), what="serial")
    mpi_allclose(res.covariance, np.cov(X.T), what="distributed")
    same_on_every_rank(res, "distributed covariance")
    capfd.readouterr()


def test_stall_setting(monkeypatch):
    monkeypatch.setenv(stall.STALL_ENV, "7")
    assert stall.parse_seconds(None, stall.STALL_ENV, 60.0) == 7.0
    monkeypatch.setenv(stall.STALL_ENV, "")
    assert stall.parse_seconds(None, stall.STALL_ENV, 60.0) == 60.0
    assert stall.parse_seconds(0, stall.STALL_ENV, 60.0) is None
    cml.init(stall_warning=2)
    assert comm.stall_warning() == 2.0
    cml.init(stall_warning=stall.DEFAULT_STALL)
    mpi_assert(comm.stall_warning() == stall.DEFAULT_STALL)
