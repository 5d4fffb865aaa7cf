"""Task farming on a :class:`~clusterml.Cluster`: a load-balanced map and a joblib backend.

The SPMD calls of the facade broadcast one call to every engine; task farming
runs *independent* tasks on the same engines, each task on whichever engine is
free (ipyparallel's load-balanced view, ``leastload`` scheme, one task per
engine at a time).  This is the UL HPC School's pattern (seed 004): scoop's
``futures.map`` as DEAP's ``toolbox.map`` and ipyparallel's joblib backend
for scikit-learn's hyper-parameter searches, on the cluster the notebook
already has instead of a per-job profile and a hand-written launcher.

Two entry points, reached as methods of the cluster:

* :func:`farm_map` — ``cluster.map(f, *iterables, ordered=True, chunksize=None)``,
  the built-in :func:`map` over the engines: results in order (a list),
  progress as chunks finish, the first failing task named by its index.
  Usable as ``toolbox.register("map", cluster.map)`` for DEAP.
* :func:`joblib_config` — ``with cluster.joblib():`` activates
  :class:`ClusterBackend` (ipyparallel's joblib backend bound to this
  cluster), so ``GridSearchCV(..., n_jobs=-1)`` and ``joblib.Parallel`` run
  their batches on the engines.

Shipping code.  Functions and arguments travel as bytes made by cloudpickle
(functions defined in a notebook or a ``__main__`` script go by value with the
globals they use; functions of importable modules by reference, so the
engines must be able to import that module).  ipyparallel's own serializer is
left as configured.  DEAP's ``creator`` classes need nothing: since DEAP 1.4
they pickle as a call that re-creates the class on the receiving side, so
individuals built from classes created only in the notebook reach the engines.

The MPI world is never touched: a task runs on one engine, outside any
collective.  A task that raises is reported (its index, exception and remote
traceback) and the engines stay usable for SPMD calls.  A task that ends its
engine's process (``os._exit``, a crash, out of memory) takes the whole MPI
engine set down, because MPI cannot lose a rank: that is reported as an
:class:`~clusterml.EngineError` and :meth:`Cluster.restart` brings the engines
back.  Farm tasks must not call clusterml's SPMD algorithms or any MPI
collective: the other ranks are not taking part.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import math
import time
import weakref

from ..errors import EngineError, ParameterError
from .progress import _PROGRESS_AFTER, _MapProgress
from .shared import CURRENT, _dumps, _run_chunk
from .tasks import _POLL, TaskError, _abort, _dead_engines, _decode, _forget, _interrupt, _ranges

__all__ = ["TaskError", "farm_map", "farm_imap", "chunk_plan"]

log = logging.getLogger("clusterml.client")


# --------------------------------------------------------------------------
# The client side


def _lview(cluster):
    """A load-balanced view over every engine of the cluster (cached per engine generation)."""
    from ..spmd.comm import refuse_in_farm_task

    refuse_in_farm_task("a farm call (map, submit, imap, ...) on a cluster")
    health = cluster.health
    health.check_usable()
    cache = _VIEWS.get(cluster)
    if cache is not None and cache[0] == health.generation and cache[1].client is cluster.client:
        return cache[1]
    view = cluster.client.load_balanced_view(targets=sorted(cluster.client.ids))
    _VIEWS[cluster] = (health.generation, view)
    from .shared import SHARES, send_shared

    share = SHARES.get(cluster)
    if share and share["values"] and share["generation"] != health.generation:
        send_shared(cluster, share["values"])  # new engines (restart): share again
    return view


_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def nested_use_error(what: str):
    """The error for a cluster used from inside a farm task (or sent to the engines)."""
    from ..spmd.comm import NestedUseError

    return NestedUseError(
        f"{what} is not allowed: farm tasks run one per engine, outside the MPI world, and a task "
        f"cannot drive the cluster it runs on (no nested cluster.map / submit, no distributed "
        f"algorithm). Inside a task use a non-distributed call (the built-in map, NumPy, "
        f"scikit-learn, a clusterml algorithm with distributed=False); pass data, not the cluster, "
        f"to the task, or share it once with cluster.share(name=value).")


def current_cluster(live=()):
    """``Cluster.current()``: the cluster of ``clusterml run``, else the one running cluster of ``live``."""
    from ..spmd.comm import refuse_in_farm_task

    refuse_in_farm_task("Cluster.current()")
    if CURRENT:
        return CURRENT[-1]
    live = [c for c in list(live) if c.running]
    if len(live) == 1:
        return live[0]
    raise EngineError(
        ("no current cluster: " if not live else f"{len(live)} clusters run in this process: ")
        + "run the script with `clusterml run -n N script.py` (Cluster.current() is then its cluster), "
        "or create one here with cml.Cluster(n).")


# Per-chunk cost of the round trip through the controller (apply, schedule, reply), in
# seconds: a 200-task map in 2 chunks of microsecond tasks took 27 ms on 2 busy cores
# (cProfile: mostly the wait for replies and waking ipyparallel's I/O thread), so a chunk
# shorter than a few of these is mostly overhead.
_ROUND_TRIP = 0.005
# A chunk should run at least this long before splitting the map further pays off.
_MIN_CHUNK_SECONDS = 40 * _ROUND_TRIP
# Measured seconds per task of recent functions: ``key -> seconds`` (see chunk_plan).
_COSTS: dict = {}


def _cost_key(f):
    fn = f.func if isinstance(f, functools.partial) else f
    code = getattr(fn, "__code__", None)
    if code is not None:
        return (code.co_filename, code.co_firstlineno, code.co_name)
    return (type(fn).__module__, type(fn).__qualname__)


def chunk_plan(ntasks: int, nengines: int, seconds_per_task: float | None = None) -> int:
    """Tasks per chunk for ``ntasks`` tasks on ``nengines`` engines (the default of every map).

    Rule (measured in ``benchmarks/farm.py``): an engine's share of the work is
    cut into as many chunks as keep each chunk at least ``_MIN_CHUNK_SECONDS``
    long, at most 4 per engine (later chunks let a fast engine take over from a
    slow one), at least 1.  Cheap tasks (the DEAP tutorial's microsecond
    evaluations, 2 ms tasks) thus go as one chunk per engine: one round trip
    each, as SCOOP's batching does.  Before any task of the function has been
    timed, 2 chunks per engine.
    """
    nengines = max(1, nengines)
    per_engine = math.ceil(ntasks / nengines)
    if seconds_per_task is None:
        chunks = 2
    else:
        chunks = int(per_engine * seconds_per_task // _MIN_CHUNK_SECONDS)
        chunks = min(4, max(1, chunks))
    return max(1, math.ceil(per_engine / chunks))


def _chunk_size(ntasks: int, nengines: int, chunksize, f=None) -> int:
    if chunksize is None:
        return chunk_plan(ntasks, nengines, _COSTS.get(_cost_key(f)) if f is not None else None)
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise ParameterError(f"chunksize={chunksize!r} must be a positive integer or None")
    return chunksize


def _record_cost(f, seconds: float, count: int) -> None:
    key = _cost_key(f)
    per_task = seconds / max(1, count)
    old = _COSTS.get(key)
    _COSTS[key] = per_task if old is None else 0.5 * (old + per_task)
    if len(_COSTS) > 256:
        _COSTS.pop(next(iter(_COSTS)))


def _dumps_function(cluster, f, what: str) -> bytes:
    """Pickle ``f`` for the engines; shared names are left out (the engines have them)."""
    from .shared import SHARES

    shared = SHARES.get(cluster, {}).get("values")
    g = getattr(f, "__globals__", None)
    if shared and isinstance(g, dict) and (
            getattr(f, "__module__", None) == "__main__" or g.get("__name__") == "__main__"):
        import types

        clone = types.FunctionType(f.__code__, {k: v for k, v in g.items() if k not in shared},
                                   f.__name__, f.__defaults__, f.__closure__)
        clone.__kwdefaults__, clone.__qualname__ = f.__kwdefaults__, f.__qualname__
        clone.__module__, clone.__doc__ = f.__module__, f.__doc__
        clone.__dict__.update(f.__dict__)
        f = clone
    from ..spmd.comm import NestedUseError

    try:
        return _dumps(f)
    except NestedUseError:
        raise
    except Exception as exc:
        name = getattr(f, "__name__", None) or type(f).__name__
        raise ParameterError(f"{what}: cannot send {name!r} to the engines ({type(exc).__name__}: "
                             f"{exc})") from exc


def _prepare(cluster, f, iterables, chunksize, what):
    """Check the arguments; return ``(view, fbytes, tasks, chunk size)``."""
    if not callable(f):
        raise ParameterError(f"{what} needs a callable, got {type(f).__name__}")
    if not iterables:
        raise ParameterError(f"{what} needs at least one iterable (like the built-in map)")
    view = _lview(cluster)
    tasks = list(zip(*iterables, strict=False))
    size = _chunk_size(len(tasks), len(view.targets or cluster.client.ids), chunksize, f)
    return view, _dumps_function(cluster, f, what), tasks, size


def _submit_chunks(cluster, view, what, fbytes, tasks, size, opbytes=None) -> dict:
    """Send every chunk; ``{AsyncResult: (start, count)}``."""
    ars = {}
    try:
        for start in range(0, len(tasks), size):
            chunk = tasks[start:start + size]
            try:
                argbytes = _dumps(chunk)
            except Exception as exc:
                raise ParameterError(f"{what}: cannot send the arguments of tasks {start}-"
                                     f"{start + len(chunk) - 1} to the engines ({type(exc).__name__}: "
                                     f"{exc})") from exc
            args = (fbytes, argbytes, start) + ((opbytes,) if opbytes is not None else ())
            ars[view.apply_async(_run_chunk, *args)] = (start, len(chunk))
    except BaseException:
        _abort(cluster, list(ars))
        raise
    return ars


def _stream(cluster, f, what, ars, total, timeout, progress, ordered):
    """Yield ``(start, values)`` of each chunk as it finishes (in input order if ``ordered``).

    Watches for dead engines, the timeout and Ctrl-C; when the consumer stops early
    (a ``break`` out of :func:`farm_imap`), the chunks not started are dropped.
    """
    timeout = cluster.timeout if timeout is None else float(timeout)
    t0 = time.monotonic()
    deadline = t0 + timeout
    bar = _MapProgress(total, what) if progress else None
    pending = set(ars)
    done_tasks = 0
    held, next_start = {}, 0
    counts = dict(ars.values())

    def unfinished(on_lost, not_done):
        def idx(which):
            return _ranges(i for ar in which for i in range(ars[ar][0], ars[ar][0] + ars[ar][1]))

        if on_lost:
            return f" while running task(s) {idx(on_lost)}"
        return f" with task(s) {idx(not_done)} unfinished" if not_done else ""

    try:
        while pending:
            finished, _ = concurrent.futures.wait(pending, timeout=_POLL,
                                                  return_when=concurrent.futures.FIRST_COMPLETED)
            for ar in sorted(finished, key=lambda a: ars[a][0]):
                pending.discard(ar)
                start, count = ars[ar]
                try:
                    values, seconds = _decode(cluster, what, ar, start, count, total, pending)
                except EngineError:
                    _dead_engines(cluster, list(ars), what, unfinished)
                    raise
                _record_cost(f, seconds, count)
                done_tasks += count
                if not ordered:
                    yield start, values
                    continue
                held[start] = values
                while next_start in held:
                    chunk = held.pop(next_start)
                    yield next_start, chunk
                    next_start += counts[next_start]
            if pending:
                _dead_engines(cluster, list(ars), what, unfinished)
                if time.monotonic() > deadline:
                    _interrupt(cluster, list(pending), what,
                               f"timed out after {timeout:g} s with {done_tasks} of {total} tasks done")
            if bar is None and progress is None and time.monotonic() - t0 > _PROGRESS_AFTER:
                bar = _MapProgress(total, what)
            if bar is not None:
                bar.update(done_tasks)
    except KeyboardInterrupt:
        if pending:
            _interrupt(cluster, list(pending), what, "interrupted (Ctrl-C)", keyboard=True)
        raise
    finally:
        if pending:  # an error, or the consumer stopped early
            _abort(cluster, list(pending))
        if bar is not None:
            bar.close(done_tasks)
        _forget(cluster, [ar for ar in ars if ar.ready()])


def farm_map(cluster, f, *iterables, ordered: bool = True, chunksize: int | None = None,
             timeout: float | None = None, progress: bool | None = None) -> list:
    """``map(f, *iterables)`` load-balanced over the engines of ``cluster``.

    Parameters
    ----------
    cluster : clusterml.Cluster
    f : callable
        Called as ``f(*args)`` for each tuple of items, one task per tuple
        (like the built-in :func:`map`, it stops at the shortest iterable).
        Names shared with ``cluster.share`` are visible to it.
    *iterables
        At least one; consumed on the client.
    ordered : bool
        True (default): results in the order of the inputs.  False: in the
        order the chunks finish (each chunk's results stay in order).
    chunksize : int, optional
        Tasks sent to an engine at once.  Default: :func:`chunk_plan`, from the
        measured cost of this function's earlier tasks (one chunk per engine
        for cheap tasks, up to four for long ones).
    timeout : float, optional
        Seconds for the whole map (default: the cluster's ``timeout``).
    progress : bool, optional
        Show a progress bar (notebook or terminal) or plain lines (a log file).
        Default: only once the map has run for a second.

    Returns
    -------
    list
        ``[f(*args) for args in zip(*iterables)]``, computed on the engines.

    Raises
    ------
    TaskError
        The first task that raised: its index, engine, exception and remote
        traceback (``err.exception`` is the original exception when it could be
        sent back; it is also the ``__cause__``).  Tasks not started yet are
        dropped; the engines stay usable.
    clusterml.EngineError
        An engine died (the MPI engine set must be restarted).
    clusterml.ClusterTimeoutError
        The map ran past ``timeout``; the running tasks were interrupted.
    """
    return [v for _, chunk in _map_chunks(cluster, f, iterables, ordered, chunksize, timeout, progress,
                                          "map") for v in chunk]


def _map_chunks(cluster, f, iterables, ordered, chunksize, timeout, progress, name, op=None):
    what = f"{name}({getattr(f, '__name__', None) or type(f).__name__})"
    view, fbytes, tasks, size = _prepare(cluster, f, iterables, chunksize, what)
    if not tasks:
        return iter(())
    opbytes = None if op is None else _dumps_function(cluster, op, what)
    ars = _submit_chunks(cluster, view, what, fbytes, tasks, size, opbytes)
    return _stream(cluster, f, what, ars, len(tasks), timeout, progress, ordered)


def farm_imap(cluster, f, *iterables, ordered: bool = True, chunksize: int | None = None,
              timeout: float | None = None, progress: bool | None = False):
    """Like :func:`farm_map`, but yield each result as soon as its chunk is back.

    Every task is sent at once; results stream in input order (``ordered=True``)
    or in the order chunks finish (``ordered=False``, the ``as_completed``
    pattern).  Leaving the loop early drops the tasks not started yet.
    ``chunksize=1`` streams task by task.  Errors as :func:`farm_map`, raised
    when the loop reaches the failing chunk (unordered) or its place (ordered).
    """
    chunks = _map_chunks(cluster, f, iterables, ordered, chunksize, timeout, progress, "imap")
    return (v for _, chunk in chunks for v in chunk)  # sent now; results as they come
