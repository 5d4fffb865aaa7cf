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

import math
import os
import time
from typing import Any

import numpy as np

from ..errors import CollectiveTimeoutError
from . import packing, stall, tree
from .guard import Context, Failure, Outcome, SerialContext, agreed, raise_failures, rank_failure

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
    "collective_timeout",
    "stall_warning",
    "set_call",
    "serial_call_check",
]

_state: dict[str, Any] = {"comm": None, "parent": None, "timeout": None, "seq": 0,
                          "broken": None, "sends": [], "stall": stall.DEFAULT_STALL, "call": None}

# What this rank sent and received in clusterml's collectives (SPEC section 1).
_stats = {"enabled": False, "bytes": 0, "received": 0, "calls": 0}

TIMEOUT_ENV = "CLUSTERML_COLLECTIVE_TIMEOUT"


def enable_stats(on: bool = True) -> None:
    """Count the bytes this rank sends and receives in clusterml's collectives."""
    _stats["enabled"] = bool(on)


def reset_stats() -> None:
    """Zero the counters of :func:`stats`."""
    _stats["bytes"] = _stats["received"] = _stats["calls"] = 0


def stats() -> dict:
    """This rank's ``{"bytes": sent, "received": bytes, "calls": collectives}`` since :func:`reset_stats`.

    Counted only while :func:`enable_stats` is on; payload bytes of
    clusterml's own collectives (not the user's MPI traffic).
    """
    return {"bytes": _stats["bytes"], "received": _stats["received"], "calls": _stats["calls"]}


def _mpi():
    from mpi4py import MPI

    return MPI


def init(comm=None, timeout=None, *, defer_blas: bool = False, stall_warning=None):
    """Initialise clusterml's runtime on this process (collective).

    Idempotent: calling it again with the same (or no) communicator does
    nothing (but sets ``timeout`` if given).  Every rank of ``comm`` must
    call it, since the communicator is duplicated.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm, optional
        The ranks that take part in distributed computations; defaults to
        ``MPI.COMM_WORLD``.  Any intracommunicator works (a split of the
        world, for instance).
    timeout : float, optional
        Seconds a rank may wait in one of clusterml's collectives before it
        raises :class:`~clusterml.errors.CollectiveTimeoutError` naming the
        ranks that never arrived.  Default: the environment variable
        ``CLUSTERML_COLLECTIVE_TIMEOUT``, else no limit; 0 or a negative
        value: no limit.  After a timeout the communicator is unusable
        (messages of the abandoned collective are still in flight): end
        the job, or ``fini()`` and ``init()`` again on every rank.
    defer_blas : bool
        Decide each rank's BLAS thread count now (that needs a collective)
        but leave applying it to :func:`apply_blas_threads`: applying it
        imports SciPy's BLAS first (~0.4 s), which an engine does in its
        background warm-up instead of while it registers.
    stall_warning : float, optional
        Seconds a rank waits in one collective before it writes one warning
        to stderr naming the ranks it waits for and the likely causes (and
        tells them, so that a rank computing with ``distributed=False``
        says so).  Default: the environment variable
        ``CLUSTERML_STALL_WARNING``, else 60; 0 or a negative value: never.

    Returns
    -------
    mpi4py.MPI.Intracomm
        clusterml's private duplicate of ``comm``.
    """
    MPI = _mpi()
    parent = MPI.COMM_WORLD if comm is None else comm
    if timeout is not None or _state["comm"] is None:
        _state["timeout"] = _parse_timeout(timeout)
    if stall_warning is not None or _state["comm"] is None:
        _state["stall"] = stall.parse_seconds(stall_warning, stall.STALL_ENV, stall.DEFAULT_STALL)
    if not isinstance(parent, MPI.Intracomm) or parent == MPI.COMM_NULL:
        raise TypeError(f"clusterml.init needs an MPI intracommunicator, got {parent!r}")
    if _state["comm"] is not None:
        if comm is None or _state["parent"] is parent:
            return _state["comm"]
        fini()
    _state["comm"] = parent.Dup()
    _state["parent"] = parent
    # Collectives are numbered (message tags); a fresh communicator starts above every
    # number any rank used before, so a message of an abandoned collective never matches.
    _state["seq"] = _state["comm"].allreduce(_state.get("high", 0), op=MPI.MAX)
    _state["tags"] = max(1, _state["comm"].Get_attr(MPI.TAG_UB) // 4 - 1)
    _state["broken"], _state["sends"] = None, []
    _state["threads"] = _limit_blas_threads(_state["comm"])
    if not defer_blas:
        apply_blas_threads()
    return _state["comm"]


def _parse_timeout(timeout) -> float | None:
    return stall.parse_seconds(timeout, TIMEOUT_ENV)


def collective_timeout() -> float | None:
    """Seconds a rank may wait in a clusterml collective (None: no limit)."""
    return _state["timeout"]


def stall_warning() -> float | None:
    """Seconds a rank waits in one collective before it warns on stderr (None: never)."""
    return _state["stall"]


def set_call(describe) -> None:
    """Name the distributed call this rank is in, for the notices of stall warnings.

    Parameters
    ----------
    describe : callable or None
        Returns the call's ``{name: value repr}`` (called only when a
        collective stalls); None when the call ended.
    """
    _state["call"] = describe


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
        if _state["broken"] is not None:
            # Messages of the abandoned collective are still queued: freeing would let MPI
            # reuse the communicator's context for the next one and deliver them there.
            _state.setdefault("abandoned", []).append(comm)
        elif not MPI.Is_finalized():
            comm.Free()
        _state["broken"] = None


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
        "vendor": "{} {}".format(MPI.get_vendor()[0], ".".join(map(str, MPI.get_vendor()[1]))),
        "standard": "{}.{}".format(*MPI.Get_version()),
        "world_size": MPI.COMM_WORLD.Get_size(),
        "world_rank": MPI.COMM_WORLD.Get_rank(),
        "processor": MPI.Get_processor_name(),
    }


