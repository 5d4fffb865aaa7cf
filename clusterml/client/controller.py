"""Is a cluster's ipyparallel controller still there?  Three looks, cheapest first.

* **its process**, when it runs on this host: a psutil handle (it checks the
  start time, so a reused pid is never taken for the controller);
* **its launcher**, when it runs as a Slurm job: clusterml's launcher watches
  the job and marks it ended (``state == "after"`` with the job's stop data);
* **a probe through the client's own connection**: a ``queue_request``, which
  the controller's hub answers in milliseconds.  It catches what the other two
  cannot see: a controller on another host, a host that went away, a frozen
  controller.  The probe is sent without waiting for it; a later look reads the
  answer, so no wait ever blocks on a dead controller.

The state of the looks lives in ``cluster._controller_watch`` (a dict), reset
whenever a new client connects.  :class:`~clusterml.client.health.Health` calls
:func:`controller_problem` from every wait and before every call.
"""

from __future__ import annotations

import time

import psutil

__all__ = ["controller_problem", "controller_process", "reset_watch"]

#: Seconds between two probes of the controller while a call waits.
PROBE_EVERY = 1.0
#: Seconds the controller gets to answer a probe before it counts as unreachable.
PROBE_TIMEOUT = 8.0
# Seconds between two looks at the controller's process / launcher.
_LOOK_EVERY = 0.3


def controller_process(ipc) -> psutil.Process | None:
    """The psutil handle of ``ipc``'s controller launcher (an ``ipyparallel.Cluster``), if local."""
    ctl = getattr(ipc, "controller", None) if ipc is not None else None
    proc = getattr(ctl, "process", None)
    return proc if isinstance(proc, psutil.Process) else None


def _is_controller(proc: psutil.Process) -> bool:
    """True if ``proc`` runs an ipyparallel controller (a record may name a pid of another host)."""
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return "ipyparallel.controller" in cmd or "ipcontroller" in cmd


def reset_watch(cluster) -> None:
    """Forget earlier looks (a new client, a new controller); note whether the controller is local.

    Parameters
    ----------
    cluster : clusterml.Cluster
    """
    proc = controller_process(cluster._ipp)
    cluster._controller_watch = {"local": proc is not None and _is_controller(proc),
                                 "probe": None, "sent": 0.0, "looked": 0.0}


def _process_problem(cluster) -> str | None:
    proc = controller_process(cluster._ipp)
    if proc is None or not cluster._controller_watch.get("local"):
        return None
    try:
        if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        pass
    return f"the controller process (pid {proc.pid}, on this host) has exited"


def _launcher_problem(cluster) -> str | None:
    ctl = getattr(cluster._ipp, "controller", None) if cluster._ipp is not None else None
    if ctl is None or getattr(ctl, "state", None) != "after":
        return None
    status = getattr(ctl, "status_text", None)
    text = status() if status is not None else ""
    data = getattr(ctl, "stop_data", None) or {}
    detail = text or ", ".join(f"{k}={v}" for k, v in data.items() if k in ("exit_code", "state", "cause"))
    return f"the controller's launcher ({type(ctl).__name__}) has ended" + (f": {detail}" if detail else "")


def _probe_problem(cluster, now: float, send: bool) -> str | None:
    watch, client = cluster._controller_watch, cluster._client
    fut = watch.get("probe")
    if fut is not None:
        if fut.done():
            watch["probe"] = None
        elif now - watch["sent"] > PROBE_TIMEOUT:
            return (f"the controller did not answer the client for {now - watch['sent']:.0f} s "
                    f"(a probe through the client's connection)")
        else:
            return None
    if send and client is not None and now - watch["sent"] >= PROBE_EVERY:
        try:  # ipyparallel's own queue_status, without waiting for the reply
            watch["probe"] = client._send(client._query_stream, "queue_request",
                                          content={"targets": None, "verbose": False})
            watch["sent"] = now
        except Exception:  # a closed client: nothing to probe
            watch["probe"] = None
    return None


def controller_problem(cluster, probe: bool = True) -> str | None:
    """Why the controller of ``cluster`` is gone, or None while it seems fine.

    Parameters
    ----------
    cluster : clusterml.Cluster
    probe : bool
        Also send a probe through the client's connection (answered at a later
        look); False: only the process, the launcher and an overdue probe.

    Returns
    -------
    str or None
        Says which look saw it (the process, the launcher, the probe).
    """
    if cluster._client is None:
        return None
    if not hasattr(cluster, "_controller_watch") or cluster._controller_watch is None:
        reset_watch(cluster)
    watch = cluster._controller_watch
    now = time.monotonic()
    if now - watch["looked"] >= _LOOK_EVERY or not probe:
        watch["looked"] = now
        why = _process_problem(cluster) or _launcher_problem(cluster)
        if why:
            return why
    return _probe_problem(cluster, now, probe)
