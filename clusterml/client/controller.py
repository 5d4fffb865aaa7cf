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

from ..launch.wait import controller_process, controller_stopped

__all__ = ["controller_problem", "reset_watch"]

#: Seconds between two probes of the controller while a call waits.
PROBE_EVERY = 1.0
#: Seconds the controller gets to answer a probe before it counts as unreachable.
PROBE_TIMEOUT = 8.0
# Seconds between two looks at the controller's process / launcher.
_LOOK_EVERY = 0.3


def reset_watch(cluster) -> None:
    """Forget earlier looks (a new client, a new controller); note whether the controller is local.

    Parameters
    ----------
    cluster : clusterml.Cluster
    """
    cluster._controller_watch = {"process": controller_process(cluster._ipp),
                                 "probe": None, "sent": 0.0, "looked": 0.0}


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
        why = controller_stopped(cluster._ipp, watch["process"])
        if why:
            return why
    return _probe_problem(cluster, now, probe)
