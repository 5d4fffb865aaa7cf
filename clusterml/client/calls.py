"""Remote algorithm calls of a :class:`~clusterml.Cluster`: broadcast, replies, errors, data.

Every algorithm call is one broadcast: each engine receives the same small
message (algorithm name, parameters, input spec) and runs
:func:`clusterml.spmd.remote.run_call`, which is what a ``%%px`` cell would run::

    cml.<algorithm>(**params, distributed=True).compute(**inputs)

The replies are checked here: every engine's result digest must agree (only
rank 0 sends the result itself), per-row outputs stay on the engines as
:class:`EngineArray` handles, and an engine's exception — always a
:class:`~clusterml.errors.RankFailure`, the one wire format — becomes one
:class:`~clusterml.DistributedError` of the class the engines raised.  Waits
go through the cluster's public :class:`~clusterml.client.health.Health`.
"""

from __future__ import annotations

import copy
import os
import re
import weakref

import numpy as np

from .. import errors as _errors
from ..errors import (
    ComputeError,
    DistributedError,
    EngineError,
    InconsistentResultError,
    InputError,
    ParameterError,
    RankFailure,
)
from ..spmd import REGISTRY
from ..spmd.algorithm import bind_inputs
from ..spmd.inputs import Partition, block_range
from ..spmd.remote import Entry, Ref

__all__ = ["EngineArray", "RemoteAlgorithm", "compute", "check_replies", "error_from", "results",
           "wait", "scatter", "gather", "free", "apply", "noop", "engine_name"]


# --------------------------------------------------------------------------
# Handles returned to the user


class EngineArray(Ref):
    """Per-row output kept on the engines (k-means assignments, predictions, ...).

    Each engine holds its own rows; :meth:`gather` fetches them in rank
    order.  Pass the handle itself wherever a data argument is expected.

    Attributes
    ----------
    name : str
        Where the rows are kept on every engine.
    counts : list of int
        Rows on each rank.
    shape : tuple
        Shape of the gathered array.
    """

    def __init__(self, cluster, name: str, shapes: list, dtype: str):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_cluster", weakref.ref(cluster))
        object.__setattr__(self, "_generation", cluster.health.generation)
        object.__setattr__(self, "counts", [int(s[0]) if len(s) else 1 for s in shapes])
        rest = tuple(shapes[0][1:]) if shapes and len(shapes[0]) > 1 else ()
        object.__setattr__(self, "shape", (sum(self.counts),) + rest)
        object.__setattr__(self, "dtype", np.dtype(dtype))
        # forget the rows on the engines once the client drops the handle
        weakref.finalize(self, cluster._garbage.append, name)

    def gather(self, timeout: float | None = None) -> np.ndarray:
        """Fetch every rank's rows, stacked in rank order."""
        return gather(self._get_cluster(), self.name, timeout)

    def _get_cluster(self):
        cluster = self._cluster()
        if cluster is None or cluster.health.generation != self._generation:
            raise EngineError(f"the rows of {self.name!r} are gone: their engines were stopped "
                              f"or restarted; compute them again")
        return cluster

    def __repr__(self):
        return f"EngineArray({self.name!r}, shape={self.shape}, dtype={self.dtype}, counts={self.counts})"

    def __reduce__(self):
        return (Ref, (self.name,))

    def __hash__(self):
        return hash(self.name)

    def __eq__(self, other):
        return self is other


class RemoteAlgorithm:
    """``cluster.<algorithm>(...)``: the parameters of one algorithm, ready to broadcast.

    The parameters are validated here, on the client (the same checks the
    engines would make), so a bad one fails at once without a round trip.
    """

    def __init__(self, cluster, name: str, *args, **kwargs):
        if "distributed" in kwargs:
            raise ParameterError("distributed is implied on a Cluster; remove distributed=...")
        if kwargs.get("streaming"):
            raise ParameterError("streaming=True keeps state between compute calls on the engines: use "
                                 "it in engine-side code (%%px, scripts); here give all rows to one "
                                 "compute (a path or cluster.scatter)")
        cls = REGISTRY[name]
        algo = cls(*args, **kwargs)  # validates; raises ParameterError
        params = algo.get_params()
        params.pop("distributed", None)
        self._cluster, self.name, self.params, self._cls = cluster, name, params, cls

    def compute(self, *args, timeout: float | None = None, **kwargs):
        """Broadcast the call; every engine computes; return the (checked) result once.

        Inputs follow SPEC §3: a path (``{}`` is replaced by each engine's
        rank), ``cml.read_partition(path)``, ``cluster.ref("X")``,
        ``cluster.scatter(X)`` or a per-row output of an earlier call.  A
        NumPy array or pandas frame given for a row-distributed input is
        scattered over the engines for this call.  Replicated inputs (a model,
        initial centroids) are sent as they are.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait (default: the cluster's ``timeout``).

        Raises
        ------
        clusterml.DistributedError
            The engines' error (same class as in SPMD mode), naming the ranks.
        clusterml.InconsistentResultError
            If the engines' results differ.
        clusterml.ClusterTimeoutError, clusterml.EngineError
        """
        cls = self._cls
        inputs = bind_inputs(self.name, cls._tables, cls._extras, args, kwargs)
        return compute(self._cluster, self.name, self.params, inputs, set(cls._tables), timeout)

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"<{self._cluster!r}.{self.name}({params})>"


