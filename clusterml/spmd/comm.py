"""The SPMD runtime: the only module of clusterml that imports mpi4py.

It keeps one communicator (a duplicate of ``MPI.COMM_WORLD`` or of the one
given to :func:`init`, so clusterml's messages never mix with the user's) and
offers algorithms a :class:`Context` with a handful of *guarded* collectives.

Guarded means: the local work of a step is passed in as a function; if it
raises on any rank, that rank still takes part in the collective, carrying its
failure instead of a value, and then every rank raises the same
:class:`~clusterml.errors.DistributedError` naming the failing ranks.  As long
as an algorithm does all of its local work inside guarded steps, an exception
on one rank can never leave the others waiting in a collective.

Reductions are done by gathering the (small) per-rank summaries to every rank
and folding them in rank order, so every rank computes the same bits whatever
reduction tree the MPI library would have picked, and only O(features**2)
values cross the network.

``mpi4py`` is imported lazily: ``import clusterml`` on a notebook client never
initialises MPI.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Sequence

from ..errors import ComputeError, RankFailure

__all__ = [
    "init",
    "apply_blas_threads",
    "fini",
    "my_procid",
    "num_procs",
    "daalinit",
    "daalfini",
    "is_initialized",
    "blas_threads",
    "get_comm",
    "context",
    "Context",
    "SerialContext",
    "MPIContext",
    "Failure",
    "raise_failures",
    "mpi_info",
    "enable_stats",
    "reset_stats",
    "stats",
]

_state: dict[str, Any] = {"comm": None, "parent": None}

# Bytes this rank contributes to collectives (for benchmarks); off by default
# because measuring means pickling the payload once more.
_stats = {"enabled": False, "bytes": 0, "calls": 0}


def enable_stats(on: bool = True) -> None:
    """Count the bytes this rank contributes to clusterml's collectives."""
    _stats["enabled"] = bool(on)


def reset_stats() -> None:
    _stats["bytes"] = _stats["calls"] = 0


def stats() -> dict:
    """``{"bytes": ..., "calls": ...}`` since the last :func:`reset_stats`."""
    return {"bytes": _stats["bytes"], "calls": _stats["calls"]}


def _count(obj) -> None:
    if _stats["enabled"]:
        import pickle

        _stats["bytes"] += len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        _stats["calls"] += 1


# Fault injection for the reliability tests: "step@rank[:kill][,step@rank...]";
# a guarded step whose name matches raises on that rank ("*" matches any step
# or rank), or, with ":kill", the process SIGKILLs itself there (a crashed rank).
_FAULT_ENV = "CLUSTERML_INJECT_FAULT"


def _mpi():
    from mpi4py import MPI

    return MPI


def init(comm=None, *, defer_blas: bool = False):
    """Initialise clusterml's runtime on this process (collective).

    Idempotent: calling it again with the same (or no) communicator does
    nothing.  Every rank of ``comm`` must call it, since the communicator is
    duplicated.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm, optional
        The ranks that take part in distributed computations; defaults to
        ``MPI.COMM_WORLD``.  Any intracommunicator works (a split of the
        world, for instance).
    defer_blas : bool
        Decide each rank's BLAS thread count now (that needs a collective)
        but leave applying it to :func:`apply_blas_threads`: applying it
        imports SciPy's BLAS first (~0.4 s), which an engine does in its
        background warm-up instead of while it registers.

    Returns
    -------
    mpi4py.MPI.Intracomm
        clusterml's private duplicate of ``comm``.
    """
    MPI = _mpi()
    parent = MPI.COMM_WORLD if comm is None else comm
    if not isinstance(parent, MPI.Intracomm) or parent == MPI.COMM_NULL:
        raise TypeError(f"clusterml.init needs an MPI intracommunicator, got {parent!r}")
    if _state["comm"] is not None:
        if comm is None or _state["parent"] is parent:
            return _state["comm"]
        fini()
    _state["comm"] = parent.Dup()
    _state["parent"] = parent
    _state["threads"] = _limit_blas_threads(_state["comm"])
    if not defer_blas:
        apply_blas_threads()
    return _state["comm"]


