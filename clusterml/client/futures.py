"""Asynchronous task farming and shared values on a :class:`~clusterml.Cluster`.

* :func:`share` / :func:`unshare` — ``cluster.share(name=value, ...)``: values
  sent once to every engine, visible by name to every farm task (map, imap,
  submit, map_reduce) and to ``%px`` cells, like SCOOP's ``shared.setConst``.
* :func:`submit` — ``cluster.submit(f, *args, **kw)``: one task, a
  :class:`TaskFuture` (a :class:`concurrent.futures.Future`, so
  ``concurrent.futures.as_completed`` and ``wait`` work on it).
* :func:`map_async` — every task sent now, a :class:`concurrent.futures.Future`
  of the whole list.
* :func:`map_reduce` — ``functools.reduce(op, map(f, ...))`` with each chunk
  folded on its engine (only the partial results travel back).

Same rules as :func:`clusterml.client.farm.farm_map`: functions and arguments
travel with cloudpickle, errors name the task's index and engine, and a task
that uses the cluster (a nested map, a distributed algorithm) raises
:class:`clusterml.spmd.comm.NestedUseError` at once.
"""

from __future__ import annotations

import concurrent.futures
import pickle
import sys
import threading
import time
import weakref

from ..errors import EngineError, ParameterError
from .farm import _dumps_function, _lview, _map_chunks, _record_cost
from .shared import SHARED, SHARES, _dumps, _run_chunk, _with_shared, drop_shared, send_shared
from .tasks import _POLL, TaskError, _abort, _dead_engines, _engine_of, _forget, _task_failure

__all__ = ["TaskFuture", "share", "unshare", "submit", "map_async", "map_reduce", "SHARED"]

_MISSING = object()

def _check_names(names) -> None:
    for name in names:
        if not (isinstance(name, str) and name.isidentifier()):
            raise ParameterError(f"shared name {name!r} must be a Python identifier")


def share(cluster, timeout: float | None = None, **values) -> list:
    """``cluster.share(name=value, ...)``: send values once, visible by name to every task and ``%px``.

    Parameters
    ----------
    cluster : clusterml.Cluster
    timeout : float, optional
        Seconds for the transfer (default: the cluster's ``timeout``).
    **values
        ``name=value``; each value is pickled once (cloudpickle, so functions
        and classes of the notebook go too) and sent to every engine.

    Returns
    -------
    list of str
        Every name shared now.

    Notes
    -----
    A task function defined in the notebook (or ``__main__``) sees the shared
    names as globals, and they are left out of what is sent with it, so a
    large array is sent once, not with every map.  ``%px`` cells see them as
    variables.  Functions of importable modules keep their module's globals:
    give them the value as an argument, or read it from
    ``clusterml.client.futures.SHARED`` on the engine.  After
    ``cluster.restart()`` the values are sent again with the next farm call.
    """
    if not values:
        raise ParameterError("share needs name=value arguments")
    _check_names(values)
    cluster.health.check_usable()
    send_shared(cluster, values, timeout)
    return sorted(SHARES[cluster]["values"])


def unshare(cluster, *names: str, timeout: float | None = None) -> list:
    """Forget shared names on the client and every engine (no names: all of them); the names left."""
    _check_names(names)
    drop_shared(cluster, names or None, timeout)
    return sorted(SHARES.get(cluster, {}).get("values", {}))


# --------------------------------------------------------------------------
# Futures


class TaskFuture(concurrent.futures.Future):
    """The future of one farm task (``cluster.submit``): a :class:`concurrent.futures.Future`.

    ``result(timeout=None)`` returns the task's value or raises a
    :class:`~clusterml.client.farm.TaskError` naming the engine (with the
    original exception as ``err.exception`` and ``__cause__``), or
    :class:`clusterml.EngineError` if its engine died.  ``cancel()`` drops the
    task if it has not started on an engine.  Works with
    :func:`concurrent.futures.as_completed` and :func:`concurrent.futures.wait`.

    Attributes
    ----------
    index : int
        Submission number of the task on this cluster (it names the task in errors).
    engine_id : int or None
        The engine that ran the task, once known.
    """

    def __init__(self, cluster, ar, what: str, index: int, f):
        super().__init__()
        self._cluster_ref = weakref.ref(cluster)
        self._ar = ar
        self._what = what
        self._f = f
        self.index = index
        self.engine_id = None
        ar.add_done_callback(self._arrived)

    def cancel(self) -> bool:
        cluster = self._cluster_ref()
        if self._ar.ready() or (cluster is not None and _engine_of(cluster, self._ar) is not None):
            return False  # finished, or running on an engine (ipyparallel cannot stop it)
        if cluster is not None:
            _abort(cluster, [self._ar])
        return super().cancel()

    def result(self, timeout: float | None = None):
        """The task's value (waits up to ``timeout`` s, watching the controller and the engines)."""
        self._watch(timeout)
        return super().result(0)

    def exception(self, timeout: float | None = None):
        """The task's exception or None (waits as :meth:`result`)."""
        self._watch(timeout)
        return super().exception(0)

    def _watch(self, timeout) -> None:
        """Wait in short steps; a dead controller or engine settles the future with its error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            concurrent.futures.wait([self], timeout=_POLL)
            cluster = self._cluster_ref()
            if self.done():
                break
            if cluster is None or cluster.client is None:
                self._settle(EngineError(f"{self._what}: the cluster was stopped before task "
                                         f"{self.index} finished"))
                break
            try:
                _dead_engines(cluster, [self._ar], self._what, lambda *_: "")
            except EngineError as exc:  # ControllerError too
                self._settle(exc)
                break
            if deadline is not None and time.monotonic() > deadline:
                raise concurrent.futures.TimeoutError(f"{self._what}: task {self.index} not done "
                                                      f"after {timeout:g} s")

    def _arrived(self, ar) -> None:
        """Runs in ipyparallel's I/O thread when the reply (or an error) arrives."""
        cluster = self._cluster_ref()
        if self.done() or cluster is None:
            return
        try:
            value = _decode_one(cluster, ar, self._what, self.index, self._f)
        except BaseException as exc:
            self.engine_id = _engine_of(cluster, ar)
            self._settle(exc)
            return
        self.engine_id = _engine_of(cluster, ar)
        self._settle(None, value)

    def _settle(self, exc, value=None) -> None:
        try:
            if exc is not None:
                self.set_exception(exc)
            else:
                self.set_result(value)
        except concurrent.futures.InvalidStateError:  # cancelled meanwhile
            pass


