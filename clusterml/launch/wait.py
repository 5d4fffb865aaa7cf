"""The one wait for engines to register, shared by ``cml.Cluster`` and ``clusterml start``.

It asks nothing of Slurm itself: the engine launchers do (see
:mod:`clusterml.launch.launchers`) and tell ipyparallel when their job ended
or can never run (``state == "after"`` with ``stop_data``).  This wait only
reads that state, the registered engine ids and the launcher's status text,
shows them with tqdm (a widget in a notebook, a bar on a terminal's stderr,
nothing on a pipe) and raises :class:`clusterml.ClusterStartError` with the
job state, the engine log tail, the cause and the fix.
"""

from __future__ import annotations

import os
import sys
import time

import psutil

from ..errors import ClusterStartError, ClusterStartTimeoutError
from .diagnose import start_error_text

__all__ = ["connect_client", "controller_process", "controller_stopped", "wait_for_engines",
           "launcher_status", "launcher_stopped"]

_POLL = 0.1


def launcher_status(cluster) -> str:
    """What the engine launchers are doing, e.g. ``Slurm job 812 PENDING (Resources)``."""
    texts = []
    for es in cluster.engines.values():
        status = getattr(es, "status_text", None)
        texts.append(status() if status else f"{type(es).__name__} {es.state}")
    return "; ".join(texts) or "no engine launcher"


def launcher_stopped(cluster) -> dict | None:
    """The stop data of an engine launcher that ended, or None while all run."""
    for es in cluster.engines.values():
        if es.state == "after":
            return dict(es.stop_data or {}) or {"cause": "the engine launcher stopped"}
        proc = getattr(es, "process", None)  # local launchers: ipyparallel notices on its loop only
        if proc is not None:
            try:
                gone = not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
            except psutil.Error:
                gone = True
            if gone:
                text = ""
                try:
                    text = es.get_output(remove=False) or ""
                except Exception:  # the output is a courtesy
                    pass
                return {"output": "\n".join(text.splitlines()[-15:]),
                        "cause": f"{es.args[0] if es.args else 'the engine launcher'} (pid {proc.pid}) "
                                 f"exited before all engines registered",
                        "fix": "read the engine log above; clusterml doctor checks MPI and mpiexec"}
    return None


def controller_process(cluster) -> psutil.Process | None:
    """The controller's process when it runs on this host as an ipyparallel controller, else None.

    Parameters
    ----------
    cluster : ipyparallel.Cluster

    Returns
    -------
    psutil.Process or None
        None also when the recorded pid runs something else here (a record may name a pid of
        another host); psutil's handle checks the start time, so a reused pid is never taken
        for the controller later.
    """
    ctl = getattr(cluster, "controller", None) if cluster is not None else None
    proc = getattr(ctl, "process", None)
    if not isinstance(proc, psutil.Process):
        return None
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return None
    return proc if "ipyparallel.controller" in cmd or "ipcontroller" in cmd else None


def controller_stopped(cluster, proc: psutil.Process | None) -> str | None:
    """Why the controller of ``cluster`` is gone, or None while it seems to run.

    Parameters
    ----------
    cluster : ipyparallel.Cluster
    proc : psutil.Process or None
        :func:`controller_process`, taken while the controller ran (None: remote).

    Returns
    -------
    str or None
        Names the look that saw it: the local process, or the controller's launcher
        (a Slurm job that ended).
    """
    if proc is not None:
        try:
            running = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            running = False
        if not running:
            return f"the controller process (pid {proc.pid}, on this host) has exited"
    ctl = getattr(cluster, "controller", None) if cluster is not None else None
    if ctl is None or getattr(ctl, "state", None) != "after":
        return None
    status = getattr(ctl, "status_text", None)
    text = status() if status is not None else ""
    data = getattr(ctl, "stop_data", None) or {}
    detail = text or ", ".join(f"{k}={v}" for k, v in data.items() if k in ("exit_code", "state", "cause"))
    return f"the controller's launcher ({type(ctl).__name__}) has ended" + (f": {detail}" if detail else "")