# --------------------------------------------------------------------------
# Collectives: a binomial tree in rank order, over point-to-point messages (the geometry and
# the messages are in tree.py).  Each rank sends and receives at most ceil(log2 p) + 1
# messages per collective; failures ride in the same messages, so agreeing on errors costs
# nothing more.  Every wait polls non-blocking MPI calls against the deadline, so that a rank
# that never arrives becomes CollectiveTimeoutError naming it.


class MPIContext(Context):
    """All ranks of clusterml's communicator."""

    distributed = True

    def __init__(self, comm):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()

    # -- waits --------------------------------------------------------------
    def _begin(self, step: str) -> None:
        if _state["broken"] is not None:
            raise agreed(CollectiveTimeoutError(
                f"step '{step}': clusterml's communicator is unusable after an earlier "
                f"collective was abandoned ({_state['broken']}); end the job, or call fini() and "
                f"init() on every rank"))
        _state["seq"] += 1
        _state["high"] = _state["seq"]
        self._tag = (_state["seq"] % _state["tags"]) * 4
        self._t0 = time.monotonic()
        self._step = step
        self._timeout = _state["timeout"]
        self._stall_at = self._t0 + _state["stall"] if _state["stall"] else math.inf
        if _stats["enabled"]:
            _stats["calls"] += 1
        _state["sends"] = [(r, b) for r, b in _state["sends"] if not r.Test()]

    def _deadline(self, levels: float) -> float:
        if self._timeout is None:
            return math.inf
        grace = min(1.0, 0.05 + 0.05 * self._timeout)
        return self._t0 + self._timeout + grace * levels

    def _recv(self, source: int, tag: int, deadline: float, awaited=None):
        """Receive one message as a uint8 array; None if the deadline passed first.

        ``awaited``: the ``(rank, lo, hi)`` the message would come from (for
        the stall warning; None: the outcome from the parent).  The sender's
        rank is left in ``self._source``.
        """
        MPI = _mpi()
        status = MPI.Status()
        spins = 0
        try:
            while True:
                msg = self.comm.Improbe(source=source, tag=tag, status=status)
                if msg is not None:
                    buf = np.empty(status.Get_count(MPI.BYTE), dtype=np.uint8)
                    msg.Recv([buf, MPI.BYTE])
                    self._source = status.Get_source()
                    if _stats["enabled"]:
                        _stats["received"] += buf.nbytes
                    return buf
                now = time.monotonic()
                if now > deadline:
                    return None
                if now > self._stall_at:
                    self._stalled(now, awaited)
                spins += 1
                if spins == 1:
                    start = now
                elif now - start < tree.SPIN_SECONDS[0]:
                    pass               # busy-poll, as MPICH's blocking calls do
                elif now - start < tree.SPIN_SECONDS[1]:
                    os.sched_yield()   # a polite busy-poll
                else:                  # a long wait: leave the core to others
                    time.sleep(min(1e-3, 1e-5 * spins))
        except BaseException:  # Ctrl-C / the facade's interrupt: this collective is abandoned
            _state["broken"] = f"a collective was interrupted ({self._step})"
            raise

    def _stalled(self, now: float, awaited) -> None:
        """Past the stall time: warn once, tell the awaited ranks; later, read their replies."""
        tag = self._tag + tree.NOTICE
        if self._stall_at > 0:   # the first time in this collective
            self._stall_at = 0.0
            stall.write(stall.waiting_message(self.rank, self._step, now - self._t0, awaited,
                                              tree.parent(self.rank), self._timeout))
            try:   # a warning never breaks the collective it is about
                call = _state["call"]() if _state["call"] else None
            except Exception:
                call = None
            notice = {"kind": "notice", "from": self.rank, "step": self._step,
                      "waited": now - self._t0, "call": call}
            for r in sorted({a[0] for a in awaited or ()}):
                self._send(packing.encode_pickle(notice), r, tag)
            return
        for reply in _notices(self.comm, tag, "reply"):
            stall.write(stall.reply_message(self.rank, reply["from"], reply["call"], reply["same"]))

    def _send(self, buf: np.ndarray, dest: int, tag: int) -> None:
        MPI = _mpi()
        _state["sends"].append((self.comm.Isend([buf, MPI.BYTE], dest=dest, tag=tag), buf))
        if _stats["enabled"]:
            _stats["bytes"] += buf.nbytes

    # -- the two primitives ----------------------------------------------------
    def _tree(self, outcome: Outcome, merge, step: str, packed: bool):
        self._begin(step)
        for child, dist in tree.children(self.rank, self.size):
            buf = self._recv(child, self._tag + tree.UP, self._deadline(math.log2(dist)),
                             [(child, child, min(child + dist, self.size))])
            try:
                if buf is None:
                    part = Outcome(missing=[(child, child, min(child + dist, self.size))])
                elif buf[0] == tree.FAILED:
                    part = packing.decode(buf[1:])
                else:
                    part = Outcome(packing.decode(buf[1:]))
            except Exception as exc:
                part = Outcome(failures=[rank_failure(self.rank, exc, step)])
            outcome = outcome.combine(part, merge, self.rank)
        try:
            message = tree.encode(outcome, packed)
        except Exception as exc:
            message = tree.encode(Outcome(failures=[rank_failure(self.rank, exc, step)]), False)
        parent = tree.parent(self.rank)
        if parent is not None:
            self._send(message, parent, self._tag + tree.UP)
            return self._down(None, step)
        return self._down(message, step)

    def _exchange(self, outcome: Outcome, step: str) -> list:
        """Send payload ``r`` of ``outcome.value`` to rank ``r``; every rank's, in rank order.

        A failed rank sends its failure to every rank instead, so every rank
        raises the same error; a sender not heard from by the deadline is
        named by CollectiveTimeoutError.
        """
        self._begin(step)
        tag = self._tag + tree.SWAP
        bufs = None
        if outcome.ok:
            try:
                bufs = [tree.encode(Outcome(p), True) for p in outcome.value]
            except Exception as exc:
                outcome = Outcome(failures=[rank_failure(self.rank, exc, step)])
        if bufs is None:
            bufs = [tree.encode(outcome, False)] * self.size
        for k in range(1, self.size):   # rank r sends to r+1 first: the receivers differ
            dest = (self.rank + k) % self.size
            self._send(bufs[dest], dest, tag)
        got = {self.rank: bufs[self.rank]}
        deadline = self._deadline(1)
        while len(got) < self.size:
            pending = [(r, r, r + 1) for r in range(self.size) if r not in got]
            buf = self._recv(_mpi().ANY_SOURCE, tag, deadline, pending)
            if buf is None:
                _state["broken"] = CollectiveTimeoutError.describe(pending, step, self._timeout)
                raise agreed(CollectiveTimeoutError.naming(pending, step, self._timeout))
            got[self._source] = buf
        failures = []
        for r in range(self.size):
            if got[r][0] == tree.FAILED:
                failures += packing.decode(got[r][1:]).failures
        raise_failures(failures, step)
        return [packing.decode(got[r][1:]) for r in range(self.size)]

    def _bcast0(self, outcome: Outcome | None, step: str):
        self._begin(step)
        return self._down(None if outcome is None else tree.encode(outcome, False), step)

    def _down(self, verdict: np.ndarray | None, step: str):
        """Forward rank 0's verdict down the tree; decode it and raise a failure."""
        tag = self._tag + tree.DOWN
        if verdict is None:
            MPI = _mpi()
            # deeper ranks wait longer, so a verdict of "timed out" can reach them first
            levels = math.log2(max(self.size, 1)) + 2 + bin(self.rank).count("1")
            verdict = self._recv(MPI.ANY_SOURCE, tag, self._deadline(levels))
            if verdict is None:  # no word from above: the parent stands for what is missing
                parent = tree.parent(self.rank)
                verdict = tree.encode(Outcome(missing=[(parent, parent, parent + 1)]), False)
        for child, _ in reversed(tree.children(self.rank, self.size)):
            self._send(verdict, child, tag)
        # decode a copy: the verdict's buffer may still be in flight to the children
        if verdict[0] == tree.VALUE:
            return packing.decode(verdict[1:].copy())
        outcome = packing.decode(verdict[1:])
        if outcome.missing and self.rank == 0:
            # ranks behind a missing one wait on it: tell them directly
            for _, lo, hi in outcome.missing:
                for r in range(lo, hi):
                    self._send(verdict, r, tag)
        if outcome.missing:
            _state["broken"] = CollectiveTimeoutError.describe(outcome.missing, step, self._timeout)
            raise agreed(CollectiveTimeoutError.naming(outcome.missing, step, self._timeout))
        raise_failures(outcome.failures, step)


