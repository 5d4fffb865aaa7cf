"""THE cluster lifecycle of clusterml: list, stop, orphans -- for ``cml.Cluster``, ``%cml`` and the CLI.

ipyparallel keeps each cluster's record (``security/cluster-<id>.json``, read
with :meth:`ipyparallel.Cluster.from_dict`); clusterml adds only what it
lacks (:mod:`.records`): the owner process, so the clusters of a kernel killed
with SIGKILL are found (:func:`stop_all` with ``only_orphans=True``, run by
every new :class:`clusterml.Cluster` of the profile), and the processes it
started.  :func:`stop_cluster` is the one way a cluster is stopped: through
ipyparallel's launchers (which cancel Slurm jobs), then every recorded or
found process (TERM, then KILL), waiting until squeue no longer lists the jobs,
then removing exactly that cluster's files.  Starting and waiting:
:mod:`.launchers` and :mod:`.wait`.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from dataclasses import dataclass

import psutil

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


def stop_cluster(pdir: str, cluster_id: str, *, cluster=None, timeout: float = 60) -> Stopped:
    """Stop one cluster: controller, engines, Slurm jobs, leftovers; then remove its files.

    Parameters
    ----------
    pdir : str
        The profile folder.
    cluster_id : str
    cluster : ipyparallel.Cluster, optional
        The live object, when this process started it (else read from the record).
    timeout : float
        Seconds to wait for jobs and processes to be gone.

    Returns
    -------
    Stopped
    """
    cfile = _cluster_file(pdir, cluster_id)
    raw = cluster.to_dict() if cluster is not None else _load_record(cfile)
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
    stopped = []
    for entry in list_clusters(profile):
        if only_orphans and entry.get("owner_alive") is not False:
            continue
        stop_cluster(entry["profile_dir"], entry["cluster_id"], timeout=timeout)
        stopped.append(entry["cluster_id"])
    return stopped
