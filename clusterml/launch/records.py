"""Records of running clusters and the processes behind them (used by :mod:`.lifecycle`).

ipyparallel's record ``security/cluster-<id>.json`` is read as it is (and
sanitized: a recorded pid counts only while it still runs the recorded
program); clusterml's own ``security/clusterml-<id>.json`` (0600) adds the
owner process (pid + start time) and the processes a notebook started.
Processes are handled through psutil handles, which check the start time, so
a reused pid is never signalled.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import time
from collections.abc import Sequence

import psutil

from ..errors import ParameterError
from . import slurmctl as S

log = logging.getLogger("clusterml.client")

#: Profile of the embedded default (local MPI engines, loopback only).
DEFAULT_PROFILE = "clusterml-local"


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


def _cluster_file(pdir: str, cluster_id: str) -> str:
    return os.path.join(pdir, "security", f"cluster-{cluster_id}.json")


def _load_record(cfile: str) -> dict:
    try:
        with open(cfile) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _pid_is(pid: int, cluster_id: str | None, words: Sequence[str]) -> bool:
    """Does ``pid`` still run the recorded program (not a reused pid)?

    The command line must hold one of ``words``; when ``cluster_id`` is given and
    the process environment is readable, its ``IPP_CLUSTER_ID`` must match too.
    """
    try:
        p = psutil.Process(int(pid))
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        cmd = " ".join(p.cmdline())
    except (psutil.Error, ValueError):
        return False
    if not any(w in cmd for w in words):
        return False
    if cluster_id is not None:
        try:
            env = p.environ()
        except psutil.Error:
            return True
        if "IPP_CLUSTER_ID" in env and env["IPP_CLUSTER_ID"] != cluster_id:
            return False
    return True


_CONTROLLER_WORDS = ("ipyparallel.controller", "ipcontroller")
_ENGINE_WORDS = ("ipyparallel.engine", "ipengine", "mpiexec", "mpirun", "srun")


def _sanitize(record: dict) -> dict:
    """Drop recorded local processes whose pid no longer runs that program."""
    rec = json.loads(json.dumps(record))
    cid = rec.get("cluster", {}).get("cluster_id", "")
    ctl = rec.get("controller") or {}
    state = ctl.get("state") or {}
    if state.get("pid", -1) > 0 and not _pid_is(state["pid"], cid, _CONTROLLER_WORDS):
        rec.pop("controller", None)
    sets = (rec.get("engines") or {}).get("sets", {})
    for sid in list(sets):
        st = sets[sid]
        if st.get("pid", -1) > 0 and not st.get("job_id") and not _pid_is(st["pid"], None, _ENGINE_WORDS):
            sets.pop(sid)
    return rec


def _record_jobs(record: dict) -> list[str]:
    jobs = []
    ctl = (record.get("controller") or {}).get("state") or {}
    if ctl.get("job_id"):
        jobs.append(str(ctl["job_id"]))
    for st in ((record.get("engines") or {}).get("sets") or {}).values():
        if st.get("job_id"):
            jobs.append(str(st["job_id"]))
    return jobs


def _record_pids(record: dict) -> list[int]:
    pids = []
    ctl = (record.get("controller") or {}).get("state") or {}
    if ctl.get("pid", -1) > 0:
        pids.append(int(ctl["pid"]))
    for st in ((record.get("engines") or {}).get("sets") or {}).values():
        if st.get("pid", -1) > 0:
            pids.append(int(st["pid"]))
    return pids


def _record_running(cfile: str) -> bool:
    rec = _sanitize(_load_record(cfile))
    if rec.get("controller"):
        return True
    for j in _record_jobs(rec):
        try:
            info = S.job_info(j)
        except S.SlurmError:
            return True  # cannot tell: assume it runs
        if not S.job_ended(info):
            return True
    return False


def _remove_cluster_files(pdir: str, cluster_id: str, record: dict) -> list[str]:
    """Remove exactly this cluster's files: record, connection files, logs."""
    prefix = f"ipcontroller-{cluster_id}-" if cluster_id else "ipcontroller-"
    paths = [
        _cluster_file(pdir, cluster_id),
        os.path.join(pdir, "security", f"{prefix}client.json"),
        os.path.join(pdir, "security", f"{prefix}engine.json"),
        os.path.join(pdir, "log", f"engines{cluster_id}.json"),
    ]
    # the job scripts clusterml's Slurm launchers wrote for this cluster (launchers._jobs_batch_file)
    paths += glob.glob(os.path.join(pdir, "jobs", f"slurm_*-{cluster_id or 'default'}.sbatch"))
    ctl = (record.get("controller") or {}).get("state") or {}
    if ctl.get("output_file"):
        paths.append(ctl["output_file"])
    for st in ((record.get("engines") or {}).get("sets") or {}).values():
        if st.get("output_file"):
            paths.append(st["output_file"])
    removed = []
    for p in paths:
        try:
            os.remove(p)
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed


def _wait_gone(pids: Sequence[int], jobs: Sequence[str], timeout: float) -> list[str]:
    """Poll until the processes have exited and squeue no longer lists the jobs."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for pid in pids:
            try:
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"process {pid} ({p.name()})")
            except psutil.Error:
                pass
        for j in jobs:
            try:
                info = S.job_info(j)
            except S.SlurmError as e:
                left.append(f"Slurm job {j}: {e}")
                continue
            if not S.job_ended(info):
                left.append(str(info))
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def _cluster_processes(pdir: str, cluster_id: str) -> list:
    """This cluster's ipyparallel processes still on this machine, found by their environment.

    ipyparallel's launchers give the controller and engines ``IPP_PROFILE_DIR``
    and ``IPP_CLUSTER_ID``, which their children inherit; so a scheduler process
    orphaned by a controller that died during its start-up is still found.
    """
    found = []
    for p in psutil.process_iter(["cmdline", "uids"]):
        try:
            if p.info["uids"] is None or p.info["uids"].real != os.getuid():
                continue
            if "ipyparallel" not in " ".join(p.info["cmdline"] or []):
                continue
            env = p.environ()
        except psutil.Error:
            continue
        if env.get("IPP_PROFILE_DIR") == pdir and env.get("IPP_CLUSTER_ID") == cluster_id:
            found.append(p)
    return found
