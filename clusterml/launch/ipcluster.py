"""The ``clusterml start`` / ``stop`` / ``status`` side: clusters that outlive this process.

- :func:`start` starts controller + engines from a profile (like ``ipcluster
  start --daemonize``) and waits with :func:`clusterml.launch.wait.wait_for_engines`,
  the same wait as ``cml.Cluster`` (the launchers ask Slurm; the wait raises
  :class:`clusterml.ClusterStartError` with state, log tail, cause and fix). On
  any failure everything it started is stopped first.
- :func:`stop` / :func:`stop_all` stop recorded clusters through
  :func:`clusterml.launch.lifecycle.stop_cluster`, the one stop of clusterml.
- :func:`status` lists the clusters (living ones as ipyparallel loads them,
  see :func:`clusterml.launch.lifecycle.list_clusters`) with engines registered
  and Slurm job states.

There is no fixed ``sleep``: every wait polls a real condition with a short
interval against a deadline."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ClusterTimeoutError, EngineError
from . import slurmctl as S
from .lifecycle import Stopped, list_clusters, stop_cluster
from .records import _load_record, _record_running, _remove_cluster_files, _sanitize
from .wait import connect_client, wait_for_engines

__all__ = [
    "engine_jobs",
    "controller_job",
    "wait_for_files",
    "secure_connection_files",
    "Started",
    "start",
    "stop",
    "stop_all",
    "status",
    "profile_dir_of",
]


_log = logging.getLogger("clusterml.launch")


# ----------------------------------------------------------------------------- cluster introspection
def engine_jobs(cluster) -> list[str]:
    """Slurm (or other batch) job ids of a cluster's engine sets that were submitted."""
    return [str(es.job_id) for es in cluster.engines.values() if getattr(es, "job_id", "")]


def controller_job(cluster) -> str | None:
    """The controller's batch job id, or None when it is a local process."""
    ctl = cluster.controller
    return str(ctl.job_id) if ctl is not None and getattr(ctl, "job_id", "") else None


def _job_infos(job_ids: Sequence[str], env=None) -> tuple:
    infos = []
    for j in job_ids:
        try:
            info = S.job_info(j, env=env, timeout=30)
        except S.SlurmError as e:
            info = S.JobInfo(str(j), "UNKNOWN", f"squeue failed: {e}")
        infos.append(info if info is not None else S.JobInfo(str(j), "GONE", "no longer known to Slurm"))
    return tuple(infos)


# ----------------------------------------------------------------------------- waiting
def wait_for_files(
    paths: Iterable[str],
    timeout: float,
    *,
    slurm_job_id: str | None = None,
    what: str = "controller",
    progress: Callable[[str], None] | None = None,
    poll: float = 0.25,
    slurm_poll: float = 2.0,
    env=None,
) -> None:
    """Wait for files to appear (the controller's connection files), watching its Slurm job.

    Parameters
    ----------
    paths : iterable of str
        The files awaited.
    timeout : float
        Seconds.
    slurm_job_id : str, optional
        The job that writes them; the wait fails as soon as it ended.
    what : str
        Named in messages.
    progress : callable, optional
        Receives a line (``waiting for the controller, 3 s; Slurm job 812 is PENDING``)
        at every poll.
    poll, slurm_poll : float
        Seconds between two looks at the files / at Slurm.
    env : mapping, optional
        Environment of the Slurm commands.

    Raises
    ------
    ClusterTimeoutError, EngineError
        The controller job ended / the files did not appear in time.
    """
    paths = list(paths)
    t0 = time.monotonic()
    deadline = t0 + timeout
    infos: tuple = ()
    next_slurm = t0
    while True:
        now = time.monotonic()
        if all(os.path.exists(p) for p in paths):
            return
        if slurm_job_id and now >= next_slurm:
            infos = _job_infos([slurm_job_id], env)
            next_slurm = now + slurm_poll
        if progress is not None:
            progress("; ".join([f"waiting for the {what}, {now - t0:.0f} s", *map(str, infos)]))
        for info in infos:
            if S.job_ended(info):
                raise EngineError(f"the {what} job ended before it wrote {paths}: {info}")
        if now >= deadline:
            facts = "; ".join(str(i) for i in infos)
            raise ClusterTimeoutError(
                f"the {what} did not write its connection files within {timeout:.0f} s"
                + (f"; {facts}" if facts else "")
            )
        time.sleep(poll)


def secure_connection_files(profile_dir: str | os.PathLike) -> list[str]:
    """Make the profile's ``security/`` folder 0700 and its files 0600.

    ipyparallel writes connection files 0600 after opening them with the
    default umask; this closes any gap (and fixes files from older versions).

    Returns
    -------
    list of str
        Paths whose mode was changed.
    """
    sec = Path(profile_dir) / "security"
    changed = []
    if not sec.is_dir():
        return changed
    if (sec.stat().st_mode & 0o777) != 0o700:
        os.chmod(sec, 0o700)
        changed.append(str(sec))
    for p in sec.iterdir():
        if p.is_file() and (p.stat().st_mode & 0o777) != 0o600:
            os.chmod(p, 0o600)
            changed.append(str(p))
    return changed