def connect_client(cluster, what: str = "cluster"):
    """``cluster.connect_client_sync()``, or :class:`ClusterStartError` naming the address.

    Raises
    ------
    ClusterStartError
        The controller did not answer at the address its connection file gives.
    """
    try:
        return cluster.connect_client_sync()
    except TimeoutError:
        from .diagnose import _controller_address

        where = _controller_address(cluster.profile_dir, cluster.cluster_id)
        profile = os.path.basename(cluster.profile_dir).removeprefix("profile_")
        stopped = launcher_stopped(cluster) or {}
        raise ClusterStartError(start_error_text(
            f"{what}: the controller did not answer the client", {
                **stopped, "slurm": launcher_status(cluster) if cluster.engines else "",
                "cause": f"controller address {where} is not reachable from this host",
                "fix": f"clusterml profile set {profile} controller_ip=<an address of the "
                       f"controller's host that this host and the compute nodes reach>"})) from None


def _bar(n: int, desc: str, show: bool | None):
    from ipyparallel.util import progress

    try:
        from IPython import get_ipython

        kernel = getattr(get_ipython(), "kernel", None) is not None
    except ImportError:  # pragma: no cover
        kernel = False
    tty = getattr(sys.stderr, "isatty", lambda: False)()
    if show is None:
        show = kernel or tty
    return progress(total=n, unit="engine", desc=desc, file=None if kernel else sys.stderr,
                    disable=not show, leave=kernel, mininterval=0.5)


def wait_for_engines(cluster, client, n: int, timeout: float, *, started: float | None = None,
                     what: str = "cluster", show: bool | None = None) -> list[int]:
    """Wait until ``n`` engines registered with ``client``; fail as soon as the launcher ended.

    Parameters
    ----------
    cluster : ipyparallel.Cluster
        Whose engine launchers are watched.
    client : ipyparallel.Client
    n : int
    timeout : float
        Seconds from ``started`` (queue time included).
    started : float, optional
        ``time.monotonic()`` of the start (default now).
    what : str
        Named in messages (``"cluster abc of profile clusterml-slurm"``).
    show : bool, optional
        Show the progress bar; default in a notebook kernel or on a terminal.

    Returns
    -------
    list of int
        The registered engine ids.

    Raises
    ------
    ClusterStartError
        The engines' job ended or can never run (within a poll of the launcher), or the
        controller is gone (its local process exited, its launcher ended).
    ClusterStartTimeoutError
        ``timeout`` ran out; the message says what the launcher was doing.
    """
    t0 = time.monotonic() if started is None else started
    ctl = controller_process(cluster)
    bar = _bar(n, "engines registered", show)
    shown = None
    try:
        while True:
            have = len(client.ids)
            elapsed = time.monotonic() - t0
            status = launcher_status(cluster)
            if have != bar.n or status != shown:  # draw news only (a pipe gets one line each)
                shown = status
                bar.set_postfix_str(status, refresh=False)
                bar.update(have - bar.n)
                bar.refresh()
            if have >= n:
                return sorted(client.ids)
            gone = controller_stopped(cluster, ctl)
            if gone is not None:
                raise ClusterStartError(start_error_text(
                    f"{what}: {have} of {n} engines registered after {elapsed:.0f} s; the controller "
                    f"is gone", {"cause": gone, "fix": "start the cluster again (cluster.restart() "
                                 "in a notebook); the controller's log is in the profile's log/"}))
            stopped = launcher_stopped(cluster)
            if stopped is not None:
                raise ClusterStartError(start_error_text(
                    f"{what}: {have} of {n} engines registered after {elapsed:.0f} s; the engines "
                    f"stopped", stopped))
            if elapsed > timeout:
                facts = {"slurm": launcher_status(cluster),
                         "cause": f"the engines did not register within {timeout:.0f} s",
                         "fix": "a longer engine_timeout (clusterml profile set NAME engine_timeout=...) "
                                "or a shorter queue"}
                raise ClusterStartTimeoutError(start_error_text(
                    f"{what}: {have} of {n} engines registered after {elapsed:.0f} s", facts))
            time.sleep(_POLL)
    finally:
        bar.close()
