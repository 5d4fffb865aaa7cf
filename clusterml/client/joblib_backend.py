"""The joblib backend of a :class:`~clusterml.Cluster`: ``with cluster.joblib():``.

scikit-learn's ``n_jobs`` and ``joblib.Parallel`` run their batches on the
engines, each batch on whichever engine is free, with the same shipping rules
(cloudpickle), error reports and dead-engine checks as :mod:`clusterml.client.farm`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import pickle
import time
import weakref

from ..errors import EngineError, ParameterError
from .farm import _lview
from .shared import _dumps, _run_call
from .tasks import _POLL, _abort, _dead_engines, _engine_of, _forget, _interrupt, _task_failure

__all__ = ["JOBLIB_BACKEND_NAME", "joblib_config", "register_joblib_backend"]

#: Name under which :func:`register_joblib_backend` (and ``cluster.joblib()``) registers the backend.
JOBLIB_BACKEND_NAME = "clusterml"

log = logging.getLogger("clusterml.client")


def _wait_batch(cluster, out, limit: float, what: str) -> None:
    """Wait for one joblib batch, watching dead engines, the deadline and Ctrl-C."""
    deadline = time.monotonic() + limit
    try:
        while not out.ready():
            out.wait(_POLL)
            if out.ready():
                break
            _dead_engines(cluster, [out], what, lambda *_: "")
            if time.monotonic() > deadline:
                _interrupt(cluster, [out], what, f"timed out after {limit:g} s")
    except KeyboardInterrupt:
        _interrupt(cluster, [out], what, "interrupted (Ctrl-C)", keyboard=True)


class _ClusterBackendMethods:
    """ipyparallel's joblib backend on the engines of one :class:`~clusterml.Cluster`.

    Differences from ipyparallel's own: batches travel with cloudpickle
    without changing ipyparallel's serializer; an exception in a batch is
    raised on the client as the original exception (with the remote
    traceback as a note), as with joblib's own backends; every wait watches
    for dead engines and has a timeout; ``abort_everything`` drops the
    batches not yet started; and a one-engine cluster still runs the
    batches on its engine (joblib runs ``n_jobs == 1`` in the calling
    process, so one engine counts as two workers: one running, one queued).

    Parameters
    ----------
    cluster : clusterml.Cluster
    timeout : float, optional
        Seconds one batch may take (default: the cluster's ``timeout``).
    """

    default_n_jobs = -1  # inside `with cluster.joblib()`, n_jobs=None means every engine
    supports_retrieve_callback = False

    def __init__(self, cluster=None, timeout=None, **kwargs):
        # AutoBatchingMixin's and ParallelBackendBase's __init__, not ipyparallel's (which
        # would connect a client of its own)
        super(self._ipp_backend, self).__init__(**kwargs)
        self._cluster_owner = False
        self._client_owner = False
        if cluster is None:
            raise ParameterError("ClusterBackend needs a cluster (use `with cluster.joblib():`)")
        self._cluster_ref = weakref.ref(cluster)
        self._timeout = timeout
        self._ars = []
        self._view_gen = None
        self._view = None

    # the view follows restarts of the cluster
    @property
    def cluster(self):
        c = self._cluster_ref()
        if c is None:
            raise EngineError("the cluster of this joblib backend is gone")
        return c

    def _get_view(self):
        return _lview(self.cluster)

    def effective_n_jobs(self, n_jobs):
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        engines = len(self._get_view().targets or self.cluster.client.ids)
        if n_jobs is None or n_jobs < 0:
            n = engines + 1 + n_jobs if (n_jobs is not None and n_jobs < -1) else engines
            return max(2, n)
        return n_jobs

    def submit(self, func, callback=None):
        # joblib calls this from its callback (ipyparallel's I/O thread) too, where an
        # exception would be lost and joblib would wait for a batch that never ran: a
        # failure to submit becomes a failed future that retrieve_result raises.
        try:
            ar = self._get_view().apply_async(_run_call, _dumps(func))
        except Exception as exc:
            ar = concurrent.futures.Future()
            ar.set_exception(exc)
        else:
            self._ars = [a for a in self._ars if not a.ready()] + [ar]
        if callback:
            # joblib only needs to hear that a batch ended (it dispatches the next one);
            # the result or the error is fetched by retrieve_result.
            def done(_):
                try:
                    callback(None)
                except Exception as exc:  # already reported through retrieve_result
                    log.debug("joblib callback failed: %r", exc)

            ar.add_done_callback(done)
        return ar

    apply_async = submit  # the name joblib < 1.5 calls

    def retrieve_result(self, out, timeout=None):
        import ipyparallel as ipp

        if not hasattr(out, "msg_ids"):  # a batch that could not be submitted
            return out.result()
        cluster = self.cluster
        limit = timeout if timeout is not None else (self._timeout if self._timeout is not None
                                                     else cluster.timeout)
        what = "joblib batch"
        _wait_batch(cluster, out, limit, what)
        eid = _engine_of(cluster, out)
        try:
            reply = pickle.loads(out.get(0))
        except ipp.error.EngineError as exc:
            cluster.health.mark_broken(f"an engine died during a {what}")
            raise EngineError(f"{what}: the engine running it died ({exc}); MPI cannot lose a "
                              f"rank: call cluster.restart()") from None
        finally:
            _forget(cluster, [out])
        if reply[0] == "ok":
            return reply[1]
        _, _, failure, stage = reply
        err = _task_failure(what, None, None, eid, failure, stage)
        if err.exception is not None and stage is None:
            exc = err.exception
            if hasattr(exc, "add_note"):
                exc.add_note(f"(raised on engine {eid}; remote traceback:)\n{failure.traceback.rstrip()}")
            raise exc
        raise err

    def abort_everything(self, ensure_ready=True):
        if self._cluster_ref() is not None:
            _abort(self.cluster, self._ars)
        self._ars = []

    def terminate(self):
        pass  # the cluster belongs to the notebook, not to joblib

    def __reduce__(self):
        raise TypeError("a ClusterBackend cannot be sent to the engines")


def _backend_class():
    """``ClusterBackend``: the methods above on ipyparallel's joblib backend (made once, lazily:
    ipyparallel's backend module needs joblib, an optional extra)."""
    global _BACKEND_CLASS
    if _BACKEND_CLASS is None:
        from ipyparallel.client._joblib import IPythonParallelBackend

        _BACKEND_CLASS = type("ClusterBackend", (_ClusterBackendMethods, IPythonParallelBackend), {
            "__doc__": _ClusterBackendMethods.__doc__, "__module__": __name__,
            "_ipp_backend": IPythonParallelBackend})
    return _BACKEND_CLASS


_BACKEND_CLASS = None


def __getattr__(name):
    # ClusterBackend subclasses ipyparallel's backend, which needs joblib (an optional extra)
    if name == "ClusterBackend":
        return _backend_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _need_joblib():
    try:
        import joblib  # noqa: F401
    except ImportError:
        raise ImportError("cluster.joblib() needs joblib: pip install 'clusterml[farm]'") from None


def register_joblib_backend(cluster, name: str = JOBLIB_BACKEND_NAME, timeout: float | None = None):
    """Register this cluster's engines as joblib backend ``name`` (``parallel_config(backend=name)``)."""
    _need_joblib()
    from joblib import register_parallel_backend

    cls = _backend_class()
    ref = weakref.ref(cluster)

    def factory(**kwargs):
        c = ref()
        if c is None:
            raise EngineError(f"the cluster registered as joblib backend {name!r} is gone")
        return cls(c, timeout=timeout, **kwargs)

    register_parallel_backend(name, factory)
    return name


def joblib_config(cluster, n_jobs: int | None = -1, timeout: float | None = None, **config):
    """``with cluster.joblib():`` — run joblib (and scikit-learn's ``n_jobs``) on the engines.

    Returns :class:`joblib.parallel_config` with a :class:`ClusterBackend`
    of this cluster, usable as a context manager.  The backend is also
    registered under the name ``"clusterml"`` so ``parallel_config(backend="clusterml")``
    and ``Parallel(backend="clusterml")`` reach this cluster.

    Parameters
    ----------
    n_jobs : int, optional
        Default ``n_jobs`` of ``Parallel`` calls inside the block (-1: every
        engine).  An explicit ``n_jobs`` of a call wins; ``n_jobs=1`` runs in
        the notebook, as joblib does.
    timeout : float, optional
        Seconds one batch may take (default: the cluster's ``timeout``).
    **config
        Other :func:`joblib.parallel_config` settings (``verbose``, ...).
    """
    _need_joblib()
    import joblib

    cluster.health.check_usable()
    register_joblib_backend(cluster, timeout=timeout)
    backend = _backend_class()(cluster, timeout=timeout)
    return joblib.parallel_config(backend=backend, n_jobs=n_jobs, **config)