# ----------------------------------------------------------------------------- start
def profile_dir_of(profile: str) -> str:
    """The folder of an installed profile; raises FileNotFoundError with the fix if missing."""
    from .profiles import profile_dir

    d = profile_dir(profile)
    if not d.is_dir():
        raise FileNotFoundError(
            f"profile {profile!r} is not installed ({d} is missing); "
            f"run: clusterml profile install"
        )
    return str(d)


def _cluster_file(pdir: str, cluster_id: str) -> str:
    return os.path.join(pdir, "security", f"cluster-{cluster_id}.json")


@dataclass
class Started:
    """A running cluster started by :func:`start`.

    Attributes
    ----------
    cluster : ipyparallel.Cluster
    client : ipyparallel.Client
        Connected; close it when done (the cluster keeps running).
    engine_ids : list of int
    jobs : list of str
        Slurm jobs (controller first when it is a job).
    seconds : float
        From start to all engines registered.
    """

    cluster: object
    client: object
    engine_ids: list
    jobs: list = field(default_factory=list)
    seconds: float = 0.0


def _refuse_running(pdir: str, profile: str, cluster_id: str) -> None:
    """Refuse a second cluster of this id; clear the files of a dead one."""
    cfile = _cluster_file(pdir, cluster_id)
    if os.path.exists(cfile):
        if _record_running(cfile):
            raise FileExistsError(
                f"cluster {cluster_id!r} of profile {profile!r} is already running ({cfile}); "
                f"stop it with: clusterml stop --profile {profile} --cluster-id '{cluster_id}'"
            )
        _remove_cluster_files(pdir, cluster_id, _load_record(cfile))


def _start_engines(cluster, n: int) -> None:
    """Submit / start the engines (clusterml's launchers raise ClusterStartError themselves)."""
    try:
        cluster.start_engines_sync(n)
    except subprocess.CalledProcessError as e:
        es = list(cluster.engines.values())[-1] if cluster.engines else None
        raise EngineError(
            f"the engines job was refused: {S.sbatch_test_only(getattr(es, 'batch_file', ''))}"
            if es is not None and type(es).__name__.startswith("Slurm")
            else f"starting the engines failed: {e}"
        ) from None


def _start_controller(cluster, timeout: float, t0: float, progress) -> str | None:
    """Start the controller; wait for its connection files (0600); return its Slurm job, if any."""
    cluster.start_controller_sync()
    ctl_job = controller_job(cluster)
    remaining = max(1.0, timeout - (time.monotonic() - t0))
    wait_for_files(cluster.controller.connection_files.values(), remaining,
                   slurm_job_id=ctl_job, progress=progress)
    secure_connection_files(cluster.profile_dir)
    return ctl_job


def start(
    profile: str,
    n: int,
    *,
    cluster_id: str = "",
    timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
    check_world: bool = True,
    log_level: int = logging.WARNING,
    show: bool | None = None,
) -> Started:
    """Start controller + ``n`` MPI engines from ``profile``, left running after this process.

    Parameters
    ----------
    profile : str
        An installed profile (e.g. ``"clusterml-slurm"``).
    n : int
        Engines (MPI ranks).
    cluster_id : str
        ``""`` (default, like ``ipcluster start``) lets ``Client(profile=...)``
        connect without naming it.
    timeout : float, optional
        Seconds to wait for the engines, queue time included; default the
        profile's ``Cluster.engine_timeout``.
    progress : callable, optional
        Receives a line of status while waiting for a controller job's files.
    show : bool, optional
        Show the engines' progress bar (tqdm, with the Slurm job state);
        default on a terminal.
    check_world : bool
        After registration, check that the engines form ONE MPI world of size
        ``n`` with engine id == rank (not ``n`` singletons).
    log_level : int
        ipyparallel's log level.

    Returns
    -------
    Started

    Raises
    ------
    FileExistsError
        A cluster with this id is already running in the profile.
    EngineError, ClusterTimeoutError
        The engines did not come up; everything started was stopped first.
    """
    import ipyparallel as ipp

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}: expected a positive number of engines")
    pdir = profile_dir_of(profile)
    _refuse_running(pdir, profile, cluster_id)
    cluster = ipp.Cluster(
        profile_dir=pdir, n=n, cluster_id=cluster_id, shutdown_atexit=False, log_level=log_level
    )
    if timeout is None:
        timeout = float(cluster.engine_timeout or 120)
    t0 = time.monotonic()
    client = None
    try:
        ctl_job = _start_controller(cluster, timeout, t0, progress)
        _start_engines(cluster, n)
        what = f"cluster {cluster_id!r} of profile {profile}"
        client = connect_client(cluster, what=what)
        ids = wait_for_engines(cluster, client, n, timeout, started=t0, what=what, show=show)
        seconds = time.monotonic() - t0
        if check_world:
            _check_one_world(client, n)
        secure_connection_files(pdir)
        jobs = ([ctl_job] if ctl_job else []) + engine_jobs(cluster)
        return Started(cluster, client, sorted(ids), jobs, seconds)
    except BaseException:
        if client is not None:
            client.close()
        stop_cluster(pdir, cluster.cluster_id, cluster=cluster)
        raise


