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

import atexit
import glob
import itertools
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
import weakref

import numpy as np
import psutil

from .. import __version__
from .. import errors as _errors
from ..errors import (ClusterTimeoutError, ComputeError, DistributedError, EngineError,
                      InconsistentResultError, InputError, ParameterError)
from ..spmd import REGISTRY
from ..spmd.algorithm import bind_inputs
from ..spmd.inputs import Partition, block_range
from ..spmd.remote import Entry, Ref

__all__ = ["Cluster", "RemoteAlgorithm", "EngineArray", "stop_all", "list_clusters",
           "default_mpiexec", "DEFAULT_PROFILE", "DEFAULT_TIMEOUT", "DEFAULT_START_TIMEOUT"]

log = logging.getLogger("clusterml.client")

#: Profile of the embedded default (local MPI engines, loopback only).
DEFAULT_PROFILE = "clusterml-local"
#: Default timeout of one call, in seconds (generous: real work can take long).
DEFAULT_TIMEOUT = 3600.0
#: Default timeout for the engines of a new cluster to register, in seconds.
DEFAULT_START_TIMEOUT = 120.0
# How long interrupted engines get to answer before the facade gives up on them.
_INTERRUPT_GRACE = 5.0
# Poll interval of every wait: short, so a dead engine is noticed quickly.
_POLL = 0.1

_LIVE: set = set()  # owned clusters, stopped at interpreter exit (strong refs on purpose)
_LIVE_LOCK = threading.Lock()


def default_mpiexec() -> str:
    """The ``mpiexec`` next to this interpreter (it belongs to the MPI mpi4py uses).

    A different ``mpiexec`` found first on PATH (say Open MPI's while mpi4py
    loads MPICH) makes every engine die at start; only fall back to PATH when
    the interpreter has none next to it.
    """
    cand = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.exists(cand):
        return cand
    found = shutil.which("mpiexec")
    if found is None:
        raise EngineError("no mpiexec next to %s nor on PATH; install the MPI mpi4py uses "
                          "(pip install mpich) or pass mpiexec=..." % sys.executable)
    return found


# --------------------------------------------------------------------------
# Progress: a bar in a notebook, one status line in a terminal, silence elsewhere



def _is_sparse(obj) -> bool:
    """A scipy.sparse matrix or array (scattered by rows like an array)."""
    return hasattr(obj, "tocsr") and hasattr(obj, "nnz")

class _Progress:
    def __init__(self, total: int, what: str):
        self.total, self.what = total, what
        self.mode = "quiet"
        self._handle = None
        try:
            from IPython import get_ipython

            ip = get_ipython()
        except ImportError:  # pragma: no cover
            ip = None
        if ip is not None and type(ip).__name__ == "ZMQInteractiveShell":
            self.mode = "notebook"
        elif getattr(sys.stderr, "isatty", lambda: False)():
            self.mode = "terminal"
        self._last = None

    def update(self, done: int, detail: str = ""):
        state = (done, detail)
        if state == self._last:
            return
        self._last = state
        text = f"{self.what}: {done}/{self.total}" + (f" ({detail})" if detail else "")
        if self.mode == "notebook":
            from IPython.display import HTML, display

            html = HTML(f"<progress value='{done}' max='{self.total}' style='width:20em'></progress>"
                        f" <code>{_html_escape(text)}</code>")
            if self._handle is None:
                self._handle = display(html, display_id=True)
            else:
                self._handle.update(html)
        elif self.mode == "terminal":
            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()

    def close(self, text: str = ""):
        if self.mode == "notebook" and self._handle is not None and text:
            from IPython.display import HTML

            self._handle.update(HTML(f"<code>{_html_escape(text)}</code>"))
        elif self.mode == "terminal":
            sys.stderr.write("\r\033[K" + (text + "\n" if text else ""))
            sys.stderr.flush()