def _decode_one(cluster, ar, what, index, f):
    """The value of a finished one-task chunk, or the error naming the task and engine."""
    import ipyparallel as ipp

    eid = _engine_of(cluster, ar)
    try:
        reply = pickle.loads(ar.get(0))
    except ipp.error.EngineError as exc:
        cluster.health.mark_broken(f"an engine died during {what}")
        raise EngineError(f"{what}: the engine running task {index} died ({exc}); MPI cannot lose a "
                          f"rank: call cluster.restart()",
                          {-1 if eid is None else eid: ("EngineError", str(exc), "")}) from None
    except ipp.error.RemoteError as exc:
        raise TaskError(f"{what}: task {index} could not run on engine {eid}: {exc.ename}: {exc.evalue}",
                        {eid if eid is not None else -1: (exc.ename, exc.evalue, exc.traceback)},
                        index=index) from None
    finally:
        _forget(cluster, [ar])
    if reply[0] == "error":
        _, _, failure, stage = reply
        err = _task_failure(what, index, None, eid, failure, stage)
        err.__cause__ = err.exception
        raise err
    _record_cost(f, reply[2], 1)
    return reply[1][0]


_COUNTERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def submit(cluster, f, *args, **kwargs) -> TaskFuture:
    """``cluster.submit(f, *args, **kwargs)``: run ``f(*args, **kwargs)`` on a free engine.

    Returns
    -------
    TaskFuture
        A :class:`concurrent.futures.Future`; ``future.result(timeout=None)``.
    """
    if not callable(f):
        raise ParameterError(f"submit needs a callable, got {type(f).__name__}")
    counter = _COUNTERS.setdefault(cluster, iter(range(sys.maxsize)))
    index = next(counter)
    what = f"submit({getattr(f, '__name__', None) or type(f).__name__})"
    view = _lview(cluster)
    fbytes = _dumps_function(cluster, f, what)
    try:
        argbytes = _dumps([args])
        if kwargs:
            fbytes = _dumps(_Kw(fbytes, kwargs))
    except Exception as exc:
        raise ParameterError(f"{what}: cannot send the arguments of task {index} to the engines "
                             f"({type(exc).__name__}: {exc})") from exc
    ar = view.apply_async(_run_chunk, fbytes, argbytes, index)
    return TaskFuture(cluster, ar, what, index, f)


class _Kw:
    """``f`` with keyword arguments, pickled with ``f`` already in cloudpickle bytes."""

    def __init__(self, fbytes, kwargs):
        self.fbytes, self.kwargs, self.f = fbytes, kwargs, None

    def __getstate__(self):
        return {"fbytes": self.fbytes, "kwargs": self.kwargs}

    def __setstate__(self, state):
        self.fbytes, self.kwargs = state["fbytes"], state["kwargs"]
        self.f = _with_shared(pickle.loads(self.fbytes))

    def __call__(self, *args):
        return self.f(*args, **self.kwargs)


def map_async(cluster, f, *iterables, ordered: bool = True, chunksize: int | None = None,
              timeout: float | None = None) -> concurrent.futures.Future:
    """Send every task of ``map(f, *iterables)`` now; a future of the list of results.

    The map is watched by a thread of this process (dead engines, ``timeout``);
    ``future.result()`` returns what :func:`~clusterml.client.farm.farm_map`
    would, or raises its error.  ``future.cancel()`` is not supported once sent;
    to stop early, iterate :meth:`Cluster.imap` instead.
    """
    chunks = _map_chunks(cluster, f, iterables, ordered, chunksize, timeout, False, "map_async")
    future = concurrent.futures.Future()
    future.set_running_or_notify_cancel()

    def collect():
        try:
            future.set_result([v for _, chunk in chunks for v in chunk])
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=collect, name="clusterml-map_async", daemon=True).start()
    return future


def map_reduce(cluster, f, op, *iterables, initial=_MISSING, chunksize: int | None = None,
               timeout: float | None = None, progress: bool | None = None):
    """``functools.reduce(op, map(f, *iterables)[, initial])`` with the folding done on the engines.

    Each chunk is folded on its engine with ``op``; the partial results are
    folded here in input order, so ``op`` need only be associative (e.g.
    ``operator.add``, ``max``, merging dicts).  An empty input returns
    ``initial`` or raises :class:`TypeError`, as :func:`functools.reduce`.
    """
    if not callable(op):
        raise ParameterError(f"map_reduce needs a callable op, got {type(op).__name__}")
    chunks = _map_chunks(cluster, f, iterables, True, chunksize, timeout, progress, "map_reduce", op=op)
    acc = initial
    for _, partial in chunks:
        for value in partial:
            acc = value if acc is _MISSING else op(acc, value)
    if acc is _MISSING:
        raise TypeError("map_reduce() of an empty iterable with no initial value")
    return acc