# --------------------------------------------------------------------------
# One broadcast call


_BVIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def broadcast_view(cluster):
    """The view every broadcast call goes through: ipyparallel's broadcast scheduler.

    One message per call reaches the controller, whose broadcast scheduler
    forwards it to every engine, so each engine receives the calls of all
    clients in the same order.  Through a DirectView each engine gets its own
    message, and the calls of two clients can reach two engines in opposite
    orders: their collectives would pair up across the calls.
    """
    client = cluster.client
    cached = _BVIEWS.get(cluster)
    if cached is not None and cached[0] is client and cached[1] == cluster.health.generation:
        return cached[2]
    view = client.broadcast_view(targets=sorted(client.ids), is_coalescing=False)
    view.block = False
    _BVIEWS[cluster] = (client, cluster.health.generation, view)
    return view


def engine_name(cluster, kind: str) -> str:
    """A new name for an engine-side object of this client: ``_cml_<client>_<kind>_<n>``.

    ``<client>`` comes from the client's session id, so two clients of one
    cluster (two notebooks, ``Cluster.connect`` from another process) never use
    each other's names, and each frees only its own.
    """
    session = cluster.client.session.session.replace("-", "")[:12]
    return f"_cml_{session}_{kind}_{next(cluster._ids)}"


def _as_table(cluster, k, v, timeout, temp):
    """Scatter a client array / frame / nested list given for row-distributed input ``k``."""
    if isinstance(v, (list, tuple)):
        try:
            v = np.asarray(v)
        except ValueError as exc:  # ragged nested lists
            raise InputError(f"{k}: cannot make a table of {type(v).__name__} ({exc}); "
                             f"expected rows of equal length") from None
    if isinstance(v, np.ndarray) and v.dtype.kind not in "biuf":
        # what every engine would say; some dtypes (datetime) cannot even be sent
        raise InputError(f"{k}: dtype {v.dtype} is not numeric; expected a float or integer array")
    ref = scatter(cluster, v, timeout=timeout)
    temp.append(ref.name)
    return ref


def compute(cluster, name: str, params: dict, inputs: dict, tables: set, timeout: float | None):
    """Broadcast ``name(**params).compute(**inputs)`` to every engine; the checked result."""
    cluster.health.check_usable()
    temp = []
    spec = {}
    for k, v in inputs.items():
        if isinstance(v, (Ref, str, os.PathLike, Partition)):
            if isinstance(v, EngineArray):
                v._get_cluster()
                v = Ref(v.name)
            spec[k] = os.fspath(v) if isinstance(v, os.PathLike) else v
        elif k in tables and v is not None and (isinstance(v, (np.ndarray, list, tuple))
                                                or hasattr(v, "iloc") or _is_sparse(v)):
            spec[k] = _as_table(cluster, k, v, timeout, temp)
        else:
            spec[k] = v
    call_id = engine_name(cluster, name)
    # Objects the client no longer references (dropped outputs, earlier calls' scattered
    # inputs) are forgotten on every engine as this call starts; this call's own scattered
    # inputs at the next call.  (Passing nothing here kept every per-row output forever.)
    drop, cluster._garbage[:] = tuple(cluster._garbage), list(temp)
    what = f"{name}.compute"
    try:
        ar = broadcast_view(cluster).apply_async(Entry("run_call"), name, params, spec, call_id, 0, drop)
    except BaseException:
        cluster._garbage.extend(drop)
        raise
    return check_replies(cluster, wait(cluster, ar, timeout, what), what, call_id)


