"""The engine side of the farm (task runners), values shared with every engine, and how tasks travel.

:func:`_run_chunk` and :func:`_run_call` run farm tasks on an engine (no ipyparallel import).

The engine side keeps shared values in :data:`SHARED` and binds them in the
interactive namespace (``%px`` cells); :func:`_with_shared` makes them visible
to a task function shipped by value.  The client side remembers them per
cluster in :data:`SHARES`, to leave them out of what goes with each task and
to send them again to a restarted engine set.
"""

from __future__ import annotations

import functools
import pickle
import sys
import time
import weakref

from ..errors import ParameterError, RankFailure

#: The clusters of ``clusterml run`` (:mod:`clusterml.client.run`); the last is ``Cluster.current()``.
CURRENT: list = []

# --------------------------------------------------------------------------
# Serialization: cloudpickle (also ships functions defined in __main__)


def _pickler():
    """cloudpickle, or the copy joblib vendors, or plain pickle as a last resort."""
    try:
        import cloudpickle

        return cloudpickle
    except ImportError:
        pass
    try:
        from joblib.externals import cloudpickle

        return cloudpickle
    except ImportError:
        return pickle


def _dumps(obj) -> bytes:
    return _pickler().dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


#: Values of ``cluster.share(...)`` on this engine: ``name -> value``.
SHARED: dict = {}


def _engine_ns() -> dict:
    """The engine's interactive namespace (where ``%px`` cells run)."""
    try:
        from IPython import get_ipython

        ip = get_ipython()
    except ImportError:  # pragma: no cover - IPython ships with every engine
        ip = None
    return ip.user_ns if ip is not None else sys.modules["__main__"].__dict__


def _set_shared(blob: bytes) -> list:
    """Engine side of ``cluster.share``: keep the values and bind them for ``%px`` cells."""
    values = pickle.loads(blob)
    SHARED.update(values)
    _engine_ns().update(values)
    return sorted(SHARED)


def _drop_shared(names) -> list:
    """Engine side of ``cluster.unshare`` (``None``: every shared name)."""
    ns = _engine_ns()
    for name in list(SHARED) if names is None else names:
        value = SHARED.pop(name, None)
        if name in ns and ns[name] is value:
            del ns[name]
    return sorted(SHARED)


def _with_shared(f):
    """Make the shared names visible to a function shipped by value (its own globals dict)."""
    fn = f.func if isinstance(f, functools.partial) else f
    g = getattr(fn, "__globals__", None)
    if SHARED and isinstance(g, dict):
        mod = sys.modules.get(g.get("__name__", ""))
        if mod is None or vars(mod) is not g:  # never touch a real module's namespace
            for name, value in SHARED.items():
                g[name] = value
    return f


# --------------------------------------------------------------------------
# The client side of share

#: What each cluster shares: ``cluster -> {"values": {name: value}, "generation": int}``.
SHARES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def send_shared(cluster, values: dict, timeout: float | None = None) -> None:
    """Send ``values`` once to every engine (``cluster.share``); remembered for restarts."""
    try:
        blob = _dumps(dict(values))
    except Exception as exc:
        raise ParameterError(f"share: cannot send {', '.join(sorted(values))} to the engines "
                             f"({type(exc).__name__}: {exc})") from exc
    dview = cluster.client.direct_view(targets=sorted(cluster.client.ids))
    ar = dview.apply_async(_set_shared, blob)
    cluster.health.wait(ar, timeout, "share")
    ar.get(0)
    share = SHARES.setdefault(cluster, {"values": {}, "generation": None})
    share["values"].update(values)
    share["generation"] = cluster.health.generation


def drop_shared(cluster, names, timeout: float | None = None) -> None:
    """Forget shared names on every engine (``None``: all of them)."""
    share = SHARES.get(cluster)
    if share is None:
        return
    for name in list(share["values"]) if names is None else names:
        share["values"].pop(name, None)
    if cluster.client is not None and not cluster.health.dead_ranks():
        dview = cluster.client.direct_view(targets=sorted(cluster.client.ids))
        ar = dview.apply_async(_drop_shared, None if names is None else list(names))
        cluster.health.wait(ar, timeout, "unshare")
        ar.get(0)


# --------------------------------------------------------------------------
# The engine side (runs inside an engine; imports nothing from ipyparallel)


def _describe(exc: BaseException, skip_frames: int = 1) -> RankFailure:
    """The exception as it travels back (the one wire format), the exception itself included.

    ``skip_frames`` drops the runner's own frame, so the traceback starts at the user's code;
    the engine id is filled in on the client (-1 here).
    """
    return RankFailure.from_exception(exc, -1, skip_frames, keep=True, dumps=_dumps)


def _run_chunk(fbytes: bytes, argbytes: bytes, start: int, opbytes: bytes | None = None) -> bytes:
    """Run ``f(*args)`` for one chunk of tasks; stop at the first task that raises.

    Returns (pickled) ``("ok", [results], seconds)`` or ``("error", index, description, stage)``;
    with ``opbytes`` (map_reduce) the results are folded here with ``op`` into one.
    Every exception is caught, ``KeyboardInterrupt`` and ``SystemExit`` too, so
    the engine lives on and the client hears which task failed.  While the tasks
    run, a distributed call on this engine raises (:func:`clusterml.spmd.comm.refuse_in_farm_task`).
    """
    from ..spmd import comm

    try:
        f = _with_shared(pickle.loads(fbytes))
        arglists = pickle.loads(argbytes)
        op = None if opbytes is None else _with_shared(pickle.loads(opbytes))
    except BaseException as exc:
        return _dumps(("error", start, _describe(exc, 0), "unpickling the function or its arguments"))
    out = []
    t0 = time.perf_counter()
    comm._farm_task["what"] = f"task {start}"
    try:
        for i, args in enumerate(arglists):
            comm._farm_task["what"] = f"task {start + i}"
            try:
                value = f(*args)
                if op is None:
                    out.append(value)
                elif not out:
                    out = [value]
                else:
                    out[0] = op(out[0], value)
            except BaseException as exc:
                return _dumps(("error", start + i, _describe(exc), None))
    finally:
        comm._farm_task["what"] = None
    seconds = time.perf_counter() - t0
    try:
        return _dumps(("ok", out, seconds))
    except BaseException as exc:
        return _dumps(("error", start, _describe(exc, 0), "pickling the results"))


def _run_call(fbytes: bytes) -> bytes:
    """Run one pickled no-argument callable (a joblib batch); ``("ok", value)`` or ``("error", ...)``."""
    try:
        func = pickle.loads(fbytes)
    except BaseException as exc:
        return _dumps(("error", None, _describe(exc, 0), "unpickling the batch"))
    try:
        value = func()
    except BaseException as exc:
        return _dumps(("error", None, _describe(exc), None))
    try:
        return _dumps(("ok", value))
    except BaseException as exc:
        return _dumps(("error", None, _describe(exc, 0), "pickling the result"))