def _html_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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

    def __init__(self, cluster: "Cluster", name: str, shapes: list, dtype: str):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_cluster", weakref.ref(cluster))
        object.__setattr__(self, "_generation", cluster._generation)
        object.__setattr__(self, "counts", [int(s[0]) if len(s) else 1 for s in shapes])
        rest = tuple(shapes[0][1:]) if shapes and len(shapes[0]) > 1 else ()
        object.__setattr__(self, "shape", (sum(self.counts),) + rest)
        object.__setattr__(self, "dtype", np.dtype(dtype))
        # forget the rows on the engines once the client drops the handle
        weakref.finalize(self, cluster._garbage.append, name)

    def gather(self, timeout: float | None = None) -> np.ndarray:
        """Fetch every rank's rows, stacked in rank order."""
        return self._get_cluster()._gather(self.name, timeout)

    def _get_cluster(self):
        cluster = self._cluster()
        if cluster is None or cluster._generation != self._generation:
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

    def __init__(self, cluster: "Cluster", name: str, *args, **kwargs):
        if "distributed" in kwargs:
            raise ParameterError("distributed is implied on a Cluster; remove distributed=...")
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
        return self._cluster._compute(self.name, self.params, inputs, set(cls._tables), timeout)

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"<{self._cluster!r}.{self.name}({params})>"


# --------------------------------------------------------------------------
# Records of running clusters (so a SIGKILLed kernel leaves nothing behind)


def _proc_key(p: psutil.Process) -> dict:
    try:
        return {"pid": p.pid, "create_time": p.create_time(), "name": " ".join(p.cmdline()[:3])[:200]}
    except psutil.Error:
        return {"pid": p.pid, "create_time": None, "name": "?"}


def _alive(rec: dict) -> psutil.Process | None:
    """The process of a record, if it still runs (and is the same process, not a reused pid)."""
    try:
        p = psutil.Process(rec["pid"])
        if rec.get("create_time") is not None and abs(p.create_time() - rec["create_time"]) > 1e-3:
            return None
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p
    except psutil.Error:
        return None


def _tree(pid: int) -> list:
    try:
        p = psutil.Process(pid)
        return [p] + p.children(recursive=True)
    except psutil.Error:
        return []


def _kill_all(procs, grace: float = 3.0) -> list:
    """TERM, wait up to ``grace``, KILL what is left; return what was still running."""
    procs = [p for p in procs if p is not None]
    survivors = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                survivors.append(p)
        except psutil.Error:
            pass
    for p in survivors:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(survivors, timeout=grace)
    for p in still:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(still, timeout=grace)
    return survivors


#: Engine environment of the embedded local cluster: MPI's transports (UCX, libfabric,
#: Open MPI) bind to loopback, not to every interface.  (MPICH's mpiexec itself still
#: listens on all interfaces for its own control connection; see docs/reliability.md.)
LOOPBACK_MPI_ENV = {"UCX_NET_DEVICES": "lo", "FI_TCP_IFACE": "lo", "FI_SOCKETS_IFACE": "lo",
                    "OMPI_MCA_btl_tcp_if_include": "lo", "OMPI_MCA_oob_tcp_if_include": "lo"}


def _owner_only(path: str) -> None:
    """Make a cluster folder (a profile: connection files, logs, job scripts) 0700."""
    try:
        if os.stat(path).st_uid == os.getuid():
            os.chmod(path, 0o700)
    except OSError as exc:  # not ours to change: leave it, the security/ folder is 0700 anyway
        log.debug("could not chmod %s: %r", path, exc)


_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _check_batch_values(ipc) -> None:
    """Refuse a cluster id or profile folder that would break out of a batch script.

    ipyparallel substitutes both raw into the job script (``--job-name``, ``--output``),
    so a newline or a quote there would add #SBATCH lines or shell commands.
    """
    import ipyparallel as ipp

    batch = (ipp.cluster.launcher.BatchSystemLauncher,)
    if not any(issubclass(c, batch) for c in (ipc.engine_launcher_class, ipc.controller_launcher_class)):
        return
    if not _SAFE_ID.match(ipc.cluster_id):
        raise ParameterError(f"cluster_id={ipc.cluster_id!r} goes into the batch script: use letters, "
                             f"digits, '_', '.' and '-' only")
    if re.search(r'[\x00-\x1f\x7f"\\]', ipc.profile_dir):
        raise ParameterError(f"profile folder {ipc.profile_dir!r} goes into the batch script "
                             f"(--output): it must not contain quotes, backslashes or newlines")


def _record_path(profile_dir: str, cluster_id: str) -> str:
    return os.path.join(profile_dir, "security", f"clusterml-{cluster_id}.json")


def _profile_dir(profile: str | None, create: bool = True) -> str:
    from IPython.core.profiledir import ProfileDir, ProfileDirError
    from IPython.paths import get_ipython_dir

    name = profile or DEFAULT_PROFILE
    if os.path.isabs(name) or os.sep in name:
        return os.path.abspath(name)
    try:
        return ProfileDir.find_profile_dir_by_name(get_ipython_dir(), name).location
    except ProfileDirError:
        if not create:
            raise
        return ProfileDir.create_profile_dir_by_name(get_ipython_dir(), name).location