_THREAD_VARS = ("CLUSTERML_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _limit_blas_threads(comm) -> int | None:
    """Give each rank its share of this node's cores for BLAS (collective).

    N ranks on a node, each running a BLAS that starts one thread per core,
    oversubscribe the node; OpenBLAS threads then spin against each other (a
    TSQR measured 5x slower on 2 cores).  Unless the user chose a number
    (``CLUSTERML_THREADS``, or ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` /
    ``MKL_NUM_THREADS`` as set by a Slurm ``--cpus-per-task`` template), each
    rank gets ``cores it may run on // ranks on its node``, at least 1.
    Returns the number to set, or None when the user's setting is left alone;
    :func:`apply_blas_threads` sets it.
    """
    MPI = _mpi()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local_ranks = node.Get_size()
    node.Free()
    if os.environ.get("CLUSTERML_THREADS"):
        threads = max(1, int(os.environ["CLUSTERML_THREADS"]))
    elif any(os.environ.get(v) for v in _THREAD_VARS[1:]):
        return None
    else:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
        threads = max(1, cores // local_ranks)
    return threads


def apply_blas_threads() -> None:
    """Limit the BLAS libraries to the thread count :func:`init` chose (if it chose one)."""
    threads = _state.get("threads")
    if threads is None:
        return
    try:
        import scipy.linalg  # noqa: F401  (limits apply to the BLAS libraries already loaded)
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - both are dependencies
        return
    threadpool_limits(threads)


def blas_threads() -> int | None:
    """BLAS threads per rank set by :func:`init` (None: left as the environment says)."""
    return _state.get("threads")


def fini():
    """Release clusterml's communicator (collective).

    Never calls ``MPI_Finalize``: mpi4py owns MPI's lifetime, so an engine can
    go on running algorithms (and ``init`` may be called again) for hours.
    """
    comm = _state["comm"]
    if comm is not None:
        _state["comm"] = None
        _state["parent"] = None
        MPI = _mpi()
        if not MPI.Is_finalized():
            comm.Free()


daalinit = init
daalfini = fini


def is_initialized() -> bool:
    """Return True if :func:`init` has been called (and not undone by :func:`fini`)."""
    return _state["comm"] is not None


def get_comm():
    """Return clusterml's communicator, initialising on first use."""
    if _state["comm"] is None:
        init()
    return _state["comm"]


def my_procid() -> int:
    """Return this process's rank in clusterml's communicator."""
    return get_comm().Get_rank()


def num_procs() -> int:
    """Return the number of ranks in clusterml's communicator."""
    return get_comm().Get_size()


def mpi_info() -> dict:
    """Describe the MPI library mpi4py loaded (for ``clusterml info`` / ``doctor``)."""
    import mpi4py

    MPI = _mpi()
    lib = MPI.Get_library_version().strip().splitlines()
    return {
        "mpi4py": mpi4py.__version__,
        "library": lib[0].strip() if lib else "?",
        "vendor": "%s %s" % (MPI.get_vendor()[0], ".".join(map(str, MPI.get_vendor()[1]))),
        "standard": "%d.%d" % MPI.Get_version(),
        "world_size": MPI.COMM_WORLD.Get_size(),
        "world_rank": MPI.COMM_WORLD.Get_rank(),
        "processor": MPI.Get_processor_name(),
    }


# --------------------------------------------------------------------------
# Guarded steps


#: What a rank contributes to a collective when its local step raised: the one wire
#: format of a rank's exception (:class:`clusterml.errors.RankFailure`).
Failure = RankFailure


def raise_failures(failures: Sequence[Failure], step: str = ""):
    """Raise one DistributedError describing every failure (identically on all ranks)."""
    if not failures:
        return
    failures = sorted(failures, key=lambda f: f.rank)
    classes = {f.error_class() for f in failures}
    cls = classes.pop() if len(classes) == 1 and None not in classes else ComputeError
    lines = []
    for f in failures:
        if f.error_class() is not None:
            lines.append(f"rank {f.rank}: {f.message}")
        else:
            lines.append(f"rank {f.rank}: {f.etype}: {f.message}")
    where = f" in step '{step}'" if step else ""
    ranks = ", ".join(str(f.rank) for f in failures)
    head = f"failed on rank{'s' if len(failures) > 1 else ''} {ranks}{where}"
    msg = head + (": " + lines[0].split(": ", 1)[1] if len(lines) == 1 else ":\n  " + "\n  ".join(lines))
    raise cls(msg, {f.rank: f.cause() for f in failures})


def _injected(step: str, rank: int) -> str | None:
    """The fault injected into ``step`` on ``rank``: None, "raise" or "kill"."""
    spec = os.environ.get(_FAULT_ENV)
    if not spec:
        return None
    for item in spec.split(","):
        name, _, where = item.strip().partition("@")
        where, _, action = where.partition(":")
        if name in (step, "*") and where in (str(rank), "*", ""):
            return action or "raise"
    return None


def _run_local(step: str, rank: int, fn: Callable, args, kwargs):
    try:
        fault = _injected(step, rank)
        if fault == "kill":
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        if fault is not None:
            raise RuntimeError(f"fault injected into step '{step}' ({_FAULT_ENV})")
        return fn(*args, **kwargs), None
    except Exception as exc:  # every rank must reach the collective
        return None, RankFailure.from_exception(exc, rank)


class Context:
    """Collectives an algorithm uses; rank and size of the computation.

    Subclasses implement :meth:`_allgather` (and :meth:`_bcast`); everything
    else is written once on top of them.
    """

    rank: int = 0
    size: int = 1
    distributed: bool = False

    def _allgather(self, obj) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def _bcast(self, obj, root: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def allgather(self, fn: Callable, *args, step: str | None = None, **kwargs) -> list:
        """Run ``fn(*args, **kwargs)`` locally and gather every rank's value, in rank order.

        If ``fn`` raises on any rank, every rank raises the same
        :class:`~clusterml.errors.DistributedError`.
        """
        step = step or getattr(fn, "__name__", "step")
        value, failure = _run_local(step, self.rank, fn, args, kwargs)
        gathered = self._allgather(failure if failure is not None else _Ok(value))
        raise_failures([g for g in gathered if isinstance(g, Failure)], step)
        return [g.value for g in gathered]

    def fold(self, fn: Callable, merge: Callable, *args, step: str | None = None, **kwargs):
        """Gather ``fn``'s per-rank partial results and fold them with ``merge`` in rank order."""
        parts = self.allgather(fn, *args, step=step, **kwargs)
        return functools.reduce(merge, parts)

    def sum(self, fn: Callable, *args, step: str | None = None, **kwargs):
        """Sum ``fn``'s per-rank values (arrays or tuples of arrays) in rank order."""
        return self.fold(fn, _add, *args, step=step, **kwargs)

    def bcast_from(self, root: int, fn: Callable, *args, step: str | None = None, **kwargs):
        """Run ``fn`` on ``root`` only and give its value to every rank (guarded)."""
        step = step or getattr(fn, "__name__", "step")
        if self.rank == root:
            value, failure = _run_local(step, self.rank, fn, args, kwargs)
            payload = failure if failure is not None else _Ok(value)
        else:
            payload = None
        payload = self._bcast(payload, root)
        if isinstance(payload, Failure):
            raise_failures([payload], step)
        return payload.value

    def local(self, fn: Callable, *args, step: str | None = None, **kwargs):
        """Run local work whose value stays on this rank; agree on errors in one collective.

        Only a success/failure marker crosses the network (the value may be a
        rank's whole block of predictions), yet a failure on any rank raises the
        same error on every rank, so nobody is left waiting in a later collective.
        """
        step = step or getattr(fn, "__name__", "step")
        value, failure = _run_local(step, self.rank, fn, args, kwargs)
        gathered = self._allgather(failure if failure is not None else _Ok(None))
        raise_failures([g for g in gathered if isinstance(g, Failure)], step)
        return value

    def check(self, fn: Callable, *args, step: str | None = None, **kwargs) -> None:
        """Run a local validation on every rank; raise everywhere if it failed anywhere."""
        self.allgather(fn, *args, step=step, **kwargs)


class _Ok:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    # A tuple, never the bare value: pickle skips __setstate__ when the state is None,
    # which would leave a step that returns None without a value after a collective.
    def __getstate__(self):
        return (self.value,)

    def __setstate__(self, state):
        (self.value,) = state


def _add(a, b):
    if isinstance(a, tuple):
        return tuple(x + y for x, y in zip(a, b))
    return a + b


class SerialContext(Context):
    """One process, no MPI (``distributed=False``)."""

    def _allgather(self, obj):
        return [obj]

    def _bcast(self, obj, root):
        return obj


class MPIContext(Context):
    """All ranks of clusterml's communicator."""

    distributed = True

    def __init__(self, comm):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()

    def _allgather(self, obj):
        _count(obj)
        return self.comm.allgather(obj)

    def _bcast(self, obj, root):
        if self.rank == root:
            _count(obj)
        return self.comm.bcast(obj, root=root)


class NestedUseError(RuntimeError):
    """A farm task tried to use the cluster (a distributed algorithm, a nested map)."""


#: Set by the farm's task runner while a farm task runs on this engine (one engine, no collective).
_farm_task = {"what": None}


def refuse_in_farm_task(what: str) -> None:
    """Raise :class:`NestedUseError` if a farm task is running here (the other ranks are not in it)."""
    if _farm_task["what"] is not None:
        raise NestedUseError(
            f"{what} inside a farm task ({_farm_task['what']}): farm tasks run one per engine, "
            f"outside the MPI world, so no other rank would take part. Use a non-distributed "
            f"call inside the task (e.g. distributed=False, or scikit-learn/NumPy), or call the "
            f"distributed algorithm from the notebook, not from a task.")


def context(distributed: bool) -> Context:
    """Return the context of a computation: all ranks if ``distributed``, else this process."""
    if distributed:
        refuse_in_farm_task("a distributed algorithm (distributed=True)")
        return MPIContext(get_comm())
    return SerialContext()
