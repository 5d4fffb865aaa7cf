"""``cml.Cluster``: run clusterml's SPMD algorithms from a notebook on ipyparallel MPI engines.

A :class:`Cluster` owns (or attaches to) one ipyparallel controller and one
MPI world of engines in which engine id == MPI rank.  Every algorithm call is
one broadcast: each engine receives the same small message (algorithm name,
parameters, input spec) and runs what a ``%%px`` cell would run::

    cml.<algorithm>(**params, distributed=True).compute(**inputs)

The facade adds no math.  It checks that every engine computed the same
result (a sha256 digest of the result's bytes; only one engine sends the
result itself), keeps per-row outputs on the engines, turns engine
exceptions into one :class:`~clusterml.DistributedError`, puts a timeout on
every wait and notices dead engines instead of waiting on them.

Processes are never left behind: :meth:`Cluster.stop`, leaving a ``with``
block and interpreter exit stop the controller, ``mpiexec`` and every
engine; a kernel killed with SIGKILL leaves a record that :func:`stop_all`
(and the next :class:`Cluster` started with the same profile) uses to stop
what it left running.
"""

from __future__ import annotations

import glob
import itertools
import logging
import os
import socket
import time

import numpy as np

from .. import __version__
from ..errors import EngineError, ParameterError
from ..launch.lifecycle import list_clusters, stop_all
from ..launch.records import _alive, _check_batch_values, _owner_only, _profile_dir
from ..spmd.remote import Entry
from .calls import EngineArray, RemoteAlgorithm
from .controller import reset_watch
from .methods import AlgorithmMethods, FarmMethods
from .processes import _LIVE, _LIVE_LOCK, ProcessMethods

__all__ = ["Cluster", "RemoteAlgorithm", "EngineArray", "stop_all", "list_clusters",
           "default_mpiexec", "DEFAULT_PROFILE", "DEFAULT_TIMEOUT", "DEFAULT_START_TIMEOUT"]

log = logging.getLogger("clusterml.client")

#: Profile of the embedded default (local MPI engines, loopback only).
DEFAULT_PROFILE = "clusterml-local"
#: Default timeout of one call, in seconds (generous: real work can take long).
DEFAULT_TIMEOUT = 3600.0
#: Default timeout for the engines of a new cluster to register, in seconds.
DEFAULT_START_TIMEOUT = 120.0
# Poll interval of every wait: short, so a dead engine is noticed quickly.
_POLL = 0.1


def default_mpiexec() -> str:
    """The ``mpiexec`` next to this interpreter (it belongs to the MPI mpi4py uses)."""
    from ..launch.mpi import which_mpiexec

    try:
        return which_mpiexec(required=True)
    except FileNotFoundError as exc:
        raise EngineError(f"{exc}, or pass mpiexec=...") from None


# --------------------------------------------------------------------------
# The facade