def list_clusters(profile: str | None = None) -> list[dict]:
    """Clusters recorded in a profile (ipyparallel's cluster files and clusterml's records).

    Parameters
    ----------
    profile : str, optional
        Profile name or directory; default ``clusterml-local``.

    Returns
    -------
    list of dict
        ``cluster_id``, ``profile_dir``, ``cluster_file``, ``controller_pid``,
        ``engines`` (per engine set: launcher class, n, pid), ``owner_pid``,
        ``owner_alive``, ``running`` (any recorded process still alive).
    """
    try:
        pdir = _profile_dir(profile, create=False)
    except Exception:
        return []
    out = {}
    for cf in sorted(glob.glob(os.path.join(pdir, "security", "cluster-*.json"))):
        cid = os.path.basename(cf)[len("cluster-"):-len(".json")]
        try:
            with open(cf) as fh:
                d = json.load(fh)
        except (OSError, ValueError):
            d = {}
        ctrl = (d.get("controller") or {}).get("state") or {}
        sets = ((d.get("engines") or {}).get("sets") or {})
        out[cid] = {
            "cluster_id": cid, "profile_dir": pdir, "cluster_file": cf,
            "controller_pid": ctrl.get("pid"),
            "engines": {k: {"class": (d.get("engines") or {}).get("class"), "n": v.get("n"),
                            "pid": v.get("pid")} for k, v in sets.items()},
            "owner_pid": None, "owner_alive": None, "running": False,
        }
        pids = [ctrl.get("pid")] + [v.get("pid") for v in sets.values()]
        out[cid]["running"] = any(p and psutil.pid_exists(p) for p in pids)
    for rf in sorted(glob.glob(os.path.join(pdir, "security", "clusterml-*.json"))):
        try:
            with open(rf) as fh:
                rec = json.load(fh)
        except (OSError, ValueError):
            continue
        cid = rec.get("cluster_id", os.path.basename(rf)[len("clusterml-"):-len(".json")])
        entry = out.setdefault(cid, {"cluster_id": cid, "profile_dir": pdir, "cluster_file": None,
                                     "controller_pid": None, "engines": {}, "running": False})
        entry["record"] = rf
        entry["owner_pid"] = rec.get("owner", {}).get("pid")
        entry["owner_alive"] = _alive(rec.get("owner", {})) is not None if rec.get("owner") else None
        entry["running"] = entry["running"] or any(_alive(r) for r in rec.get("processes", []))
    return list(out.values())


def _stop_recorded(entry: dict) -> int:
    """Stop one recorded cluster: ipyparallel's launchers, then every recorded process."""
    procs = []
    rec = {}
    if entry.get("record"):
        try:
            with open(entry["record"]) as fh:
                rec = json.load(fh)
        except (OSError, ValueError):
            rec = {}
    for r in rec.get("processes", []):
        p = _alive(r)
        if p is not None:
            procs += _tree(p.pid)
    for pid in [entry.get("controller_pid")] + [e.get("pid") for e in entry.get("engines", {}).values()]:
        if pid:
            procs += _tree(pid)
    if entry.get("cluster_file") and os.path.exists(entry["cluster_file"]):
        try:
            import ipyparallel as ipp

            c = ipp.Cluster.from_file(entry["cluster_file"], log=log)
            c.shutdown_atexit = False
            c.stop_cluster_sync()
        except Exception as exc:  # a broken record must not stop the clean-up
            log.debug("stopping %s via ipyparallel failed: %r", entry["cluster_file"], exc)
    seen, uniq = set(), []
    for p in procs:
        if p.pid not in seen and p.pid != os.getpid():
            seen.add(p.pid)
            uniq.append(p)
    killed = _kill_all(uniq)
    for f in (entry.get("cluster_file"), entry.get("record")):
        if f:
            try:
                os.remove(f)
            except FileNotFoundError:
                pass
    pdir = entry.get("profile_dir")
    cid = entry.get("cluster_id")
    if pdir and cid is not None:
        for f in glob.glob(os.path.join(pdir, "security", f"ipcontroller-{cid}-*.json")):
            try:
                os.remove(f)
            except FileNotFoundError:
                pass
    return len(killed)


