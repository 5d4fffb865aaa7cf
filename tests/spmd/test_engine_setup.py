"""The engine-side setup the notebook facade runs: it answers at once, loads in the background."""

from mpihelpers import mpi_assert
from threadpoolctl import threadpool_info

from clusterml.spmd import comm, remote


def _blas_threads() -> set:
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


def test_setup_answers_and_every_call_waits_for_the_warm_up():
    info = remote.setup()
    mpi_assert(info["rank"] == comm.my_procid() and info["size"] == comm.num_procs(), "engine info")
    mpi_assert(remote.ready(timeout=300), "the background warm-up finished")
    mpi_assert(remote.start_warm_up() is remote.start_warm_up(), "one warm-up per process")
    reply = remote.run_call("covariance", {}, {"data": "/nonexistent/part{}.npy"}, "c0")
    mpi_assert(reply["status"] == "error" and reply["failure"].etype == "InputError", str(reply))
    mpi_assert(reply["failure"].error_class().__name__ == "InputError", "the class resolves")


def test_blas_limit_decided_at_init_applied_later(monkeypatch):
    monkeypatch.setenv("CLUSTERML_THREADS", "2")
    comm.fini()
    try:
        comm.init(defer_blas=True)
        mpi_assert(comm.blas_threads() == 2, "init decided the count")
        comm.apply_blas_threads()
        mpi_assert(_blas_threads() == {2}, f"BLAS limited: {threadpool_info()}")
    finally:
        monkeypatch.setenv("CLUSTERML_THREADS", "1")
        comm.fini()
        comm.init()
    mpi_assert(_blas_threads() == {1}, "restored")