def _notices(comm, tag: int, kind: str) -> list:
    """The stall notices (or replies) waiting to be received on ``tag``."""
    MPI = _mpi()
    status, out = MPI.Status(), []
    while (msg := comm.Improbe(source=MPI.ANY_SOURCE, tag=tag, status=status)) is not None:
        buf = np.empty(status.Get_count(MPI.BYTE), dtype=np.uint8)
        msg.Recv([buf, MPI.BYTE])
        item = packing.decode(buf)
        if isinstance(item, dict) and item.get("kind") == kind:
            out.append(item)
    return out


def serial_call_check(describe) -> None:
    """On a rank computing with ``distributed=False``: say so if the others wait for it.

    An ``Iprobe`` (two when nothing is there) for the stall notices of the
    collective this rank would enter next (see :mod:`clusterml.spmd.stall`); when there are some, write
    what this rank is doing to stderr and reply to the waiting ranks.  Never
    an error (this rank may join them later); does nothing before
    :func:`init` or on one rank.

    Parameters
    ----------
    describe : callable
        Returns this call's ``{name: value repr}`` as its distributed twin
        would describe it.
    """
    comm = _state["comm"]
    if comm is None or _state["broken"] is not None or comm.Get_size() == 1:
        return
    tag = ((_state["seq"] + 1) % _state["tags"]) * 4 + tree.NOTICE
    # twice: MPICH's first probe after a long pause may only move a waiting message in
    notices = _notices(comm, tag, "notice") or _notices(comm, tag, "notice")
    if not notices:
        return
    try:   # a warning never replaces the call's own outcome
        desc, rank = describe(), comm.Get_rank()
    except Exception:
        return
    stall.write(stall.serial_message(rank, desc, notices))
    MPI = _mpi()
    for n in notices:
        reply = packing.encode_pickle({"kind": "reply", "from": rank, "call": desc,
                                       "same": n.get("call") == desc})
        _state["sends"].append((comm.Isend([reply, MPI.BYTE], dest=n["from"], tag=tag), reply))


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
