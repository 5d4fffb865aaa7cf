"""Farm tasks seen from the client: their errors, replies, interrupts and dead engines.

Shared by :mod:`clusterml.client.farm` (map, imap), :mod:`clusterml.client.futures`
(submit, map_async) and :mod:`clusterml.client.joblib_backend`: a finished task's
reply becomes its values or a :class:`TaskError` naming the task and engine; a
timeout or Ctrl-C interrupts the engines running the tasks; a dead engine becomes
an :class:`~clusterml.EngineError` (MPI cannot lose a rank).
"""

from __future__ import annotations

import concurrent.futures
import pickle
import signal
import time

from ..errors import ClusterTimeoutError, ComputeError, EngineError, RankFailure

__all__ = ["TaskError"]

_POLL = 0.1
_INTERRUPT_GRACE = 5.0


class TaskError(ComputeError):
    """A farm task raised.

    Attributes
    ----------
    index : int or None
        Index of the failing task (its position in the mapped iterables).
    exception : BaseException or None
        The original exception, when it could be sent back from the engine.
    causes : dict
        ``engine id -> (exception type, message, remote traceback)``.
    """

    def __init__(self, message: str, causes: dict | None = None, index: int | None = None,
                 exception: BaseException | None = None):
        super().__init__(message, causes)
        self.index = index
        self.exception = exception

    def __reduce__(self):
        return (self.__class__, (str(self), self.causes, self.index, None))


def _engine_of(cluster, ar):
    """The engine running (or that ran) a load-balanced task, once it is known."""
    try:
        eid = ar.engine_id  # set from the engine's first message (status: busy), kept after the reply
    except Exception:
        return None
    return eid if isinstance(eid, int) else None


def _ranges(indices) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    out, run = [], []
    for i in sorted(indices):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)


def _abort(cluster, ars):
    """Tell the scheduler and engines to drop tasks that have not started (never blocks)."""
    ars = [ar for ar in ars if not ar.ready()]
    if ars and cluster.client is not None:
        try:
            cluster.client.abort(jobs=ars, block=False)
        except Exception:
            pass


def _interrupt(cluster, ars, what, why, keyboard=False):
    """Drop queued tasks, SIGINT the engines running ours; raise what the user must know.

    An idle engine ignores SIGINT, and a running task gets ``KeyboardInterrupt``
    which the runner returns as an error, so the engines stay usable unless a
    task does not answer (stuck in C code that never checks for signals).
    """
    pending = [ar for ar in ars if not ar.ready()]
    _abort(cluster, pending)
    running = sorted({e for e in (_engine_of(cluster, ar) for ar in pending) if e is not None})
    try:
        cluster.client.send_signal(signal.SIGINT, targets=running or None, block=False)
    except Exception:
        pass
    grace = time.monotonic() + _INTERRUPT_GRACE
    while any(not ar.ready() for ar in pending) and time.monotonic() < grace:
        concurrent.futures.wait([ar for ar in pending if not ar.ready()], timeout=_POLL)
    stuck = sorted({e for e in (_engine_of(cluster, ar) for ar in pending if not ar.ready())
                    if e is not None})
    if any(not ar.ready() for ar in pending):
        msg = cluster.health.mark_broken(f"{what} {why}; engine(s) {', '.join(map(str, stuck)) or '?'} "
                                         f"did not answer the interrupt")
        msg += "; call cluster.restart() for a new engine set."
    else:
        msg = f"{what} {why}; the engines were interrupted and are usable again."
    if keyboard:
        raise KeyboardInterrupt(msg)
    raise ClusterTimeoutError(msg)


def _dead_engines(cluster, ars, what, describe) -> None:
    """Raise ControllerError / EngineError if the controller or an engine is gone."""
    try:
        cluster.health.check_controller(what)
    except EngineError:
        _abort(cluster, ars)
        raise
    lost = cluster.health.dead_ranks()
    if not lost:
        return
    cluster.health.check_controller(what, probe=False)  # engines end when their controller is gone

    def failed(ar):
        try:
            return not ar.ready() or not ar.successful()
        except Exception:
            return True

    unfinished = [ar for ar in ars if failed(ar)]
    on_lost = [ar for ar in unfinished if _engine_of(cluster, ar) in lost]
    broken = cluster.health.mark_broken(f"engine(s) of rank(s) {', '.join(map(str, lost))} died "
                                        f"during {what}")
    _abort(cluster, ars)
    raise EngineError(
        f"{broken}{describe(on_lost, unfinished)}. A task that ends its engine's process "
        f"(os._exit, a crash, out of memory) takes the whole MPI engine set down: MPI cannot lose a rank. "
        f"Call cluster.restart() for a new engine set.",
        {r: ("EngineError", "engine died", "") for r in lost})


def _task_failure(what, index, total, eid, failure: RankFailure, stage) -> TaskError:
    """A TaskError naming the task's index, the engine, the original exception and its traceback."""
    where = f"task {index}" + (f" of {total}" if total is not None else "") if index is not None \
        else "a task"
    during = f" while {stage}" if stage else ""
    tb = failure.traceback.rstrip()
    msg = (f"{what}: {where} failed on engine {eid if eid is not None else '?'}{during}: "
           f"{failure.etype}: {failure.message}\n--- remote traceback ---\n{tb}")
    cannot_import = failure.etype in ("ModuleNotFoundError", "AttributeError")
    if stage and stage.startswith("unpickling") and cannot_import:
        msg += ("\n(the engines cannot rebuild the function or its arguments: define them in the "
                "notebook / __main__, or make their module importable on the engines, e.g. "
                "Cluster(..., engine_env={'PYTHONPATH': ...}))")
    return TaskError(msg, {eid if eid is not None else -1: (failure.etype, failure.message, tb)},
                     index=index, exception=failure.original())


def _decode(cluster, what, ar, start, count, total, pending):
    """The values of one finished chunk, or the error that names its task and engine."""
    import ipyparallel as ipp

    eid = _engine_of(cluster, ar)
    try:
        reply = pickle.loads(ar.get(0))
    except ipp.error.EngineError as exc:
        cluster.health.mark_broken(f"an engine died during {what}")
        _abort(cluster, list(pending))
        raise EngineError(f"{what}: the engine running task(s) {_ranges(range(start, start + count))} "
                          f"died ({exc}); MPI cannot lose a rank: call cluster.restart()",
                          {-1 if eid is None else eid: ("EngineError", str(exc), "")}) from None
    except ipp.error.RemoteError as exc:  # the runner itself could not run
        _abort(cluster, list(pending))
        raise TaskError(f"{what}: tasks {_ranges(range(start, start + count))} could not run on "
                        f"engine {eid}: {exc.ename}: {exc.evalue}",
                        {eid if eid is not None else -1: (exc.ename, exc.evalue, exc.traceback)},
                        index=start) from None
    if reply[0] == "error":
        _, index, failure, stage = reply
        _abort(cluster, list(pending))
        err = _task_failure(what, index, total, eid, failure, stage)
        raise err from err.exception
    return reply[1], reply[2]


def _forget(cluster, ars):
    """Drop finished tasks' results from the client's cache (a long DEAP run sends thousands)."""
    if ars and cluster.client is not None:
        try:
            cluster.client.purge_local_results(jobs=ars)
        except Exception:
            pass
