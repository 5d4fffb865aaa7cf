"""The user-facing calls of :class:`~clusterml.Cluster`: algorithms, data, plain functions, farming.

Each method delegates: algorithm calls and data to :mod:`clusterml.client.calls`,
task farming to :mod:`clusterml.client.farm`, :mod:`clusterml.client.futures`
and :mod:`clusterml.client.joblib_backend`.  :class:`~clusterml.Cluster`
inherits them from the two mixins here.
"""

from __future__ import annotations

from ..errors import ParameterError
from ..spmd import REGISTRY
from ..spmd.remote import Ref
from . import calls
from .calls import RemoteAlgorithm

__all__ = ["AlgorithmMethods", "FarmMethods"]


class AlgorithmMethods:
    """``cluster.<algorithm>(...)``, and the data on the engines (scatter, gather, apply)."""

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(REGISTRY))

    def __getattr__(self, name):
        if name.startswith("_") and name not in REGISTRY:
            raise AttributeError(name)
        if name in REGISTRY:
            def make(*args, **kwargs):
                return RemoteAlgorithm(self, name, *args, **kwargs)

            make.__name__ = name
            make.__doc__ = REGISTRY[name].__doc__
            return make
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r} "
                             f"(algorithms: {', '.join(sorted(REGISTRY))})")

    def ref(self, name: str) -> Ref:
        """Name a variable that a ``%%px`` cell bound on every engine (its rows on each rank)."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ParameterError(f"ref name {name!r} must be a Python identifier")
        return Ref(name)

    def scatter(self, data, name: str | None = None, timeout: float | None = None) -> Ref:
        """Split client rows over the engines in rank order (contiguous blocks).

        Parameters
        ----------
        data : ndarray, pandas DataFrame or Series
            The rows; rank r gets rows ``[n*r//size, n*(r+1)//size)``.
        name : str, optional
            Also bind the block to this name in each engine's namespace (so a
            ``%%px`` cell can use it).

        Returns
        -------
        Ref
            Accepted wherever a data argument is expected.
        """
        return calls.scatter(self, data, name, timeout)

    def free(self, *refs):
        """Forget scattered rows / per-row outputs on the engines."""
        calls.free(self, *refs)

    def gather(self, ref, timeout: float | None = None):
        """Fetch the rows named by ``ref`` (a Ref, an EngineArray or a name) from every rank, in order."""
        return calls.gather(self, ref.name if isinstance(ref, Ref) else str(ref), timeout)

    def apply(self, f, *args, timeout: float | None = None, **kwargs) -> list:
        """Run ``f(*args, **kwargs)`` on every engine; return the values in rank order."""
        return calls.apply(self, f, *args, timeout=timeout, **kwargs)

    def _noop(self, timeout=None):
        """One facade round trip doing nothing (for measuring the overhead)."""
        return calls.noop(self, timeout)


class FarmMethods:
    """Task farming on the cluster's engines (map, imap, submit, share, joblib)."""

    def map(self, f, *iterables, ordered: bool = True, chunksize: int | None = None,
            timeout: float | None = None, progress: bool | None = None) -> list:
        """``map(f, *iterables)`` load-balanced over the engines; a list of results in order.

        Usable as DEAP's ``toolbox.register("map", cluster.map)``.  The first
        task that raises is reported as a :class:`~clusterml.client.farm.TaskError`
        naming its index.  See :func:`clusterml.client.farm.farm_map`.
        """
        from .farm import farm_map

        return farm_map(self, f, *iterables, ordered=ordered, chunksize=chunksize, timeout=timeout,
                        progress=progress)

    def joblib(self, n_jobs: int | None = -1, timeout: float | None = None, **config):
        """``with cluster.joblib():`` runs joblib, and scikit-learn's ``n_jobs``, on the engines.

        See :func:`clusterml.client.joblib_backend.joblib_config`.
        """
        from .joblib_backend import joblib_config

        return joblib_config(self, n_jobs=n_jobs, timeout=timeout, **config)

    def __reduce__(self):
        from .farm import nested_use_error

        raise nested_use_error("sending a Cluster to the engines (a task using `cluster`)")

    def share(self, timeout: float | None = None, **values) -> list:
        """Send ``name=value`` once to every engine: visible by name to every task and ``%px`` cell.

        See :func:`clusterml.client.futures.share`; :meth:`unshare` frees them.
        """
        from .futures import share

        return share(self, timeout=timeout, **values)

    def unshare(self, *names: str, timeout: float | None = None) -> list:
        """Free shared names on every engine (no names: all of them)."""
        from .futures import unshare

        return unshare(self, *names, timeout=timeout)

    def submit(self, f, /, *args, **kwargs):
        """Run ``f(*args, **kwargs)`` on a free engine; a :class:`concurrent.futures.Future`."""
        from .futures import submit

        return submit(self, f, *args, **kwargs)

    def map_async(self, f, *iterables, ordered: bool = True, chunksize: int | None = None,
                  timeout: float | None = None):
        """Send every task of :meth:`map` now; a :class:`concurrent.futures.Future` of the list."""
        from .futures import map_async

        return map_async(self, f, *iterables, ordered=ordered, chunksize=chunksize, timeout=timeout)

    def imap(self, f, *iterables, ordered: bool = True, chunksize: int | None = None,
             timeout: float | None = None, progress: bool | None = False):
        """:meth:`map` that yields results as they finish (``ordered=False``: completion order)."""
        from .farm import farm_imap

        return farm_imap(self, f, *iterables, ordered=ordered, chunksize=chunksize, timeout=timeout,
                         progress=progress)

    def map_reduce(self, f, op, *iterables, initial=None, chunksize: int | None = None,
                   timeout: float | None = None, progress: bool | None = None):
        """``functools.reduce(op, map(f, *iterables))``, each chunk folded on its engine."""
        from .futures import _MISSING, map_reduce

        return map_reduce(self, f, op, *iterables, initial=_MISSING if initial is None else initial,
                          chunksize=chunksize, timeout=timeout, progress=progress)

