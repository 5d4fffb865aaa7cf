"""The engine side of the notebook facade (:class:`clusterml.Cluster`).

The facade never ships code to the engines: it sends a *reference* to one of
the functions below (pickled by module and name) with small arguments, and
every engine runs exactly what a ``%%px`` cell would run::

    res = cml.<algorithm>(**params, distributed=True).compute(**inputs)

This module must not import ipyparallel: it runs on engines started by any
launcher, and equally under plain ``mpiexec``.  It reaches the engine's
interactive namespace (where ``%%px`` cells bind names) through IPython.

Objects that stay on the engines (scattered rows, per-row outputs such as
k-means assignments) live in :data:`STORE` under names the client chooses;
:class:`Ref` names such an object, or a variable of the interactive
namespace, wherever a data argument is expected.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, RankFailure
from . import comm

__all__ = ["Ref", "Entry", "STORE", "setup", "engine_info", "run_call", "store", "fetch", "free",
           "per_row_fields", "digest", "PER_ROW_FIELDS"]

#: Objects kept on this engine for the client: ``name -> object``.
STORE: dict = {}

#: Result fields that hold this rank's rows (they differ between ranks by design,
#: stay on the engines and are fetched with ``.gather()``).  An algorithm may add
#: its own with a ``per_row_fields`` class attribute.
PER_ROW_FIELDS = frozenset({"assignments", "leftSingularMatrix", "prediction", "predictions",
                            "probabilities", "logProbabilities", "transformedData"})


@dataclass(frozen=True)
class Ref:
    """The name of an object on every engine (scattered rows, a ``%%px`` variable, an output).

    Resolved on each engine: first in :data:`STORE`, then in the interactive
    namespace.  Small and picklable, so it travels inside a call's input spec.
    """

    name: str

    def __repr__(self):
        return f"Ref({self.name!r})"


def _user_ns() -> dict:
    try:
        from IPython import get_ipython

        ip = get_ipython()
    except ImportError:  # pragma: no cover - IPython ships with every engine
        ip = None
    if ip is not None:
        return ip.user_ns
    return sys.modules["__main__"].__dict__


def _lookup(name: str):
    if name in STORE:
        return STORE[name]
    ns = _user_ns()
    if name in ns:
        return ns[name]
    raise InputError(f"no variable {name!r} on this engine; bind it in a %%px cell "
                     f"or send rows with cluster.scatter(...)")


# --------------------------------------------------------------------------
# Setup and identity


_WARM = {"thread": None, "error": None, "loaded": threading.Event()}
_WARM_DELAY = 0.05
_WARM_LOCK = threading.Lock()


def setup() -> dict:
    """Initialise clusterml on this engine and bind ``cml`` for ``%%px`` cells.

    Collective (``init`` duplicates the world communicator).  Returns
    :func:`engine_info` at once; the algorithms are loaded by :func:`warm_up`
    in a background thread, which every call of this module waits for
    (:func:`ready`), so the engines register and answer quickly while the
    first call never pays a surprise nor races with the loading.

    Returns
    -------
    dict
        :func:`engine_info` of this engine.
    """
    import clusterml

    comm.init(defer_blas=True)  # the BLAS thread limit is applied by the warm-up
    start_warm_up()
    ns = _user_ns()
    ns.setdefault("cml", clusterml)
    return engine_info()


def start_warm_up() -> threading.Thread:
    """Run :func:`warm_up` in a daemon thread (once per engine process).

    The thread loads the algorithms and kernels first and then marks this
    engine ready (:func:`ready`); pandas, needed only for CSV and DataFrame
    inputs, is imported after that, so the first call on arrays does not wait
    for it (a call that needs pandas waits for that import through Python's
    import lock, never races with it).

    Returns
    -------
    threading.Thread
        The warm-up thread (the same one on every call).
    """
    with _WARM_LOCK:
        if _WARM["thread"] is None:
            def run():
                # let the setup reply leave before the imports take the GIL
                time.sleep(_WARM_DELAY)
                try:
                    warm_up(with_pandas=False)
                except BaseException as exc:
                    _WARM["error"] = exc
                finally:
                    _WARM["loaded"].set()
                try:
                    import pandas  # noqa: F401  (CSV / DataFrame inputs; after the algorithms)
                except ImportError:  # pragma: no cover - a dependency; the input path says so
                    pass

            _WARM["thread"] = threading.Thread(target=run, name="clusterml-warm-up", daemon=True)
            _WARM["thread"].start()
        return _WARM["thread"]


def ready(timeout: float | None = None) -> bool:
    """Wait for a background :func:`warm_up` (if one runs); True once the algorithms are loaded.

    A warm-up that failed is not raised here: the call that needs the failing
    import raises the same error itself, as a normal error reply.

    Parameters
    ----------
    timeout : float, optional
        Seconds to wait at most (default: until loaded).

    Returns
    -------
    bool
        True when no warm-up runs or it has loaded the algorithms.
    """
    if _WARM["thread"] is None:
        return True
    return _WARM["loaded"].wait(timeout)


def warm_up(with_pandas: bool = True) -> None:
    """Do now what the first call would otherwise do inside the user's (timed) call.

    Imports scipy.linalg, applies the BLAS thread limit
    :func:`~clusterml.spmd.comm.init` chose, loads (or, the first time on this
    machine, compiles) the numba kernels by running them on a tiny array,
    imports every algorithm and, if asked, pandas.

    Parameters
    ----------
    with_pandas : bool
        Also import pandas (CSV / DataFrame inputs).
    """
    import scipy.linalg  # noqa: F401  (BLAS / LAPACK kernels)

    comm.apply_blas_threads()
    from ..kernels import covariance, fused, kmeans, moments, naive_bayes
    from . import load_algorithms
    from .inputs import check_finite

    for dt in (np.float64, np.float32):      # both precisions (fptype, float32 inputs)
        tiny = np.arange(4.0, dtype=dt).reshape(2, 2)
        moments.partial(tiny)
        covariance.partial(tiny)
        check_finite(tiny)
        labels = np.zeros(2, dtype=np.int32)
        fused.assign_accumulate(tiny, np.zeros(2), tiny, np.zeros(2), tiny.astype(np.float64),
                                labels, np.zeros((2, 2)), np.zeros(2, np.int64))
        naive_bayes.partial(tiny, np.zeros(2, dtype=dt), 2)
    rows = np.arange(16.0).reshape(8, 2)
    for method in ("plusPlusDense", "parallelPlusDense"):   # the seeding passes, exact sums
        kmeans.init_centroids(kmeans.Chunks([kmeans.Rows(rows)]), method, 3)
    load_algorithms()
    if with_pandas:
        import pandas  # noqa: F401  (CSV / DataFrame inputs)


def engine_info() -> dict:
    """Who this engine is: MPI rank and world size, host, pid, versions."""
    import clusterml

    info = comm.mpi_info()
    return {
        "rank": info["world_rank"],
        "size": info["world_size"],
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "version": clusterml.__version__,
        "python": sys.version.split()[0],
        "mpi": info["library"],
        "cml_rank": comm.my_procid() if comm.is_initialized() else None,
        "cml_size": comm.num_procs() if comm.is_initialized() else None,
        "blas_threads": comm.blas_threads(),
    }


def reset_comm() -> bool:
    """Replace clusterml's communicator by a fresh one (collective).

    Used after an interrupted call that every engine survived: messages of
    the interrupted collective can never match the new communicator's.
    """
    comm.fini()
    comm.init()
    return True


# --------------------------------------------------------------------------
# Objects kept on the engines


def store(name: str, obj, bind: bool = False) -> int:
    """Keep ``obj`` under ``name`` (also in the interactive namespace if ``bind``)."""
    STORE[name] = obj
    if bind:
        _user_ns()[name] = obj
    n = _nrows(obj)  # scipy.sparse refuses len()
    return n if n is not None else (len(obj) if hasattr(obj, "__len__") else 1)


def fetch(name: str):
    """Return the object named ``name`` (STORE first, then the interactive namespace)."""
    return _lookup(name)


def free(*names: str) -> int:
    """Forget objects kept in :data:`STORE` (names not there are ignored)."""
    n = 0
    for name in names:
        if STORE.pop(name, None) is not None:
            n += 1
    return n


# --------------------------------------------------------------------------
# One broadcast call


def per_row_fields(algo) -> frozenset:
    return PER_ROW_FIELDS | frozenset(getattr(type(algo), "per_row_fields", ()))


def _canonical(obj):
    """A picklable form whose bytes are equal iff the values are (arrays via ``tobytes``)."""
    from .algorithm import Result

    if isinstance(obj, Result):
        return ("Result", obj._kind, tuple((k, _canonical(getattr(obj, k))) for k in obj.fields()))
    if isinstance(obj, np.ndarray):
        return ("ndarray", obj.dtype.str, obj.shape, np.ascontiguousarray(obj).tobytes())
    if isinstance(obj, dict):
        return ("dict", tuple((k, _canonical(v)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, tuple(_canonical(v) for v in obj))
    if isinstance(obj, np.generic):
        return ("scalar", obj.dtype.str, obj.tobytes())
    return obj


def digest(obj) -> str:
    """sha256 of the canonical pickle of ``obj`` (same bits -> same digest)."""
    return hashlib.sha256(pickle.dumps(_canonical(obj), protocol=4)).hexdigest()


def _nrows(value):
    shape = getattr(value, "shape", None)
    return int(shape[0]) if shape else None


def _resolve(value):
    return _lookup(value.name) if isinstance(value, Ref) else value


def run_call(name: str, params: dict, inputs: dict, call_id: str, full_rank: int = 0,
             drop: tuple = ()) -> dict:
    """Run one algorithm call collectively, as a ``%%px`` cell would.

    Parameters
    ----------
    name : str
        A key of :data:`clusterml.spmd.REGISTRY`.
    params : dict
        Constructor parameters (without ``distributed``).
    inputs : dict
        ``compute`` inputs by name: paths, :class:`~clusterml.spmd.inputs.Partition`,
        :class:`Ref`, or small replicated objects (a model, initial centroids).
    call_id : str
        Per-row outputs are kept in :data:`STORE` as ``f"{call_id}.{field}"``.
    full_rank : int
        The rank that returns the whole result; the others return only its digest.
    drop : tuple of str
        Names to forget from :data:`STORE` first (outputs the client no longer references).

    Returns
    -------
    dict
        ``status`` ("ok" or "error"), ``rank``, ``digest``, ``result`` (on
        ``full_rank`` only, per-row fields replaced by None), ``rows``
        (``field -> (shape, dtype)`` of kept per-row outputs), ``seconds``; or,
        for an error, ``failure``: a :class:`~clusterml.errors.RankFailure`.
        Errors are returned, not raised, so clusterml's error classes and the
        per-rank causes survive the trip intact.
    """
    rank = comm.my_procid()
    t0 = time.perf_counter()
    ready()
    free(*drop)
    try:
        from . import REGISTRY
        from .algorithm import Result
        from .inputs import Rows

        cls = REGISTRY.get(name)
        if cls is None:
            raise KeyError(f"no algorithm {name!r} on this engine (known: {', '.join(sorted(REGISTRY))})")
        algo = cls(**params, distributed=True)
        if any(isinstance(v, Ref) for v in inputs.values()):
            ctx = comm.context(True)
            box = {}

            def resolve():
                box.update({k: _resolve(v) for k, v in inputs.items()})
                return {k: _nrows(box[k]) for k in cls._tables if isinstance(inputs.get(k), Ref)}

            counts = ctx.allgather(resolve, step="resolve references")
            for k in counts[ctx.rank]:
                # the block's first row in the rows the user scattered: errors name the user's row
                box[k] = Rows(box[k], sum(c.get(k) or 0 for c in counts[:ctx.rank]))
            inputs = box
        res = algo.compute(**inputs)
        rows = {}
        shared = res
        if isinstance(res, Result):
            keep = [f for f in res.fields()
                    if f in per_row_fields(algo) and isinstance(getattr(res, f), np.ndarray)]
            if keep:
                shared = Result(res._kind, **{f: (None if f in keep else getattr(res, f))
                                              for f in res.fields()})
                for f in keep:
                    arr = getattr(res, f)
                    STORE[f"{call_id}.{f}"] = arr
                    rows[f] = (arr.shape, arr.dtype.str)
        d = digest(shared)
        return {"status": "ok", "rank": rank, "digest": d, "rows": rows,
                "result": shared if rank == full_rank else None,
                "seconds": time.perf_counter() - t0}
    except BaseException as exc:
        return {"status": "error", "rank": rank, "failure": RankFailure.from_exception(exc, rank),
                "seconds": time.perf_counter() - t0}


def noop() -> int:
    """A call that does nothing (the facade's own round trip is measured with it)."""
    return comm.my_procid()


class Entry:
    """A picklable reference to one function of this module.

    The client sends ``Entry("run_call")`` instead of the function itself, so
    only a module and a name travel (no code object) and the engine always
    runs its own installed clusterml.
    """

    __slots__ = ("name",)

    def __init__(self, name: str):
        if name not in _ENTRIES:
            raise ValueError(f"{name!r} is not an engine entry point ({', '.join(sorted(_ENTRIES))})")
        self.name = name

    def __call__(self, *args, **kwargs):
        return globals()[self.name](*args, **kwargs)

    def __reduce__(self):
        return (Entry, (self.name,))

    def __repr__(self):
        return f"Entry({self.name!r})"


_ENTRIES = frozenset({"setup", "engine_info", "reset_comm", "store", "fetch", "free", "run_call",
                      "noop"})
