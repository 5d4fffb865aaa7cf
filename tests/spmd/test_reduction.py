"""Reductions in O(log p) (issue 15): bytes per rank, calls, identical bits, a fixed order."""

import math

import numpy as np
from mpihelpers import mpi_allclose, mpi_assert, my_block, rank, same_on_every_rank, size, world

import clusterml as cml
from clusterml.kernels import covariance as cov_k
from clusterml.spmd import comm, packing

X = np.random.default_rng(21).normal(size=(200, 32)) * 1e3 + 1e6


def test_bytes_received_per_rank_are_logarithmic():
    ctx = comm.context(True)
    mine = my_block(X)
    summary = packing.encode(cov_k.partial(X[:2])).nbytes       # the same size on every rank
    comm.enable_stats(True)
    comm.reset_stats()
    try:
        total = ctx.fold(cov_k.partial, cov_k.merge, mine, step="covariance")
        st = comm.stats()
    finally:
        comm.enable_stats(False)
    bound = (math.ceil(math.log2(size())) + 1) * (summary + 1) if size() > 1 else 0
    mpi_assert(st["calls"] == 1, f"calls {st}")
    mpi_assert(st["received"] <= bound, f"received {st['received']} > {bound} bytes")
    mpi_assert(st["bytes"] <= bound, f"sent {st['bytes']} > {bound} bytes")
    same_on_every_rank((total.n, total.mean, total.cp), "folded cross products")
    mpi_allclose(total.cp / (total.n - 1), np.cov(X.T), rtol=1e-9, atol=1e-6, what="covariance")


def test_fold_order_is_fixed_and_in_rank_order():
    ctx = comm.context(True)
    # string concatenation is associative but not commutative: shows the rank order
    out = ctx.fold(lambda: str(rank()) + ",", lambda a, b: a + b, step="order")
    mpi_assert(out == "".join(f"{r}," for r in range(size())), out)
    # a non-associative merge shows the bracketing: fixed for a given p, the same everywhere
    first = ctx.fold(lambda: np.float64(1.0 + rank() * 1e-16), lambda a, b: (a + b) * 0.5, step="avg")
    again = ctx.fold(lambda: np.float64(1.0 + rank() * 1e-16), lambda a, b: (a + b) * 0.5, step="avg")
    same_on_every_rank(first, "bracketing")
    mpi_assert(first == again, "bracketing changed between calls")


def test_other_collectives_keep_their_meaning():
    ctx = comm.context(True)
    mpi_assert(ctx.allgather(lambda: rank() * 2) == [2 * r for r in range(size())], "allgather")
    mpi_assert(ctx.bcast_from(0, lambda: "zero") == "zero", "bcast_from 0")
    last = size() - 1
    mpi_assert(ctx.bcast_from(last, lambda: rank()) == last, "bcast_from last")
    mpi_assert(ctx.local(lambda: rank()) == rank(), "local keeps the value on the rank")
    res = ctx.sum(lambda: (np.ones(3), np.array([rank()])), step="sum")
    mpi_assert(np.array_equal(res[0], np.full(3, size())) and res[1][0] == sum(range(size())), "sum")
    world().Barrier()


def test_alltoall_delivers_payload_r_to_rank_r():
    ctx = comm.context(True)
    comm.enable_stats(True)
    comm.reset_stats()
    try:
        # rank s sends (s, r) rows to rank r; packed arrays and pickled values alike
        got = ctx.alltoall(lambda: [(np.full((r + 1, 2), rank(), dtype=np.float32),
                                     np.arange(rank())) for r in range(size())], step="swap")
        objs = ctx.alltoall(lambda: [f"{rank()}->{r}" for r in range(size())], step="swap objects")
        st = comm.stats()
    finally:
        comm.enable_stats(False)
    ok = len(got) == size() and all(
        a.dtype == np.float32 and a.shape == (rank() + 1, 2) and (a == s).all()
        and np.array_equal(b, np.arange(s)) for s, (a, b) in enumerate(got))
    mpi_assert(ok, f"received {got}")
    mpi_assert(objs == [f"{s}->{rank()}" for s in range(size())], f"received {objs}")
    mpi_assert(st["calls"] == 2, f"calls {st}")


def test_alltoall_failure_raises_the_same_error_everywhere():
    from mpihelpers import expect_distributed_error

    ctx = comm.context(True)
    odd = size() - 1

    def payloads():
        if rank() == odd:
            raise ValueError("no payloads here")
        return [None] * size()

    err = expect_distributed_error(lambda: ctx.alltoall(payloads, step="swap"), "no payloads here",
                                   cls=cml.ComputeError)
    mpi_assert(err.ranks == [odd], f"{err.ranks}")
    same_on_every_rank(str(err), "error text")
    # one payload too few: a clear error on every rank, not a hang
    expect_distributed_error(lambda: ctx.alltoall(lambda: [0] * (size() - (rank() == 0))),
                             "one payload per rank")
    mpi_assert(ctx.alltoall(lambda: list(range(size()))) == [rank()] * size(), "usable after")
