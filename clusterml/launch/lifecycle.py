"""THE cluster lifecycle of clusterml: list, stop, orphans -- for ``cml.Cluster``, ``%cml`` and the CLI.

ipyparallel keeps each cluster's record (``security/cluster-<id>.json``);
:func:`list_clusters` gets the living clusters from
:class:`ipyparallel.ClusterManager` (``Cluster.from_file`` on every record).
clusterml reads itself only what ipyparallel does not give (:mod:`.records`):
the records of dead clusters, which ipyparallel drops and deletes while their
Slurm jobs, logs and connection files still need cleaning up, and its own
owner record -- the notebook process that started a cluster, checked against
pid reuse -- so the clusters of a kernel killed with SIGKILL are found
(:func:`stop_all` with ``only_orphans=True``, run by every new
:class:`clusterml.Cluster` of the profile, which reads owner records only).
:func:`stop_cluster` is the one way a cluster is stopped: through
ipyparallel's launchers (which cancel Slurm jobs), then every recorded or
found process (TERM, then KILL), waiting until squeue no longer lists the
jobs, then removing exactly that cluster's files.  Starting and waiting:
:mod:`.launchers` and :mod:`.wait`.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from dataclasses import dataclass

from . import slurmctl as S
from .records import (
    DEFAULT_PROFILE,
    _alive,
    _cluster_file,
    _cluster_processes,
    _kill_all,
    _load_record,
    _profile_dir,
    _record_jobs,
    _record_path,
    _record_pids,
    _remove_cluster_files,
    _sanitize,
    _tree,
    _wait_gone,
)

__all__ = ["list_clusters", "stop_cluster", "stop_all", "Stopped", "DEFAULT_PROFILE"]

log = logging.getLogger("clusterml.client")


def _recorded(pdir: str) -> dict[str, tuple[str, dict]]:
    """ipyparallel's records of the profile as they are on disk, before anything loads them."""
    out = {}
    for cf in sorted(glob.glob(os.path.join(pdir, "security", "cluster-*.json"))):
        out[os.path.basename(cf)[len("cluster-"):-len(".json")]] = (cf, _load_record(cf))
    return out


def _detach(cluster) -> None:
    """End the watcher threads a loaded :class:`ipyparallel.Cluster` started, without stopping anything.

    Loading a record makes every launcher watch its process or job from this process;
    a listing must not keep doing that (nor, when a watched process ends, rewrite the
    record of a cluster that another process owns). A launcher whose state is
    ``after`` ends its watch loop and ignores its own stop notice.
    """
    for launcher in [cluster.controller, *cluster.engines.values()]:
        if launcher is not None:
            launcher.state = "after"


def _living(pdir: str) -> dict[str, dict]:
    """The records of the profile's living clusters, loaded through :class:`ipyparallel.ClusterManager`.

    ipyparallel drops (and deletes the record of) a cluster none of whose recorded
    processes runs; a Slurm job counts as running until the job is seen to end.
    """
    import ipyparallel as ipp
    from traitlets.config import Config

    config = Config()
    config.LocalProcessLauncher.poll_seconds = 1  # detached process watchers end within 1 s
    manager = ipp.ClusterManager(config=config, log=logging.getLogger("clusterml.ipyparallel"))
    manager.log.setLevel(logging.CRITICAL)  # "Controller ... not running": a dead cluster, expected
    living = {}
    for cluster in list(manager.load_clusters(profile_dir=pdir).values()):
        if cluster.controller is not None or cluster.engines:
            living[cluster.cluster_id] = cluster.to_dict()
        _detach(cluster)
    return living


def _keep(cfile: str, record: dict) -> None:
    """Put back the record of a dead cluster that loading it through ipyparallel deleted.

    Its jobs, logs and connection files are still to clean up, by :func:`stop_cluster`
    (``clusterml stop --all``, or a new notebook for an orphan); a record written
    again in the meantime is left as it is.
    """
    try:
        fd = os.open(cfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh)