def _check_one_world(client, n: int) -> None:
    code = (
        "from mpi4py import MPI as _cml_MPI\n"
        "_cml_world = (_cml_MPI.COMM_WORLD.Get_rank(), _cml_MPI.COMM_WORLD.Get_size())\n"
    )
    dv = client[:]
    dv.execute(code, block=True)
    got = dict(zip(dv.targets, dv.pull("_cml_world").get(timeout=60), strict=True))
    dv.execute("del _cml_world, _cml_MPI", block=True)
    sizes = sorted({size for _, size in got.values()})
    if sizes != [n] or any(eid != rank for eid, (rank, _) in got.items()):
        hint = (
            " -- the engines are singletons: the launcher runs them without an MPI the "
            "library understands (check the profile's MPI mode / mpiexec, or run clusterml doctor)"
            if sizes == [1] and n > 1 else ""
        )
        raise EngineError(f"the engines are not one MPI world of size {n}: "
                          f"engine -> (rank, size) = {got}{hint}")


def stop(profile: str, cluster_id: str = "", *, timeout: float = 60) -> Stopped:
    """Stop a recorded cluster (:func:`clusterml.launch.lifecycle.stop_cluster`).

    Raises
    ------
    FileNotFoundError
        No record of that cluster in the profile.
    """
    pdir = profile_dir_of(profile)
    cfile = _cluster_file(pdir, cluster_id)
    if not os.path.exists(cfile):
        raise FileNotFoundError(f"no cluster {cluster_id!r} recorded in profile {profile!r} ({cfile})")
    return stop_cluster(pdir, cluster_id, timeout=timeout)


def stop_all(profile: str, *, timeout: float = 60) -> list[Stopped]:
    """Stop every cluster of the profile (``ipcluster stop --all``), as :func:`list_clusters` lists them.

    Parameters
    ----------
    profile : str
    timeout : float
        Seconds to wait for each cluster's jobs and processes to be gone.

    Returns
    -------
    list of Stopped
    """
    return [stop_cluster(e["profile_dir"], e["cluster_id"], record=e["ipyparallel_record"], timeout=timeout)
            for e in list_clusters(profile_dir_of(profile))]


def status(profile: str, *, connect_timeout: float = 10) -> list[dict]:
    """Describe the profile's clusters (:func:`clusterml.launch.lifecycle.list_clusters`).

    Parameters
    ----------
    profile : str
    connect_timeout : float
        Seconds to wait for each controller's answer.

    Returns
    -------
    list of dict
        Per cluster: ``profile``, ``cluster_id``, ``controller`` (``"running
        (pid N)"``, a Slurm job's state, or ``"not running"``), ``engine_sets``
        (launcher, n, Slurm job state or pid), ``engines_registered`` (None
        when the controller cannot be reached).
    """
    import ipyparallel as ipp

    pdir = profile_dir_of(profile)
    out = []
    for entry in list_clusters(pdir):
        if entry["cluster_file"] is None:
            continue  # a notebook's cluster not recorded by ipyparallel (yet)
        cid, cfile, raw = entry["cluster_id"], entry["cluster_file"], entry["ipyparallel_record"]
        rec = _sanitize(raw)
        ctl = (rec.get("controller") or {}).get("state") or {}
        if ctl.get("job_id"):
            controller = str(_job_infos([ctl["job_id"]])[0])
        elif ctl.get("pid", -1) > 0:
            controller = f"running (pid {ctl['pid']})"
        else:
            controller = "not running"
        sets = []
        for sid, st in ((rec.get("engines") or {}).get("sets") or {}).items():
            es = {"engine_set": sid, "launcher": (raw.get("engines") or {}).get("class"), "n": st.get("n")}
            if st.get("job_id"):
                info = _job_infos([st["job_id"]])[0]
                es.update(job_id=info.job_id, state=info.state, reason=info.reason)
            elif st.get("pid", -1) > 0:
                es.update(pid=st["pid"], state="RUNNING")
            sets.append(es)
        registered = None
        error = None
        url = os.path.join(pdir, "security",
                           f"ipcontroller-{cid}-client.json" if cid else "ipcontroller-client.json")
        if controller != "not running" and os.path.exists(url):
            try:
                rc = ipp.Client(url, profile_dir=pdir, cluster_id=cid, timeout=connect_timeout)
                try:
                    registered = len(rc.ids)
                finally:
                    rc.close()
            except Exception as e:  # unreachable controller: say so
                error = f"{type(e).__name__}: {e}"
        out.append(dict(
            profile=profile, cluster_id=cid, controller=controller, engine_sets=sets,
            engines_registered=registered, error=error, record=cfile,
        ))
    return out
