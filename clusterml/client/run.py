"""``clusterml run -n N script.py [args]``: a script with its own cluster, the ``scoop -n`` of clusterml.

Starts ``N`` MPI engines (locally; inside the current Slurm allocation when
``SLURM_JOB_ID`` is set, as ``cml.Cluster(n)`` does; or as a profile says with
``--profile``), runs the script in this process as ``__main__`` with
``sys.argv = [script, *args]``, where ``cml.Cluster.current()`` returns that
cluster, then stops everything and returns the script's exit status.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback

from ..errors import ParameterError

__all__ = ["default_engines", "run_script"]


def default_engines() -> int:
    """``SLURM_NTASKS`` inside a Slurm allocation, else the cores of this machine."""
    ntasks = os.environ.get("SLURM_NTASKS") if os.environ.get("SLURM_JOB_ID") else None
    if ntasks and ntasks.isdigit() and int(ntasks) > 0:
        return int(ntasks)
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def _status(code) -> int:
    """The exit status ``sys.exit(code)`` gives."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run_script(script: str, args=(), n: int | None = None, profile: str | None = None,
               engine_env: dict | None = None, timeout: float | None = None,
               start_timeout: float | None = None) -> int:
    """Run ``script`` with a cluster of ``n`` engines; return its exit status.

    Parameters
    ----------
    script : str
        Path of a Python script; it runs as ``__main__`` in this process.
    args : sequence of str
        The script's arguments (``sys.argv[1:]``).
    n : int, optional
        Engines (default: :func:`default_engines`, or what the profile says).
    profile : str, optional
        An IPython profile (e.g. ``clusterml-slurm`` to submit the engines as a job).
    engine_env : dict, optional
        Extra environment of the engines; the script's folder is put on their
        ``PYTHONPATH`` so modules next to it import there too.
    timeout, start_timeout : float, optional
        As :class:`clusterml.Cluster`.

    Returns
    -------
    int
        The script's exit status (0, its ``sys.exit`` code, 1 on an uncaught exception).
    """
    from . import shared
    from .cluster import Cluster

    if not os.path.isfile(script):
        raise ParameterError(f"no script {script!r}")
    folder = os.path.dirname(os.path.abspath(script))
    env = dict(engine_env or {})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (folder, env.get("PYTHONPATH")
                                                    or os.environ.get("PYTHONPATH")) if p)
    if n is None and profile is None:
        n = default_engines()
    kw = {k: v for k, v in dict(timeout=timeout, start_timeout=start_timeout).items() if v is not None}
    cluster = Cluster(n=n, profile=profile, engine_env=env, **kw)
    old_argv, old_path = sys.argv, list(sys.path)
    shared.CURRENT.append(cluster)
    try:
        sys.argv = [script, *args]
        sys.path.insert(0, folder)
        runpy.run_path(script, run_name="__main__")
        return 0
    except SystemExit as exc:
        return _status(exc.code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
        shared.CURRENT.remove(cluster)
        cluster.stop()