def _entry(pdir: str, cid: str, cfile: str | None, record: dict) -> dict:
    ctrl = (record.get("controller") or {}).get("state") or {}
    engines = record.get("engines") or {}
    return {
        "cluster_id": cid, "profile_dir": pdir, "cluster_file": cfile,
        "controller_pid": ctrl.get("pid"),
        "engines": {k: {"class": engines.get("class"), "n": v.get("n"), "pid": v.get("pid")}
                    for k, v in (engines.get("sets") or {}).items()},
        "owner_pid": None, "owner_alive": None, "running": False, "ipyparallel_record": record,
    }


def _add_owner(out: dict, pdir: str, rf: str) -> None:
    """Merge clusterml's owner record ``rf`` (owner pid, processes it started) into ``out``."""
    rec = _load_record(rf)
    if not rec:
        return
    cid = rec.get("cluster_id", os.path.basename(rf)[len("clusterml-"):-len(".json")])
    entry = out.setdefault(cid, _entry(pdir, cid, None, {}))
    owner = rec.get("owner") or {}
    entry["record"] = rf
    entry["owner_pid"] = owner.get("pid")
    entry["owner_alive"] = _alive(owner) is not None if owner else None
    entry["running"] = entry["running"] or any(_alive(r) for r in rec.get("processes", []))


def _runs(record: dict) -> bool:
    """Does a recorded process still run its program (not a reused pid), or a job stay recorded?"""
    rec = _sanitize(record)
    return bool(rec.get("controller") or (rec.get("engines") or {}).get("sets"))


def list_clusters(profile: str | None = None) -> list[dict]:
    """Clusters recorded in a profile: living ones as ipyparallel loads them, and orphans' records.

    Living clusters come from :class:`ipyparallel.ClusterManager` (``Cluster.from_file``
    on every record). clusterml reads only what ipyparallel does not give: the records
    of clusters none of whose processes runs any more (ipyparallel drops them and
    deletes the file, but their jobs, logs and connection files are still to clean up),
    and its own owner record (the notebook process that started a cluster, checked
    against pid reuse).

    Parameters
    ----------
    profile : str, optional
        Profile name or directory; default ``clusterml-local``.

    Returns
    -------
    list of dict
        ``cluster_id``, ``profile_dir``, ``cluster_file``, ``controller_pid``,
        ``engines`` (per engine set: launcher class, n, pid), ``owner_pid``,
        ``owner_alive``, ``running`` (ipyparallel sees a recorded process or job,
        or a process clusterml recorded still runs), ``ipyparallel_record``.
    """
    try:
        pdir = _profile_dir(profile, create=False)
    except Exception:
        return []
    recorded = _recorded(pdir)  # first: loading deletes the records of dead clusters
    living = _living(pdir)
    out = {}
    for cid, (cfile, record) in recorded.items():
        if cid not in living and record:
            _keep(cfile, record)
        record = living.get(cid, record)
        out[cid] = _entry(pdir, cid, cfile, record)
        out[cid]["running"] = cid in living and _runs(record)
    for rf in sorted(glob.glob(os.path.join(pdir, "security", "clusterml-*.json"))):
        _add_owner(out, pdir, rf)
    return list(out.values())


@dataclass
class Stopped:
    """What :func:`stop_cluster` did."""

    profile: str
    cluster_id: str
    jobs: list
    left: list  # processes / jobs still there after the timeout (empty when clean)


def _stop_through_ipyparallel(record: dict, pdir: str, cfile: str, cluster=None) -> None:
    import ipyparallel as ipp

    try:
        if cluster is None:
            if not record.get("cluster"):
                return
            cluster = ipp.Cluster.from_dict(record, profile_dir=pdir, cluster_file=cfile,
                                            log_level=logging.WARNING)
            cluster.shutdown_atexit = False
        for sid, es in list(cluster.engines.items()):
            if getattr(es, "state", "") == "before":  # never started: nothing to stop
                cluster.engines.pop(sid)
        cluster.stop_cluster_sync()
    except Exception as exc:  # keep going: jobs and processes are ended below
        log.warning("ipyparallel could not stop cluster %r cleanly: %s", record.get("cluster", {}), exc)