def stop_all(profile: str | None = None, only_orphans: bool = False) -> list[str]:
    """Stop every cluster recorded for a profile (what ``clusterml stop --all`` runs).

    Parameters
    ----------
    profile : str, optional
        Profile name or directory; default ``clusterml-local``.
    only_orphans : bool
        Only clusters started by a :class:`Cluster` whose process is gone
        (a kernel killed with SIGKILL); clusters of live notebooks and of
        ``ipcluster start`` are left alone.

    Returns
    -------
    list of str
        The ids of the clusters that were stopped.
    """
    stopped = []
    for entry in list_clusters(profile):
        if only_orphans and entry.get("owner_alive") is not False:
            continue
        _stop_recorded(entry)
        stopped.append(entry["cluster_id"])
    return stopped


@atexit.register
def _stop_live_clusters():
    with _LIVE_LOCK:
        live = list(_LIVE)
    for c in live:
        try:
            c.stop()
        except Exception as exc:  # pragma: no cover - best effort at exit
            print(f"clusterml: error stopping {c!r} at exit: {exc!r}", file=sys.stderr)


# --------------------------------------------------------------------------
# The facade


class Cluster:
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
    >>> with cml.Cluster(n=4) as cluster:                          # doctest: +SKIP
    ...     res = cluster.covariance().compute("data/part{}.csv")
    """

    def __init__(self, n: int | None = None, profile: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, start_timeout: float = DEFAULT_START_TIMEOUT,
                 engine_env: dict | None = None, mpiexec: str | None = None,
                 mpi_args: list | None = None, start: bool = True, **launcher_settings):
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
            raise ParameterError(f"n={n!r} must be a positive integer (the number of engines)")
        self.n = None if n is None else int(n)
        self.profile = profile
        self.timeout = float(timeout)
        self.start_timeout = float(start_timeout)
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
                start_timeout: float = DEFAULT_START_TIMEOUT) -> "Cluster":
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
        return self

    def start(self) -> "Cluster":
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
            kw.setdefault("engines", "mpi")
            kw.setdefault("controller_ip", "127.0.0.1")
            kw.setdefault("load_profile", False)
        kw.setdefault("log_level", logging.WARNING)
        self._ipp = ipp.Cluster(profile_dir=pdir, n=self.n, config=cfg, shutdown_atexit=False,
                                engine_timeout=int(self.start_timeout), **kw)
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
        progress = _Progress(self.n, "starting MPI engines")
        progress.update(0, "controller")
        try:
            self._ipp.start_controller_sync()
            self._write_record()
            env = dict(self.engine_env)
            if self.profile is None:
                # a local cluster listens on loopback only: keep MPI's own transports there too
                env = {**LOOPBACK_MPI_ENV, **env}
            self._ipp.start_engines_sync(self.n, environment=env)
            self._write_record()
            self._cluster_file = self._ipp.cluster_file
            self._connect(progress=progress, t0=t0)
        except BaseException:
            progress.close()
            self._teardown()
            raise
        progress.close(f"{self.n} MPI engines ready in {time.monotonic() - t0:.1f} s "
                       f"(cluster {self.cluster_id})")
        return self

    def _connect(self, progress=None, t0=None):
        t0 = t0 or time.monotonic()
        self._client = self._ipp.connect_client_sync()
        want = self.n
        deadline = t0 + self.start_timeout
        while True:
            have = len(self._client.ids)
            if want is None and have:
                want = self.n = have
            if progress is not None:
                progress.update(have, f"{time.monotonic() - t0:.0f} s")
            if want is not None and have >= want:
                break
            dead = self._launcher_exit()
            if dead is not None:
                raise EngineError(f"the engines stopped while starting ({dead}); "
                                  f"{have} of {want} had registered\n{self._launcher_output()}")
            if time.monotonic() > deadline:
                raise ClusterTimeoutError(
                    f"{have} of {want} engines registered after {self.start_timeout:.0f} s "
                    f"(profile {self.profile or DEFAULT_PROFILE}, cluster {self.cluster_id}); "
                    f"{self._launcher_state()}")
            time.sleep(_POLL)
        ids = sorted(self._client.ids)
        self._view = self._client[ids]
        self._view.block = True
        self._generation += 1
        self._setup()
        self._write_record()
        self._activate()

    def _setup(self):
        ar = self._view.apply_async(Entry("setup"))
        infos = self._wait(ar, self.start_timeout, "engine setup (clusterml.init)")
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
        bad = [(e, i["rank"]) for e, i in zip(ids, infos) if e != i["rank"]]
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

    def _teardown(self):
        procs = self._recorded_processes()
        if self._broken and self._owned:
            # Ranks stuck in a collective ignore SIGTERM's polite path; do not wait for them.
            here = socket.gethostname()
            _kill_all([_alive({"pid": e["pid"]}) for e in self.engines if e["host"] == here],
                      grace=0.0)
        self._close_client()
        ipc = self._ipp
        if ipc is not None:
            # An intended stop: mpiexec exits non-zero when its engines are terminated, and
            # ipyparallel then prints a warning with every engine's log into the notebook.
            # Quieten this cluster's own logger (named by its id; never a shared one).
            if ipc.log.name.endswith("." + str(ipc.cluster_id)):
                ipc.log.setLevel(max(ipc.log.getEffectiveLevel(), logging.ERROR))
            try:
                ipc.stop_cluster_sync()
            except Exception as exc:
                log.debug("ipyparallel stop failed: %r", exc)
        _kill_all(procs)
        if ipc is not None:
            ipc.controller = None
            ipc.engines = {}
            ipc.remove_cluster_file()
            for f in glob.glob(os.path.join(ipc.profile_dir, "security",
                                            f"ipcontroller-{ipc.cluster_id}-*.json")) + \
                    glob.glob(os.path.join(ipc.profile_dir, "log", f"engines{ipc.cluster_id}.json")):
                try:
                    os.remove(f)
                except FileNotFoundError:
                    pass
        if self._record:
            try:
                os.remove(self._record)
            except FileNotFoundError:
                pass
            self._record = None
        self.engines = []
        self._broken = None
        self._generation += 1
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def restart(self) -> "Cluster":
        """Replace the whole MPI engine set (MPI cannot lose a rank) and set it up again.

        For a cluster this facade started, the controller is replaced too (its
        registry would still hold the dead engines' ids, and a new engine
        only gets id == rank if that id is free).
        """
        if self._owned:
            self._teardown()
            self._ipp = None
            return self.start()
        # attached: restart the recorded engine sets, keep the controller
        self._close_client()
        self._ipp.restart_engines_sync()
        self._broken = None
        self._connect()
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

    # -- data ----------------------------------------------------------------
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
        self._check_usable()
        if name is not None and not (isinstance(name, str) and name.isidentifier()):
            raise ParameterError(f"scatter name {name!r} must be a Python identifier")
        key = name or f"_cml_scatter_{next(self._ids)}"
        if _is_sparse(data):  # scipy.sparse: rows of a CSR copy (len() is refused by scipy)
            data = data.tocsr()
        try:
            nrows = data.shape[0] if _is_sparse(data) else len(data)
        except TypeError:
            raise ParameterError(f"scatter needs rows (an array or a frame), got {type(data).__name__}") \
                from None
        if hasattr(data, "iloc"):
            blocks = [data.iloc[slice(*block_range(nrows, r, self.n))] for r in range(self.n)]
        elif _is_sparse(data):
            blocks = [data[slice(*block_range(nrows, r, self.n))] for r in range(self.n)]
        else:
            arr = np.asanyarray(data)  # a masked array keeps its mask (refused on the engines)
            if arr.ndim == 0:
                raise ParameterError("scatter needs rows (an array or a frame), got a scalar")
            blocks = [arr[slice(*block_range(nrows, r, self.n))] for r in range(self.n)]
        ars = [self._client[r].apply_async(Entry("store"), key, blocks[r], name is not None)
               for r in range(self.n)]
        self._wait_many(ars, timeout, f"scatter of {nrows} rows")
        return Ref(key)

    def free(self, *refs):
        """Forget scattered rows / per-row outputs on the engines."""
        names = [r.name if isinstance(r, Ref) else str(r) for r in refs]
        if names and self._view is not None:
            self._wait(self._view.apply_async(Entry("free"), *names), None, "free")

    def _gather(self, name: str, timeout: float | None):
        self._check_usable()
        parts = self._wait(self._view.apply_async(Entry("fetch"), name), timeout, f"gather of {name!r}")
        if parts and hasattr(parts[0], "iloc"):
            import pandas as pd

            return pd.concat(parts)
        return np.concatenate([np.asarray(p) for p in parts], axis=0)

    def gather(self, ref, timeout: float | None = None):
        """Fetch the rows named by ``ref`` (a Ref, an EngineArray or a name) from every rank, in order."""
        return self._gather(ref.name if isinstance(ref, Ref) else str(ref), timeout)

    # -- calls ---------------------------------------------------------------
    def _compute(self, name, params, inputs, tables, timeout):
        self._check_usable()
        temp = []
        spec = {}
        for k, v in inputs.items():
            if isinstance(v, Ref) or isinstance(v, (str, os.PathLike, Partition)):
                if isinstance(v, EngineArray):
                    v._get_cluster()
                    v = Ref(v.name)
                spec[k] = os.fspath(v) if isinstance(v, os.PathLike) else v
            elif k in tables and v is not None and (isinstance(v, np.ndarray) or hasattr(v, "iloc")
                                                   or isinstance(v, (list, tuple)) or _is_sparse(v)):
                if isinstance(v, (list, tuple)):
                    try:
                        v = np.asarray(v)
                    except ValueError as exc:  # ragged nested lists
                        raise InputError(f"{k}: cannot make a table of {type(v).__name__} ({exc}); "
                                         f"expected rows of equal length") from None
                if isinstance(v, np.ndarray) and v.dtype.kind not in "biuf":
                    # what every engine would say; some dtypes (datetime) cannot even be sent
                    raise InputError(f"{k}: dtype {v.dtype} is not numeric; expected a float or "
                                     f"integer array")
                ref = self.scatter(v, timeout=timeout)
                temp.append(ref.name)
                spec[k] = ref
            else:
                spec[k] = v
        call_id = f"_cml_{name}_{next(self._ids)}"
        # Objects the client no longer references (dropped outputs, earlier calls' scattered
        # inputs) are forgotten on every engine as this call starts; this call's own scattered
        # inputs at the next call.  (Passing nothing here kept every per-row output forever.)
        drop, self._garbage[:] = tuple(self._garbage), list(temp)
        what = f"{name}.compute"
        try:
            ar = self._view.apply_async(Entry("run_call"), name, params, spec, call_id, 0, drop)
        except BaseException:
            self._garbage.extend(drop)
            raise
        replies = self._wait(ar, timeout, what)
        return self._check_replies(replies, what, call_id)

    def _check_replies(self, replies, what, call_id):
        errors = [r for r in replies if r["status"] == "error"]
        if errors:
            raise self._error_from(errors, what)
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
        for field, (_, dtype) in first["rows"].items():
            shapes = [r["rows"][field][0] for r in replies]
            setattr(result, field, EngineArray(self, f"{call_id}.{field}", shapes, dtype))
        return result

    def _error_from(self, errors, what):
        errors = sorted(errors, key=lambda e: e["rank"])
        kinds = {(e["module"], e["etype"], e["message"]) for e in errors}
        if len(kinds) == 1:
            module, etype, message = kinds.pop()
            cls = getattr(_errors, etype, None) if module == "clusterml.errors" else None
            if cls is not None and issubclass(cls, DistributedError):
                causes = {}
                for e in errors:
                    causes.update(e["causes"])
                if not causes:
                    causes = {e["rank"]: (e["etype"], e["message"], e["traceback"]) for e in errors}
                return cls(f"{what}: {message}", causes)
        ranks = ", ".join(str(e["rank"]) for e in errors)
        lines = "\n  ".join(f"rank {e['rank']}: {e['etype']}: {e['message']}" for e in errors)
        return ComputeError(f"{what} failed on rank{'s' if len(errors) > 1 else ''} {ranks}:\n  {lines}\n"
                            f"(err.remote_traceback() shows the engines' tracebacks)",
                            {e["rank"]: (e["etype"], e["message"], e["traceback"]) for e in errors})

    def apply(self, f, *args, timeout: float | None = None, **kwargs) -> list:
        """Run ``f(*args, **kwargs)`` on every engine; return the values in rank order."""
        self._check_usable()
        return self._wait(self._view.apply_async(f, *args, **kwargs), timeout, getattr(f, "__name__", "apply"))

    # -- task farming (clusterml/client/farm.py) ---------------------------------
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

        See :func:`clusterml.client.farm.joblib_config`.
        """
        from .farm import joblib_config

        return joblib_config(self, n_jobs=n_jobs, timeout=timeout, **config)

    def _noop(self, timeout=None):
        """One facade round trip doing nothing (for measuring the overhead)."""
        self._check_usable()
        return self._wait(self._view.apply_async(Entry("noop")), timeout, "noop")

    # -- waiting, health -------------------------------------------------------
    def _check_usable(self):
        if self._client is None:
            raise EngineError("the cluster is not running; call start() (or restart())")
        if self._broken:
            raise EngineError(f"{self._broken}\nCall cluster.restart() to get a new MPI engine set.")
        lost = self._lost_ranks()
        if lost:
            self._broken = f"engine(s) of rank(s) {', '.join(map(str, lost))} are gone"
            raise EngineError(f"{self._broken}; MPI cannot lose a rank: call cluster.restart()")

    def _launcher_exit(self):
        """A description of how the engine launcher ended, or None while it runs."""
        if self._ipp is None:
            return None
        for es in self._ipp.engines.values():
            if es.state == "after":
                return f"launcher exited: {es.stop_data}"
            proc = getattr(es, "process", None)
            if proc is not None:
                try:
                    if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                        return f"{' '.join(es.args[:1])} (pid {proc.pid}) exited"
                except psutil.Error:
                    return f"launcher process {proc.pid} is gone"
        return None

    def _launcher_output(self, limit=30) -> str:
        out = []
        for es in (self._ipp.engines.values() if self._ipp else []):
            try:
                text = es.get_output()
            except Exception:
                text = ""
            if text:
                out.append("".join(text.splitlines(True)[-limit:]))
        return ("engine output:\n" + "\n".join(out)) if out else ""

    def _launcher_state(self) -> str:
        ended = self._launcher_exit()
        if ended:
            return ended
        sets = list(self._ipp.engines.values()) if self._ipp else []
        if not sets:
            return "no engine launcher"
        return "; ".join(f"{type(es).__name__} {es.state}" + (f" (pid {es.pid})" if getattr(es, "pid", -1) > 0
                                                              else "") for es in sets)

    def _lost_ranks(self) -> list:
        """Ranks whose engine is known to be gone (dead local process or unregistered)."""
        lost = set()
        here = socket.gethostname()
        for e in self.engines:
            if e["host"] == here and _alive({"pid": e["pid"], "create_time": e.get("create_time")}) is None:
                lost.add(e["rank"])
        if self._client is not None and self.engines:
            ids = set(self._client.ids)
            lost |= {e["rank"] for e in self.engines if e["rank"] not in ids}
        return sorted(lost)

    def _wait_many(self, ars, timeout, what):
        return [self._wait(ar, timeout, what) for ar in ars]

    def _wait(self, ar, timeout, what):
        """Wait for ``ar`` in short steps, watching for dead engines, the deadline and Ctrl-C."""
        timeout = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + timeout
        try:
            while not ar.ready():
                ar.wait(_POLL)
                if ar.ready():
                    break
                lost = self._lost_ranks() if self.engines else []
                if not lost and self.engines:
                    ended = self._launcher_exit()
                    if ended:
                        lost = [e["rank"] for e in self.engines]
                if lost:
                    self._broken = (f"engine(s) of rank(s) {', '.join(map(str, lost))} died during "
                                    f"{what}")
                    self._abandon(ar)
                    raise EngineError(f"{self._broken}; running: {self._where(ar)}. MPI cannot lose a "
                                      f"rank: call cluster.restart() for a new engine set.",
                                      {r: ("EngineError", "engine died", "") for r in lost})
                if time.monotonic() > deadline:
                    self._interrupted(ar, what, f"timed out after {timeout:g} s")
        except KeyboardInterrupt:
            self._interrupted(ar, what, "interrupted (Ctrl-C)", keyboard=True)
        return self._results(ar, what)

    def _where(self, ar) -> str:
        pending = self._pending_ranks(ar)
        done = [r for r in self._ar_ranks(ar) if r not in pending]
        return (f"still running on rank(s) {', '.join(map(str, pending)) or 'none'}"
                + (f", finished on rank(s) {', '.join(map(str, done))}" if done else ""))

    def _ar_ranks(self, ar):
        ids = ar.engine_id if isinstance(ar.engine_id, list) else [ar.engine_id]
        return list(ids)

    def _pending_ranks(self, ar):
        out = self._client.outstanding if self._client is not None else set()
        ids = self._ar_ranks(ar)
        return [e for e, m in zip(ids, ar.msg_ids) if m in out]

    def _abandon(self, ar):
        try:
            self._client.abort(jobs=ar, block=False)
        except Exception:
            pass

    def _interrupted(self, ar, what, why, keyboard=False):
        """Interrupt the engines still running ``ar``; raise what the user must know."""
        pending = self._pending_ranks(ar)
        where = self._where(ar)
        try:
            self._client.send_signal(signal.SIGINT, targets=pending, block=False)
        except Exception as exc:
            log.debug("send_signal failed: %r", exc)
        grace = time.monotonic() + _INTERRUPT_GRACE
        while not ar.ready() and time.monotonic() < grace:
            ar.wait(_POLL)
        if ar.ready():
            # Every engine answered: start clusterml's communicator afresh so no message of the
            # interrupted collective can match a later one.
            try:
                reset = self._view.apply_async(Entry("reset_comm"))
                reset.wait(_INTERRUPT_GRACE)
                recovered = reset.ready() and reset.successful()
            except Exception:
                recovered = False
        else:
            recovered = False
        if recovered:
            msg = (f"{what} {why}; it was {where}. The engines were interrupted and are usable again.")
        else:
            stuck = self._pending_ranks(ar) or pending
            self._broken = (f"{what} {why}; it was {where}. Rank(s) {', '.join(map(str, stuck))} did not "
                            f"answer the interrupt (a rank blocked inside an MPI collective cannot be "
                            f"interrupted)")
            self._abandon(ar)
            msg = self._broken + "; call cluster.restart() for a new engine set."
        if keyboard:
            raise KeyboardInterrupt(msg)
        raise ClusterTimeoutError(msg)

    def _results(self, ar, what):
        import ipyparallel as ipp

        try:
            values = ar.get(0)
        except ipp.error.CompositeError as exc:
            causes = {}
            lines = []
            for ename, evalue, tb, info in exc.elist:
                rank = info.get("engine_id", -1) if isinstance(info, dict) else -1
                if rank == -1:  # the controller's "Engine 2 died while running task ..."
                    m = re.match(r"Engine (\d+) died", str(evalue))
                    rank = int(m.group(1)) if m else rank
                causes[rank] = (ename, evalue, "".join(tb) if isinstance(tb, list) else str(tb))
                lines.append(f"rank {rank}: {ename}: {evalue}")
            dead = any(e[0] == "EngineError" for e in exc.elist)
            cls = EngineError if dead else ComputeError
            if dead:
                self._broken = f"an engine died during {what}"
                lines.append("MPI cannot lose a rank: call cluster.restart() for a new engine set.")
            raise cls(f"{what} failed on rank(s) {', '.join(map(str, sorted(causes)))}:\n  "
                      + "\n  ".join(lines), causes) from None
        except ipp.error.RemoteError as exc:
            rank = (exc.engine_info or {}).get("engine_id", -1)
            m = re.match(r"Engine (\d+) died", str(exc.evalue)) if rank == -1 else None
            rank = int(m.group(1)) if m else rank
            if exc.ename == "EngineError":  # one targeted engine died (a scatter, a gather)
                self._broken = f"engine of rank {rank} died during {what}"
                raise EngineError(f"{what} failed: {exc.evalue}. MPI cannot lose a rank: call "
                                  f"cluster.restart() for a new engine set.",
                                  {rank: (exc.ename, exc.evalue, exc.traceback)}) from None
            raise ComputeError(f"{what} failed on rank {rank}: {exc.ename}: {exc.evalue}",
                               {rank: (exc.ename, exc.evalue, exc.traceback)}) from None
        return values

    # -- records (no orphans) ----------------------------------------------------
    def _recorded_processes(self) -> list:
        procs = []
        ipc = self._ipp
        if ipc is not None and self._owned:
            if ipc.controller is not None and getattr(ipc.controller, "pid", -1) > 0:
                procs += _tree(ipc.controller.pid)
            for es in ipc.engines.values():
                if getattr(es, "pid", -1) > 0:
                    procs += _tree(es.pid)
        if self._owned:
            for e in self.engines:
                p = _alive({"pid": e["pid"]}) if e["host"] == socket.gethostname() else None
                if p is not None:
                    procs.append(p)
        return procs

    def _write_record(self):
        ipc = self._ipp
        if ipc is None or not self._owned:
            return
        procs = [_proc_key(p) for p in self._recorded_processes()]
        me = psutil.Process()
        rec = {"cluster_id": ipc.cluster_id, "cluster_file": ipc.cluster_file,
               "owner": {"pid": me.pid, "create_time": me.create_time()},
               "processes": procs, "clusterml": __version__}
        path = _record_path(ipc.profile_dir, ipc.cluster_id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        # 0600: the record names this user's processes (and the folder may be shared)
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            json.dump(rec, fh)
        os.replace(tmp, path)
        self._record = path
        if ipc.cluster_file and os.path.exists(ipc.cluster_file):
            os.chmod(ipc.cluster_file, 0o600)  # ipyparallel writes it with the umask (0644)