class Cluster(AlgorithmMethods, FarmMethods, ProcessMethods):
    """An ipyparallel controller and one MPI world of engines, driven from the notebook.

    Parameters
    ----------
    n : int
        Number of engines (= MPI ranks).  Required unless the profile says.
    profile : str, optional
        An IPython profile whose ipcluster configuration says how to launch
        (e.g. ``"clusterml-slurm"``).  Default: the embedded default —
        controller on 127.0.0.1 and ``n`` engines under the ``mpiexec`` next
        to this interpreter, nothing loaded from any profile config.
    timeout : float
        Default timeout of every call, in seconds.
    start_timeout : float
        Seconds the engines get to register.
    engine_env : dict, optional
        Extra environment variables for the engines (e.g. ``PYTHONPATH``,
        ``OMP_NUM_THREADS``).
    mpiexec : str, optional
        The ``mpiexec`` for MPI engine sets (default: :func:`default_mpiexec`).
    mpi_args : list of str, optional
        Extra ``mpiexec`` arguments.
    start : bool
        Start now (default).  Otherwise call :meth:`start` or use ``with``.
    **launcher_settings
        Passed to :class:`ipyparallel.Cluster` (``engines=``, ``controller=``,
        ``controller_ip=``, ``controller_args=``, ``config=``, ...).

    Examples
    --------
    >>> import numpy as np, clusterml as cml
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> with cml.Cluster(n=2) as cluster:              # two local MPI engines
    ...     res = cluster.covariance().compute(cluster.scatter(X))
    ...     n = len(cluster)
    >>> n, bool(np.allclose(res.covariance, np.cov(X.T)))
    (2, True)
    """

    def __init__(self, n: int | None = None, profile: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, start_timeout: float | None = None,
                 engine_env: dict | None = None, mpiexec: str | None = None,
                 mpi_args: list | None = None, start: bool = True, **launcher_settings):
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
            raise ParameterError(f"n={n!r} must be a positive integer (the number of engines)")
        self.n = None if n is None else int(n)
        self.profile = profile
        self.timeout = float(timeout)
        # None: the profile's engine_timeout (e.g. 300 s in clusterml-slurm, queue time included)
        self.start_timeout = None if start_timeout is None else float(start_timeout)
        self.engine_env = dict(engine_env or {})
        self.mpiexec = mpiexec
        self.mpi_args = list(mpi_args or [])
        self.launcher_settings = launcher_settings
        self._owned = True
        self._cluster_file = None
        self._ipp = None
        self._client = None
        self._view = None
        self.engines: list[dict] = []
        self._broken: str | None = None
        self._controller_gone: str | None = None  # why, once a look saw the controller gone
        self._controller_watch: dict | None = None  # clusterml.client.controller's looks
        self._garbage: list = []
        self._ids = itertools.count()
        self._generation = 0
        self._record = None
        if start:
            self.start()

    # -- lifecycle ---------------------------------------------------------
    @classmethod
    def connect(cls, profile: str | None = None, cluster_id: str | None = None, *,
                n: int | None = None, timeout: float = DEFAULT_TIMEOUT,
                start_timeout: float | None = None) -> Cluster:
        """Attach to a running cluster (``ipcluster start`` or another :class:`Cluster`).

        Parameters
        ----------
        profile : str, optional
            Default ``clusterml-local``.
        cluster_id : str, optional
            Needed only when the profile has several running clusters.
        n : int, optional
            Engines to wait for (default: those registered now).

        :meth:`stop` on an attached cluster only disconnects;
        :meth:`shutdown` stops it.
        """
        self = cls(n=n, profile=profile, timeout=timeout, start_timeout=start_timeout, start=False)
        self._owned = False
        pdir = _profile_dir(profile, create=False)
        files = sorted(glob.glob(os.path.join(pdir, "security", "cluster-*.json")))
        if cluster_id is None:
            if len(files) != 1:
                ids = [os.path.basename(f)[8:-5] for f in files]
                raise EngineError(f"{len(files)} clusters recorded in {pdir}"
                                  + (f" ({', '.join(ids)}); pass cluster_id=" if ids else
                                     "; start one with cml.Cluster(...) or ipcluster start"))
            cf = files[0]
        else:
            cf = os.path.join(pdir, "security", f"cluster-{cluster_id}.json")
            if not os.path.exists(cf):
                raise EngineError(f"no cluster {cluster_id!r} recorded in {pdir}")
        import ipyparallel as ipp

        self._ipp = ipp.Cluster.from_file(cf, log=log)
        self._ipp.shutdown_atexit = False
        self._cluster_file = cf
        self._connect()
        reset_watch(self)
        return self

    def start(self) -> Cluster:
        """Start the controller and the MPI engines, connect, and set every engine up.

        Idempotent on a running cluster.  Stops clusters of this profile left
        behind by a killed kernel first.
        """
        if self._client is not None:
            return self
        if not self._owned:
            raise EngineError("this Cluster is attached with Cluster.connect(); it cannot start one")
        import ipyparallel as ipp

        pdir = _profile_dir(self.profile)
        _owner_only(pdir)
        stopped = stop_all(pdir, only_orphans=True)
        if stopped:
            log.warning("stopped cluster(s) %s left behind by a killed client", ", ".join(stopped))
        kw = dict(self.launcher_settings)
        config = kw.pop("config", None)
        from traitlets.config import Config

        cfg = Config(config) if config is not None else Config()
        if self.profile is None:
            kw.setdefault("engines", "clusterml-mpi")
            kw.setdefault("controller_ip", "127.0.0.1")
            kw.setdefault("load_profile", False)
            kw.setdefault("engine_timeout", int(DEFAULT_START_TIMEOUT))
            # a local cluster listens on loopback only: keep MPI's own transports there too
            cfg.ClusterMLMPIEngineSetLauncher.loopback_only = True
        if self.start_timeout is not None:
            kw["engine_timeout"] = int(self.start_timeout)  # else the profile's own
        kw.setdefault("log_level", logging.WARNING)
        self._ipp = ipp.Cluster(profile_dir=pdir, n=self.n, config=cfg, shutdown_atexit=False, **kw)
        _check_batch_values(self._ipp)
        # The mpiexec of mpi4py's MPI, unless the user or the profile chose one.
        if issubclass(self._ipp.engine_launcher_class, ipp.cluster.launcher.MPILauncher):
            chosen = self._ipp.config.get("MPIEngineSetLauncher", {}).get("mpi_cmd") or \
                self._ipp.config.get("MPILauncher", {}).get("mpi_cmd")
            if self.mpiexec or not chosen:
                self._ipp.config.MPIEngineSetLauncher.mpi_cmd = [self.mpiexec or default_mpiexec()]
            if self.mpi_args:
                self._ipp.config.MPIEngineSetLauncher.mpi_args = self.mpi_args
        if self.n is None:
            self.n = self._ipp.n
        if self.n is None:
            raise ParameterError("n is required: how many engines (MPI ranks) to start")
        with _LIVE_LOCK:
            _LIVE.add(self)
        t0 = time.monotonic()
        try:
            self._ipp.start_controller_sync()
            self._write_record()
            self._ipp.start_engines_sync(self.n, environment=dict(self.engine_env))
            self._write_record()
            self._cluster_file = self._ipp.cluster_file
            self._connect(t0=t0)
            reset_watch(self)
        except BaseException:
            self._teardown()
            raise
        return self

    def _engine_timeout(self) -> float:
        if self.start_timeout is not None:
            return self.start_timeout
        return float(getattr(self._ipp, "engine_timeout", 0) or DEFAULT_START_TIMEOUT)

    def _connect(self, t0=None):
        from ..launch.wait import connect_client, wait_for_engines

        t0 = t0 or time.monotonic()
        what = f"cluster {self.cluster_id} of profile {self.profile or DEFAULT_PROFILE}"
        self._client = connect_client(self._ipp, what)
        if self.n is None:
            self.n = len(self._client.ids)
            if not self.n:
                raise EngineError(f"no engines registered in cluster {self.cluster_id!r}; pass n=")
        wait_for_engines(self._ipp, self._client, self.n, self._engine_timeout(), started=t0, what=what)
        ids = sorted(self._client.ids)
        self._view = self._client[ids]
        self._view.block = True
        self._generation += 1
        self._setup()
        self._write_record()
        self._activate()

    def _setup(self):
        ar = self._view.apply_async(Entry("setup"))
        infos = self._wait(ar, self._engine_timeout(), "engine setup (clusterml.init)")
        ids = list(ar.engine_id)
        problems = []
        sizes = sorted({i["size"] for i in infos})
        if sizes != [self.n]:
            why = (" (each engine is an MPI singleton: its mpiexec does not match mpi4py's MPI, "
                   "or the launcher runs no MPI)" if sizes == [1] and self.n > 1 else "")
            problems.append(f"MPI world size {', '.join(map(str, sizes))} on the engines, "
                            f"expected {self.n}{why}")
        ranks = [i["rank"] for i in infos]
        if sorted(ranks) != list(range(len(infos))):
            problems.append(f"MPI ranks {ranks} are not a permutation of 0..{len(infos) - 1}")
        bad = [(e, i["rank"]) for e, i in zip(ids, infos, strict=True) if e != i["rank"]]
        if bad:
            problems.append("engine id != MPI rank for "
                            + ", ".join(f"engine {e} (rank {r})" for e, r in bad)
                            + " (engines must start with --mpi)")
        versions = sorted({i["version"] for i in infos})
        if versions != [__version__]:
            problems.append(f"clusterml versions differ: client {__version__}, engines "
                            + ", ".join(f"{i['rank']}:{i['version']}" for i in infos))
        if problems:
            raise EngineError("the engines do not form one clusterml MPI world:\n  "
                              + "\n  ".join(problems))
        here = socket.gethostname()
        for i in infos:
            p = _alive({"pid": i["pid"]}) if i["host"] == here else None
            i["create_time"] = p.create_time() if p is not None else None
        self.engines = sorted(infos, key=lambda i: i["rank"])

    def _activate(self):
        try:
            from IPython import get_ipython

            if get_ipython() is not None:
                self._view.activate()  # %px / %%px now target these engines (blocking)
        except Exception as exc:  # pragma: no cover - magics are a convenience
            log.debug("could not activate %%px: %r", exc)

    def stop(self):
        """Stop the engines, ``mpiexec`` and the controller (an attached cluster: disconnect).

        Safe to call twice; after it no process of this cluster is left.
        """
        from .shared import SHARES

        SHARES.pop(self, None)  # values shared with cluster.share() went with the engines
        if not self._owned:
            self._close_client()
            return
        self._teardown()

    def shutdown(self):
        """Stop the cluster even if it was attached with :meth:`connect`."""
        self._owned = True
        self._teardown()

    def _close_client(self):
        if self._client is not None:
            try:
                self._client.close(linger=0)
            except Exception:
                pass
        self._client = self._view = None
        self._controller_watch = None

    def restart(self) -> Cluster:
        """Replace the whole MPI engine set (MPI cannot lose a rank) and set it up again.

        For a cluster this facade started, the controller is replaced too (its
        registry would still hold the dead engines' ids, and a new engine
        only gets id == rank if that id is free); that is also the way on
        once the controller is gone (:class:`~clusterml.ControllerError`).
        """
        if self._owned:
            self._teardown()
            self._ipp = None
            return self.start()
        if self._client is not None:  # attached: a dead controller cannot be replaced from here
            self.health.check_controller("restart()", probe=False)
        # attached: restart the recorded engine sets, keep the controller
        self._close_client()
        self._ipp.restart_engines_sync()
        self._broken = None
        self._connect()
        reset_watch(self)
        return self

    def __enter__(self):
        return self.start() if self._owned else self

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- introspection -----------------------------------------------------
    @property
    def cluster_id(self) -> str | None:
        return None if self._ipp is None else self._ipp.cluster_id

    @property
    def client(self):
        """The ipyparallel Client (for anything the facade does not do)."""
        return self._client

    @property
    def view(self):
        """A blocking DirectView on all engines, in rank order (the one ``%px`` uses)."""
        return self._view

    @property
    def running(self) -> bool:
        return self._client is not None

    def status(self) -> dict:
        """Engines, hosts and health, without a round trip."""
        lost = self._lost_ranks() if self._client is not None else []
        return {
            "cluster_id": self.cluster_id,
            "profile": self.profile or DEFAULT_PROFILE,
            "running": self.running,
            "n": self.n,
            "registered": sorted(self._client.ids) if self._client is not None else [],
            "hosts": sorted({e["host"] for e in self.engines}),
            "lost_ranks": lost,
            "broken": self._broken,
            "owned": self._owned,
        }

    def __repr__(self):
        state = "running" if self.running else "stopped"
        if self._broken:
            state = "needs restart()"
        return f"<clusterml.Cluster n={self.n} profile={self.profile or DEFAULT_PROFILE!r} " \
               f"id={self.cluster_id!r} {state}>"

    def __len__(self) -> int:
        """Number of engines (``n_jobs=len(cluster)``); 0 when not connected."""
        return len(self._client.ids) if self._client is not None else 0

    def __bool__(self) -> bool:
        return True  # a cluster is a cluster, even with no engine registered

    @classmethod
    def current(cls) -> Cluster:
        """The cluster of ``clusterml run`` (or the last one started in this process)."""
        from .farm import current_cluster

        with _LIVE_LOCK:
            live = list(_LIVE)
        return current_cluster(live)
