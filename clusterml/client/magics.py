"""``%load_ext clusterml``: the ``%cml`` line magic.

::

    %cml start -n 4 [--profile clusterml-slurm] [--timeout 600]
    %cml status
    %cml stop
    %cml restart

``%cml start`` starts a :class:`~clusterml.Cluster`, makes its engines the
target of ``%px`` / ``%%px`` (blocking) and returns it, so
``cluster = %cml start -n 4`` keeps a handle.  The magics are thin sugar over
the Cluster: everything they do is a method call.
"""

from __future__ import annotations

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

__all__ = ["ClustermlMagics", "load_ipython_extension", "unload_ipython_extension", "current"]

_current = {"cluster": None}


def current():
    """The cluster ``%cml start`` made (None if there is none)."""
    return _current["cluster"]


def _session_clusters() -> list:
    """The running clusters of this session: ``%cml start``'s, else those ``cml.Cluster(...)`` made."""
    cluster = _current["cluster"]
    if cluster is not None and cluster.running:
        return [cluster]
    from .cluster import _LIVE, _LIVE_LOCK

    with _LIVE_LOCK:
        live = [c for c in _LIVE if c.running]
    return sorted(live, key=lambda c: c.cluster_id or "")


@magics_class
class ClustermlMagics(Magics):
    @magic_arguments()
    @argument("action", choices=["start", "status", "stop", "restart"], help="what to do")
    @argument("-n", type=int, default=None, help="number of engines (MPI ranks)")
    @argument("--profile", default=None, help="ipyparallel profile (default: local MPI engines)")
    @argument("--timeout", type=float, default=None, help="default call timeout in seconds")
    @argument("--cluster-id", default=None, help="with 'start --connect': the cluster to attach to")
    @argument("--connect", action="store_true", help="attach to a running cluster instead of starting")
    @line_magic
    def cml(self, line):
        """Start, inspect and stop the clusterml cluster of this notebook."""
        args = parse_argstring(self.cml, line)
        from .cluster import DEFAULT_TIMEOUT, Cluster

        cluster = _current["cluster"]
        if args.action != "start":
            found = _session_clusters()
            if not found:
                print("no clusterml cluster in this session; %cml start -n 4")
                return None
            if len(found) > 1 and args.action != "status":
                print(f"{len(found)} clusters run in this session ({', '.join(map(repr, found))}); "
                      f"call .{args.action}() on the one you mean")
                return None
            if args.action == "status" and len(found) > 1:
                for c in found:
                    print(repr(c))
                return None
            cluster = found[0]
        if args.action == "start":
            if cluster is not None and cluster.running:
                print(f"already running: {cluster!r} (use %cml stop first)")
                return cluster
            timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT
            if args.connect:
                cluster = Cluster.connect(profile=args.profile, cluster_id=args.cluster_id,
                                          n=args.n, timeout=timeout)
            else:
                cluster = Cluster(n=args.n, profile=args.profile, timeout=timeout)
            _current["cluster"] = cluster
            print(f"{cluster!r}: {cluster.n} engines on {', '.join(cluster.status()['hosts'])}; "
                  f"%px targets them")
            return cluster
        if args.action == "status":
            st = cluster.status()
            lines = [repr(cluster)]
            for e in cluster.engines:
                lines.append(f"  rank {e['rank']}/{e['size']}  {e['host']}  pid {e['pid']}  "
                             f"clusterml {e['version']}")
            if st["lost_ranks"]:
                lines.append(f"  lost ranks: {st['lost_ranks']} (%cml restart)")
            if st["broken"]:
                lines.append(f"  needs restart: {st['broken']}")
            print("\n".join(lines))
            return None
        if args.action == "restart":
            cluster.restart()
            print(f"{cluster!r}: restarted")
            return None
        cluster.stop()
        if _current["cluster"] is cluster:
            _current["cluster"] = None
        print("clusterml cluster stopped")
        return None


def load_ipython_extension(ip):
    """Called by ``%load_ext clusterml``."""
    ip.register_magics(ClustermlMagics)
    ip.user_ns.setdefault("cml", __import__("clusterml"))


def unload_ipython_extension(ip):  # pragma: no cover - IPython rarely unloads
    cluster = _current["cluster"]
    if cluster is not None:
        cluster.stop()
        _current["cluster"] = None