def stop_cluster(pdir: str, cluster_id: str, *, cluster=None, record: dict | None = None,
                 timeout: float = 60) -> Stopped:
    """Stop one cluster: controller, engines, Slurm jobs, leftovers; then remove its files.

    Parameters
    ----------
    pdir : str
        The profile folder.
    cluster_id : str
    cluster : ipyparallel.Cluster, optional
        The live object, when this process started it (else read from the record).
    record : dict, optional
        ipyparallel's record as read before (``list_clusters()[i]["ipyparallel_record"]``),
        when the file may be gone; default: read ``security/cluster-<id>.json``.
    timeout : float
        Seconds to wait for jobs and processes to be gone.

    Returns
    -------
    Stopped
    """
    cfile = _cluster_file(pdir, cluster_id)
    if record is None:
        record = cluster.to_dict() if cluster is not None else _load_record(cfile)
    raw = record
    record = _sanitize(raw)
    ours = _load_record(_record_path(pdir, cluster_id))
    jobs = _record_jobs(raw)
    procs = [q for pid in _record_pids(record) for q in _tree(pid)]
    for r in ours.get("processes", []):
        p = _alive(r)
        if p is not None:
            procs += _tree(p.pid)
    _stop_through_ipyparallel(record, pdir, cfile, cluster)
    for j in jobs:
        try:
            S.scancel(j)
        except S.SlurmError as exc:
            log.warning("%s", exc)
    known = {p.pid for p in procs}
    procs += [p for p in _cluster_processes(os.path.abspath(pdir), cluster_id) if p.pid not in known]
    uniq = {p.pid: p for p in procs if p.pid != os.getpid()}
    _kill_all(list(uniq.values()))
    left = _wait_gone([p.pid for p in uniq.values() if p.is_running()], jobs, timeout)
    _remove_cluster_files(pdir, cluster_id, raw)
    for f in [_record_path(pdir, cluster_id)] + glob.glob(
            os.path.join(pdir, "security", f"ipcontroller-{cluster_id}-*.json")):
        try:
            os.remove(f)
        except FileNotFoundError:
            pass
    profile = os.path.basename(pdir).removeprefix("profile_")
    return Stopped(profile, cluster_id, jobs, left)


def stop_all(profile: str | None = None, only_orphans: bool = False, *,
             timeout: float = 60) -> list[str]:
    """Stop every cluster recorded for a profile (``clusterml stop --all`` and the notebook).

    Parameters
    ----------
    profile : str, optional
        Profile name or directory; default ``clusterml-local``.
    only_orphans : bool
        Only clusters started by a :class:`clusterml.Cluster` whose process is
        gone (a kernel killed with SIGKILL); clusters of live notebooks and of
        ``clusterml start`` are left alone.
    timeout : float

    Returns
    -------
    list of str
        The ids of the clusters that were stopped.
    """
    if only_orphans:  # owner records only: nothing of other notebooks' clusters is loaded
        try:
            pdir = _profile_dir(profile, create=False)
        except Exception:
            return []
        entries = {}
        for rf in sorted(glob.glob(os.path.join(pdir, "security", "clusterml-*.json"))):
            _add_owner(entries, pdir, rf)
        orphans = [e["cluster_id"] for e in entries.values() if e.get("owner_alive") is False]
        for cid in orphans:
            stop_cluster(pdir, cid, timeout=timeout)
        return orphans
    stopped = []
    for entry in list_clusters(profile):
        stop_cluster(entry["profile_dir"], entry["cluster_id"], record=entry["ipyparallel_record"],
                     timeout=timeout)
        stopped.append(entry["cluster_id"])
    return stopped
