"""Parameters agreed in the first collective of every distributed compute() (issue 15).

Each case is a call that differs on one rank (the last), as a careless script makes it: the
same ParameterError, with the same message naming the ranks and the values, must come out on
every rank in under a second -- never a hang, never a raw AttributeError / IndexError.  In a
world of one rank there is nobody to disagree with: the call must then simply work.
"""

import time

import numpy as np
import pytest
from mpihelpers import mpi_assert, my_block, rank, same_on_every_rank, size, world

import clusterml as cml

WITHIN = 1.0  # seconds, the bound of the issue
X = np.random.default_rng(5).normal(size=(120, 3))
LABELS = np.random.default_rng(6).integers(0, 3, size=(120, 1)).astype(float)
COUNTS = np.random.default_rng(7).integers(0, 5, size=(120, 4)).astype(float)


def odd() -> bool:
    """True on the rank that makes the different call."""
    return size() > 1 and rank() == size() - 1


def same_error_everywhere(fn, cls=cml.ParameterError, match=()):
    """Run ``fn`` on every rank: each raises ``cls`` with one message, within WITHIN seconds."""
    world().Barrier()   # time the call, not how far apart the ranks reached it
    t0 = time.perf_counter()
    try:
        fn()
    except cml.DistributedError as exc:
        err = exc
    else:
        err = None
    took = time.perf_counter() - t0
    msgs = world().allgather(str(err))
    ok = isinstance(err, cls) and all(m in str(err) for m in match)
    mpi_assert(ok, f"expected {cls.__name__} matching {match!r}, got {err!r}")
    mpi_assert(len(set(msgs)) == 1, f"messages differ between ranks: {msgs}")
    mpi_assert(took < WITHIN, f"took {took:.2f} s")
    return err


def mismatch(fn, match):
    """Under MPI: the odd rank's value makes a ParameterError; alone: the call works."""
    if size() == 1:
        fn()
        return None
    err = same_error_everywhere(fn, match=match)
    mpi_assert(err.ranks == [size() - 1], f"ranks {err.ranks}")
    return err


CASES = {
    "maxIterations": (lambda: cml.kmeans(2, 5 if odd() else 10, distributed=True)
                      .compute(my_block(X), X[:2]),
                      ("maxIterations: 10 on rank", "5 on rank")),
    "kmeans_init method": (lambda: cml.kmeans_init(2, method="randomDense" if odd() else "plusPlusDense",
                                                   distributed=True).compute(my_block(X)),
                           ("method: 'plusPlusDense'", "'randomDense' on rank")),
    "pca method": (lambda: cml.pca(method="svdDense" if odd() else "correlationDense",
                                   distributed=True).compute(my_block(X)),
                   ("method:",)),
    "nClasses": (lambda: cml.multinomial_naive_bayes_training(4 if odd() else 3, distributed=True)
                 .compute(my_block(COUNTS), my_block(LABELS)),
                 ("nClasses: 3 on rank", "4 on rank")),
    "algorithm": (lambda: (cml.pca if odd() else cml.covariance)(distributed=True).compute(my_block(X)),
                  ("algorithm: covariance on rank", "pca on rank")),
    "missing model": (lambda: cml.kmeans(2, 3, distributed=True)
                      .compute(my_block(X), None if odd() else X[:2]),
                      ("input inputCentroids: table on rank", "missing on rank")),
    "data given as a file on one rank": (lambda: cml.covariance(distributed=True)
                                         .compute("/nonexistent/x{}.csv" if odd() else my_block(X)),
                                         ("input data: table on rank", "file on rank")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_differing_parameter_raises_one_error(case):
    fn, match = CASES[case]
    mismatch(fn, match)


def test_constructor_error_on_one_rank_is_held_until_compute():
    def call():
        algo = cml.kmeans_init(0 if odd() else 2, distributed=True)   # no rank leaves here
        return algo.compute(my_block(X))

    if size() == 1:
        call()
        return
    err = same_error_everywhere(call, match=("nClusters=0 must be >= 1", f"rank {size() - 1}"))
    mpi_assert(err.ranks == [size() - 1], f"ranks {err.ranks}")


def test_constructor_error_everywhere_and_serial_use():
    same_error_everywhere(lambda: cml.covariance(outputMatrixType="nope", distributed=True)
                          .compute(my_block(X)), match=("outputMatrixType='nope'",))
    with pytest.raises(cml.ParameterError, match="outputMatrixType"):
        cml.covariance(outputMatrixType="nope")           # one process: at once, as before


def test_missing_input_and_extra_input_on_one_rank():
    args = () if odd() else (my_block(X),)
    mismatch(lambda: cml.covariance(distributed=True).compute(*args), ("missing input(s) data",))
    extra = (my_block(X),) if odd() else ()
    mismatch(lambda: cml.low_order_moments(distributed=True).compute(my_block(X), *extra),
             ("takes 1 input(s)",))


def test_agreed_call_still_gives_the_same_bits_everywhere():
    # the agreement must not disturb a good call, and equal values of other types agree
    n = np.int64(2) if odd() else 2
    res = cml.kmeans_init(n, method="plusPlusDense", distributed=True).compute(my_block(X))
    same_on_every_rank(res, "kmeans_init after agreement")
    ref = cml.kmeans_init(2, method="plusPlusDense").compute(X)
    mpi_assert(np.array_equal(res.centroids, ref.centroids), "centroids differ from one process")