def check_replies(cluster, replies: list, what: str, call_id: str):
    """Raise the engines' error, or check their digests agree; the result with EngineArrays."""
    failures = [r["failure"] for r in replies if r["status"] == "error"]
    if failures:
        raise error_from(failures, what)
    groups: dict = {}
    for r in replies:
        groups.setdefault(r["digest"], []).append(r["rank"])
    if len(groups) > 1:
        detail = "; ".join(f"ranks {', '.join(map(str, rs))} -> {d[:12]}" for d, rs in groups.items())
        raise InconsistentResultError(
            f"{what}: the engines returned different results ({detail}); the algorithm is "
            f"not deterministic across ranks or the engines run different code/data")
    first = replies[0]
    result = first["result"]
    if first["rows"]:
        # a copy: the reply may live on in ipyparallel's caches (or a reference cycle) after the
        # user dropped the result, and with it the handles that free per-row outputs on the engines
        result = copy.copy(result)
    for field, (_, dtype) in first["rows"].items():
        shapes = [r["rows"][field][0] for r in replies]
        setattr(result, field, EngineArray(cluster, f"{call_id}.{field}", shapes, dtype))
    return result


def error_from(failures: list, what: str) -> DistributedError:
    """One exception for the engines' failures of one call (:class:`RankFailure` each).

    The same clusterml error on every rank (a collective's agreed error)
    keeps its class and per-rank causes; anything else becomes a
    :class:`~clusterml.ComputeError` listing each rank's exception.
    """
    failures = sorted(failures, key=lambda f: f.rank)
    kinds = {(f.module, f.etype, f.message) for f in failures}
    if len(kinds) == 1:
        module, etype, message = kinds.pop()
        cls = getattr(_errors, etype, None) if module == _errors.__name__ else None
        if cls is not None and issubclass(cls, DistributedError):
            causes = {}
            for f in failures:
                causes.update(f.causes)
            return cls(f"{what}: {message}", causes or {f.rank: f.cause() for f in failures})
    ranks = ", ".join(str(f.rank) for f in failures)
    lines = "\n  ".join(f"rank {f.rank}: {f.etype}: {f.message}" for f in failures)
    return ComputeError(f"{what} failed on rank{'s' if len(failures) > 1 else ''} {ranks}:\n  {lines}\n"
                        f"(err.remote_traceback() shows the engines' tracebacks)",
                        {f.rank: f.cause() for f in failures})


# --------------------------------------------------------------------------
# Waiting and ipyparallel's own errors (for apply, scatter, gather: code that is not ours)


def _failure_of(ename, evalue, tb, rank) -> RankFailure:
    if rank == -1:  # the controller's "Engine 2 died while running task ..."
        m = re.match(r"Engine (\d+) died", str(evalue))
        rank = int(m.group(1)) if m else rank
    tb = "".join(tb) if isinstance(tb, list) else str(tb or "")
    return RankFailure(rank, ename, "", str(evalue), tb)


def results(cluster, ar, what: str) -> list:
    """The values of a finished ``ar``; ipyparallel's remote errors as clusterml's.

    Raises
    ------
    clusterml.EngineError
        An engine died (the engine set is marked broken).
    clusterml.ComputeError
        The function raised on some engine(s).
    """
    import ipyparallel as ipp

    try:
        return ar.get(0)
    except ipp.error.CompositeError as exc:
        failures = [_failure_of(ename, evalue, tb, info.get("engine_id", -1) if isinstance(info, dict)
                                else -1) for ename, evalue, tb, info in exc.elist]
    except ipp.error.RemoteError as exc:
        failures = [_failure_of(exc.ename, exc.evalue, exc.traceback,
                                (exc.engine_info or {}).get("engine_id", -1))]
        if exc.ename == "EngineError":  # one targeted engine died (a scatter, a gather)
            rank = failures[0].rank
            cluster.health.mark_broken(f"engine of rank {rank} died during {what}")
            raise EngineError(f"{what} failed: {exc.evalue}. MPI cannot lose a rank: call "
                              f"cluster.restart() for a new engine set.",
                              {rank: failures[0].cause()}) from None
        f = failures[0]
        raise ComputeError(f"{what} failed on rank {f.rank}: {f.etype}: {f.message}",
                           {f.rank: f.cause()}) from None
    causes = {f.rank: f.cause() for f in failures}
    lines = [f"rank {f.rank}: {f.etype}: {f.message}" for f in failures]
    gone = sorted(f.rank for f in failures if f.etype == "EngineError")
    if gone:
        # the same words as when health.wait notices the death first (which one does is a race)
        cluster.health.mark_broken(f"engine(s) of rank(s) {', '.join(map(str, gone))} died during {what}")
        raise EngineError(f"engine(s) of rank(s) {', '.join(map(str, gone))} died during {what}:\n  "
                          + "\n  ".join(lines) + "\nMPI cannot lose a rank: call cluster.restart() for "
                          "a new engine set.", causes) from None
    raise ComputeError(f"{what} failed on rank(s) {', '.join(map(str, sorted(causes)))}:\n  "
                       + "\n  ".join(lines), causes) from None


