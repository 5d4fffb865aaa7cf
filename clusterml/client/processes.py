"""The processes of a :class:`~clusterml.Cluster`: records against orphans, teardown, health.

An owned cluster records the processes it started (controller, ``mpiexec``,
engines) in a 0600 file of its profile, so that :func:`~clusterml.client.stop_all`
finds them after a SIGKILLed kernel; :meth:`ProcessMethods._teardown` is the one
way an owned cluster ends, and every owned cluster still live at interpreter
exit is stopped.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import sys
import threading

import psutil

from .. import __version__
from ..launch.lifecycle import stop_cluster
from ..launch.records import _alive, _kill_all, _proc_key, _record_path, _tree
from . import calls
from .health import Health

__all__ = ["ProcessMethods"]


_LIVE: set = set()  # owned clusters, stopped at interpreter exit (strong refs on purpose)
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_live_clusters():
    with _LIVE_LOCK:
        live = list(_LIVE)
    for c in live:
        try:
            c.stop()
        except Exception as exc:  # pragma: no cover - best effort at exit
            print(f"clusterml: error stopping {c!r} at exit: {exc!r}", file=sys.stderr)


class ProcessMethods:
    """The records, teardown and health delegations of :class:`~clusterml.Cluster`."""

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
            # the one stop of clusterml (launch.lifecycle): launchers, jobs, leftovers, files
            stop_cluster(ipc.profile_dir, ipc.cluster_id, cluster=ipc)
            ipc.controller = None
            ipc.engines = {}
        _kill_all(procs)
        if self._record:
            try:
                os.remove(self._record)
            except FileNotFoundError:
                pass
            self._record = None
        self.engines = []
        self._broken = self._controller_gone = None
        self._generation += 1
        with _LIVE_LOCK:
            _LIVE.discard(self)

    @property
    def health(self) -> Health:
        """Lost ranks, launcher state, waits with timeouts: see :class:`~clusterml.client.health.Health`."""
        return Health(self)

    def _check_usable(self):
        self.health.check_usable()

    def _lost_ranks(self) -> list:
        return self.health.lost_ranks()

    def _launcher_exit(self):
        return self.health.launcher_exit()

    def _launcher_output(self, limit=30) -> str:
        return self.health.launcher_output(limit)

    def _launcher_state(self) -> str:
        return self.health.launcher_state()

    def _wait(self, ar, timeout, what):
        return calls.wait(self, ar, timeout, what)


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