def wait(cluster, ar, timeout: float | None, what: str) -> list:
    """:meth:`Health.wait <clusterml.client.health.Health.wait>` for ``ar``, then its values."""
    cluster.health.wait(ar, timeout, what)
    try:
        return results(cluster, ar, what)
    finally:
        _forget(cluster, ar)


def _forget(cluster, ar) -> None:
    """Drop a finished call's replies from the client's caches.

    A broadcast view's per-engine replies are not dropped by ipyparallel when
    they arrive (a direct view's are): kept, they would hold every result and
    its per-row handles, so dropped outputs would never be freed on the engines.
    """
    client = cluster.client
    if client is None or not ar.ready():
        return
    ids = list(ar.msg_ids)
    # a broadcast message is tracked under its own id and under "<id>_<engine ident>" per
    # engine; ipyparallel 9 never retires the former (it stays in client.outstanding)
    heads = {m.rpartition("_")[0] for m in ids if "-" in m.rpartition("_")[2]}
    client.outstanding.difference_update(heads)
    view = _BVIEWS.get(cluster)
    if view is not None:
        view[2].outstanding.difference_update(ids)
    try:
        client.purge_local_results(jobs=ids + sorted(heads))
    except Exception:  # still outstanding somewhere (an abandoned call): keep them
        pass


# --------------------------------------------------------------------------
# Data and plain functions


def _is_sparse(obj) -> bool:
    """A scipy.sparse matrix or array (scattered by rows like an array)."""
    return hasattr(obj, "tocsr") and hasattr(obj, "nnz")


def scatter(cluster, data, name: str | None = None, timeout: float | None = None) -> Ref:
    """Split client rows over the engines in rank order; see :meth:`Cluster.scatter`."""
    cluster.health.check_usable()
    if name is not None and not (isinstance(name, str) and name.isidentifier()):
        raise ParameterError(f"scatter name {name!r} must be a Python identifier")
    key = name or engine_name(cluster, "scatter")
    if _is_sparse(data):  # scipy.sparse: rows of a CSR copy (len() is refused by scipy)
        data = data.tocsr()
    try:
        nrows = data.shape[0] if _is_sparse(data) else len(data)
    except TypeError:
        raise ParameterError(f"scatter needs rows (an array or a frame), got {type(data).__name__}") \
            from None
    n = cluster.n
    if hasattr(data, "iloc"):
        blocks = [data.iloc[slice(*block_range(nrows, r, n))] for r in range(n)]
    elif _is_sparse(data):
        blocks = [data[slice(*block_range(nrows, r, n))] for r in range(n)]
    else:
        arr = np.asanyarray(data)  # a masked array keeps its mask (refused on the engines)
        if arr.ndim == 0:
            raise ParameterError("scatter needs rows (an array or a frame), got a scalar")
        blocks = [arr[slice(*block_range(nrows, r, n))] for r in range(n)]
    client = cluster.client
    ars = [client[r].apply_async(Entry("store"), key, blocks[r], name is not None) for r in range(n)]
    for ar in ars:
        wait(cluster, ar, timeout, f"scatter of {nrows} rows")
    return Ref(key)


def free(cluster, *refs) -> None:
    """Forget scattered rows / per-row outputs on the engines."""
    names = [r.name if isinstance(r, Ref) else str(r) for r in refs]
    if names and cluster.view is not None:
        wait(cluster, cluster.view.apply_async(Entry("free"), *names), None, "free")


def gather(cluster, name: str, timeout: float | None = None):
    """Every rank's rows kept under ``name``, stacked in rank order (a frame if they are frames)."""
    cluster.health.check_usable()
    parts = wait(cluster, cluster.view.apply_async(Entry("fetch"), name), timeout, f"gather of {name!r}")
    if parts and hasattr(parts[0], "iloc"):
        import pandas as pd

        return pd.concat(parts)
    return np.concatenate([np.asarray(p) for p in parts], axis=0)


def apply(cluster, f, *args, timeout: float | None = None, **kwargs) -> list:
    """``f(*args, **kwargs)`` on every engine; the values in rank order."""
    cluster.health.check_usable()
    return wait(cluster, broadcast_view(cluster).apply_async(f, *args, **kwargs), timeout,
                getattr(f, "__name__", "apply"))


def noop(cluster, timeout: float | None = None) -> list:
    """One facade round trip doing nothing (for measuring the overhead)."""
    cluster.health.check_usable()
    return wait(cluster, broadcast_view(cluster).apply_async(Entry("noop")), timeout, "noop")
